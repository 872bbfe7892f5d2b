"""The reader against hand-built files: pcap (µs/ns, both byte orders),
pcapng (several interfaces, per-interface link type and resolution, unknown
blocks), every link type, IPv4 options and fragments, IPv6 extension headers,
and damaged files of each format."""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from finwait.analyze import analyze_file
from finwait.capture.reader import CaptureError, EmptyCaptureError, iter_batches
from finwait.cli import main

from .builders import (
    A6,
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    ip4,
    link,
    pcap,
    pcapng,
    seed_exchange,
    tcp,
    zero_length,
)

LINKTYPES = [1, -1, 113, 276, 0, 108, 101, 12, 14]


def check_seed(rec: dict[str, Any]) -> None:
    """The seed's numbers, whatever the container."""
    assert (rec["handshake"], rec["close"], rec["first_fin"]) == ("complete", "four_way", "server")
    assert rec["bytes"] == {"client_to_server": 247, "server_to_client": 49}
    fs, fc = rec["fins"]["server"], rec["fins"]["client"]
    assert (fs["seq"], fs["ack"], fs["acked_by"]["ack"]) == (50, 248, 51)
    assert (fc["seq"], fc["ack"], fc["acked_by"]["ack"]) == (248, 51, 249)
    assert (rec["conn_state"], rec["history"]) == ("SF", "ShADadfF")


def analyze_bytes(tmp_path: Path, data: bytes, name: str = "c.pcap") -> Any:
    p = tmp_path / name
    p.write_bytes(data)
    return analyze_file(p)


@pytest.mark.parametrize("lt", LINKTYPES)
@pytest.mark.parametrize("v6", [False, True])
def test_pcap_link_types(tmp_path: Path, lt: int, v6: bool) -> None:
    pk = [(t, link(lt, p, v6)) for t, p in seed_exchange(v6)]
    res = analyze_bytes(tmp_path, pcap(pk, 1 if lt == -1 else lt))
    assert res.error is None and res.n == 1
    rec = res.record(1)
    check_seed(rec)
    assert rec["client"]["addr"] == ("2001:db8::1" if v6 else "198.18.0.1")


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("ns", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, big: bool, ns: bool) -> None:
    pk = [(t, link(1, p)) for t, p in seed_exchange()]
    res = analyze_bytes(tmp_path, pcap(pk, 1, big=big, ns=ns))
    rec = res.record(1)
    check_seed(rec)
    assert rec["start"] == pytest.approx(1.5) and rec["duration"] == pytest.approx(0.1)


@pytest.mark.parametrize("big", [False, True])
def test_pcapng_interfaces(tmp_path: Path, big: bool) -> None:
    # Client packets on an Ethernet interface in µs, server packets on a raw
    # interface in ns: one connection, time-ordered across both.
    pk = []
    for t, p in seed_exchange():
        from_client = p[12:16] == bytes([198, 18, 0, 1])
        pk.append((t, link(1, p), 0) if from_client else (t, p, 1))
    res = analyze_bytes(tmp_path, pcapng(pk, [(1, None), (101, 9)], big=big), "c.pcapng")
    assert res.error is None and res.n == 1
    check_seed(res.record(1))
    assert res.record(1)["end"] == pytest.approx(1.6)


def test_ipv4_options_and_fragments(tmp_path: Path) -> None:
    seg = tcp(1, 2, 0, 0, 0x02, 0)
    pk = [
        (1.0, ip4("198.18.0.1", "198.18.0.2", seg, options=b"\x01\x01\x01\x00")),  # NOPs, EOL
        (1.1, ip4("198.18.0.1", "198.18.0.2", seg, frag=0x2000)),  # MF
        (1.2, ip4("198.18.0.1", "198.18.0.2", b"\0" * 8, frag=0x0010)),  # offset 16 bytes
    ]
    res = analyze_bytes(tmp_path, pcap(pk, 101))
    assert res.n == 1 and res.tcp_packets == 1
    assert res.drops["fragment: ipv4"] == 2


def test_fin_without_ack_is_not_a_close(tmp_path: Path) -> None:
    pk = seed_exchange()
    a, b = "198.18.0.1", "198.18.0.2"
    bare = ip4(a, b, tcp(40000, 80, 1248, 0, FIN, 0))
    res = analyze_bytes(tmp_path, pcap([*pk[:7], (1.565, bare)], 101))
    rec = res.record(1)
    assert rec["close"] == "open" and rec["fins"]["client"] is None
    assert rec["anomalies"] == [{"name": "fin_without_ack", "count": 1, "frames": [8]}]


URG = 0x20


@pytest.mark.parametrize(
    ("flags", "flagged"),
    [
        (FIN, True),
        (FIN | PSH | URG, True),  # XMAS
        (SYN | FIN, True),
        (FIN | RST, True),
        (FIN | PSH, True),
        (FIN | ACK, False),
        (FIN | ACK | PSH | URG, False),
    ],
)
def test_fin_without_ack_whatever_else_is_set(tmp_path: Path, flags: int, flagged: bool) -> None:
    """Every segment with FIN set and ACK clear is flagged, whatever other
    flags it carries; a FIN with ACK never is."""
    probe = ip4("198.18.0.1", "198.18.0.2", tcp(41000, 80, 5000, 0, flags, 0))
    res = analyze_bytes(tmp_path, pcap([(1.0, probe)], 101))
    names = {a["name"] for a in res.record(1)["anomalies"]}
    assert ("fin_without_ack" in names) == flagged


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("snap", [None, 80])
def test_ip_length_zero_taken_from_the_capture(tmp_path: Path, v6: bool, snap: int | None) -> None:
    """A host doing TSO captures its own segments before the IP length is
    filled in: every packet of the seed's exchange with length 0 still gives
    the seed's numbers, also when the capture kept only the headers."""
    pk = [(t, link(1, zero_length(p), v6)) for t, p in seed_exchange(v6)]
    res = analyze_bytes(tmp_path, pcap(pk, 1, snap=snap))
    assert res.error is None and res.n == 1 and res.tcp_packets == 11
    check_seed(res.record(1))
    key = "ipv6_length_from_capture" if v6 else "ipv4_length_from_capture"
    assert res.notes[key] == 11
    assert not [k for k in res.drops if "bad" in k or "truncated" in k]


# -- damaged files -------------------------------------------------------------


def seed_pcap() -> bytes:
    return pcap([(t, link(1, p)) for t, p in seed_exchange()], 1)


def test_truncated_pcap_keeps_what_was_read(tmp_path: Path) -> None:
    data = seed_pcap()
    cut = len(data) - 30  # inside the last record
    res = analyze_bytes(tmp_path, data[:cut])
    assert res.error is not None and "truncated pcap record" in res.error
    assert res.records_read == 10 and res.n == 1
    assert res.record(1)["fins"]["client"]["seq"] == 248  # read before the damage
    start_last = len(data) - (16 + 14 + 40)
    assert res.error_offset == start_last and f"byte offset {start_last}" in res.error


def test_corrupt_pcap_record_length(tmp_path: Path) -> None:
    data = bytearray(seed_pcap())
    off = 24 + 16 + 54  # second record header
    data[off + 8 : off + 12] = (10**8).to_bytes(4, "little")
    res = analyze_bytes(tmp_path, bytes(data))
    assert res.error_offset == off and "captured length 100000000" in str(res.error)
    assert res.records_read == 1


def test_truncated_pcap_header(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="truncated pcap file header"):
        list(iter_batches(_write(tmp_path, seed_pcap()[:10])))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(EmptyCaptureError, match="empty file"):
        list(iter_batches(_write(tmp_path, b"")))


def test_not_a_capture(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="not a pcap or pcapng file"):
        list(iter_batches(_write(tmp_path, b"GIF89a" + b"\0" * 40)))


def pcapng_seed() -> bytes:
    return pcapng([(t, link(1, p), 0) for t, p in seed_exchange()], [(1, 6)])


def test_truncated_pcapng(tmp_path: Path) -> None:
    data = pcapng_seed()
    res = analyze_bytes(tmp_path, data[:-10], "c.pcapng")
    assert "truncated pcapng block" in str(res.error) and res.records_read == 10


def test_corrupt_pcapng_block(tmp_path: Path) -> None:
    data = bytearray(pcapng_seed())
    last = len(data) - (32 + 56)  # the last EPB: 28 + 54 bytes of data, padded, + 4
    assert data[last : last + 4] == b"\x06\0\0\0"
    data[last + 4 : last + 8] = (13).to_bytes(4, "little")
    res = analyze_bytes(tmp_path, bytes(data), "c.pcapng")
    assert res.error_offset == last and "length 13" in str(res.error)
    assert res.records_read == 10 and res.n == 1


def test_pcapng_unknown_interface(tmp_path: Path) -> None:
    pk = [(t, link(1, p), 0 if i < 5 else 3) for i, (t, p) in enumerate(seed_exchange())]
    res = analyze_bytes(tmp_path, pcapng(pk, [(1, None)]), "c.pcapng")
    assert "unknown interface 3" in str(res.error) and res.records_read == 5


def _write(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "x.cap"
    p.write_bytes(data)
    return p


# -- the command -----------------------------------------------------------------


def test_cli_exit_2_with_partial_results(tmp_path: Path) -> None:
    p = _write(tmp_path, seed_pcap()[:-30])
    r = CliRunner().invoke(main, ["analyze", str(p), "--json"])
    assert r.exit_code == 2
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 1 and lines[0]["id"] == 1
    assert f"{p}: truncated pcap record" in r.stderr and "byte offset" in r.stderr


def test_cli_empty_file(tmp_path: Path) -> None:
    p = _write(tmp_path, b"")
    r = CliRunner().invoke(main, ["analyze", str(p)])
    assert r.exit_code == 2 and "empty file" in r.stderr


def test_cli_csv_and_summary(tmp_path: Path) -> None:
    p = _write(tmp_path, seed_pcap())
    r = CliRunner().invoke(main, ["analyze", str(p), "--csv"])
    assert r.exit_code == 0
    rows = r.stdout.splitlines()
    assert rows[0].startswith("file,id,") and ",four_way,server," in rows[1]
    r = CliRunner().invoke(main, ["analyze", str(p)])
    assert r.exit_code == 0 and "four_way" in r.stdout


@pytest.mark.parametrize("chunk", [8 << 20, 256 << 10])
def test_a_direction_past_4_gib(tmp_path: Path, chunk: int) -> None:
    """75,000 segments of 60,000 bytes (headers captured only): 4.5 GB in
    one direction, so the relative numbers pass 2**32 once.  No segment is
    taken for a retransmission and every byte counts once; the FIN's
    relative number is the stream's length + 1.  Read in one batch, or in
    batches of 256 KiB (about 25: the first ones all below 2 GiB, then the
    crossing of 2**31 and of 2**32 in later ones)."""
    a, b = "198.18.0.1", "198.18.0.2"
    isn_a, isn_b, seg, n = 3_000_000_000, 7, 60_000, 75_000
    m32 = 0xFFFFFFFF

    def data(seq: int) -> bytes:
        """The headers of a 60,000-byte segment (the record keeps only them)."""
        hdr = ip4(a, b, tcp(40000, 80, seq & m32, isn_b + 1, ACK, 0))
        return hdr[:2] + (40 + seg).to_bytes(2, "big") + hdr[4:]

    pk = [
        (1.0, ip4(a, b, tcp(40000, 80, isn_a, 0, SYN, 0))),
        (1.001, ip4(b, a, tcp(80, 40000, isn_b, isn_a + 1, SYN | ACK, 0))),
        (1.002, ip4(a, b, tcp(40000, 80, isn_a + 1, isn_b + 1, ACK, 0))),
    ]
    pk += [(1.01 + i * 1e-5, data(isn_a + 1 + i * seg)) for i in range(n)]
    end = isn_a + 1 + n * seg
    pk += [
        (3.0, ip4(b, a, tcp(80, 40000, isn_b + 1, end & m32, ACK, 0))),
        (3.1, ip4(a, b, tcp(40000, 80, end & m32, isn_b + 1, FIN | ACK, 0))),
        (3.2, ip4(b, a, tcp(80, 40000, isn_b + 1, (end + 1) & m32, FIN | ACK, 0))),
        (3.3, ip4(a, b, tcp(40000, 80, (end + 1) & m32, isn_b + 2, ACK, 0))),
    ]
    # Records: captured length = what is there, original length = the IP length.
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 96, 101)]
    for t, pkt in pk:
        wire = int.from_bytes(pkt[2:4], "big")
        out.append(struct.pack("<IIII", int(t), round(t % 1 * 1e6), len(pkt), wire) + pkt)
    path = tmp_path / "c.pcap"
    path.write_bytes(b"".join(out))
    res = analyze_file(path, chunk_size=chunk)
    assert res.error is None and res.n == 1
    rec = res.record(1)
    assert rec["bytes"]["client_to_server"] == n * seg > 1 << 32
    assert rec["retransmissions"] == {"client_to_server": 0, "server_to_client": 0}
    assert rec["fins"]["client"]["seq"] == n * seg + 1
    assert (rec["close"], rec["conn_state"], rec["anomalies"]) == ("three_way", "SF", [])


@pytest.mark.parametrize("v6", [False, True])
def test_verify_checksums(tmp_path: Path, v6: bool) -> None:
    """With correct checksums nothing changes; a segment with a wrong one
    is dropped (Zeek's default) and leaves ``c`` in the history, only with
    verify_checksums."""

    def csum(pkt: bytes) -> bytes:
        """The packet with its TCP checksum filled in (RFC 9293 §3.1)."""
        if v6:
            src, dst, seg = pkt[8:24], pkt[24:40], bytearray(pkt[40:])
            pseudo = src + dst + struct.pack("!IxxxB", len(seg), 6)
        else:
            ihl = (pkt[0] & 15) * 4
            src, dst, seg = pkt[12:16], pkt[16:20], bytearray(pkt[ihl:])
            pseudo = src + dst + struct.pack("!xBH", 6, len(seg))
        seg[16:18] = b"\0\0"
        data = pseudo + bytes(seg) + b"\0" * (len(seg) % 2)
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        seg[16:18] = struct.pack("!H", ~total & 0xFFFF)
        return pkt[: len(pkt) - len(seg)] + bytes(seg)

    good = [(t, csum(p)) for t, p in seed_exchange(v6)]
    res = analyze_bytes(tmp_path, pcap(good, 101))
    checked = analyze_file(tmp_path / "c.pcap", verify_checksums=True)
    check_seed(checked.record(1))
    assert checked.skipped() == {} and checked.tcp_packets == res.tcp_packets == 11
    # Corrupt the server's data segment (frame 6): one payload byte.
    bad = list(good)
    t, p = bad[5]
    bad[5] = (t, p[:-1] + bytes([p[-1] ^ 0xFF]))
    res = analyze_bytes(tmp_path, pcap(bad, 101), "bad.pcap")
    assert res.record(1)["history"] == "ShADadfF"  # not verified: analysed
    res = analyze_file(tmp_path / "bad.pcap", verify_checksums=True)
    rec = res.record(1)
    # The client's ACK of the dropped data is a content gap (Zeek's g).
    assert rec["history"] == "ShADacgfF"
    assert res.skipped() == {"bad checksum": {"tcp": 1}} and res.tcp_packets == 10
    assert rec["bytes"]["server_to_client"] == 0


def _outer4(proto: int, payload: bytes) -> bytes:
    return (
        ip4("198.19.0.1", "198.19.0.2", payload)[:9]
        + bytes([proto])
        + ip4("198.19.0.1", "198.19.0.2", payload)[10:]
    )


@pytest.mark.parametrize("how", ["vxlan", "gre", "gre-eth", "ipip", "vxlan-in-gre"])
def test_bulk_tunnels(tmp_path: Path, how: str) -> None:
    """The tunnels decoded in bulk (VXLAN, plain GRE, IP-in-IP) give the
    seed's numbers and the tunnel layers; one nested in another goes to
    the general path and gives the same."""
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"

    def wrap(kind: str, pkt: bytes) -> bytes:
        if kind == "vxlan":
            udp = struct.pack("!HHHH", 49152, 4789, 16 + 14 + len(pkt), 0)
            return _outer4(17, udp + b"\x08\0\0\0\0\0\x64\0" + eth + pkt)
        if kind == "gre":
            return _outer4(47, b"\0\0\x08\x00" + pkt)
        if kind == "gre-eth":
            return _outer4(47, b"\0\0\x65\x58" + eth + pkt)
        return _outer4(4, pkt)

    layers = how.split("-in-")
    pk = []
    for t, p in seed_exchange():
        for kind in layers if how != "gre-eth" else [how]:
            p = wrap(kind, p)
        pk.append((t, link(1, p)))
    res = analyze_bytes(tmp_path, pcap(pk, 1))
    assert res.error is None and res.n == 1 and res.skipped() == {}
    rec = res.record(1)
    check_seed(rec)
    types = [t["type"] for t in rec["tunnel"]]
    assert types == {"gre-eth": ["gre"], "vxlan-in-gre": ["gre", "vxlan"]}.get(
        how, [how.replace("ipip", "ip")]
    )
    assert rec["tunnel"][0]["src"].startswith("198.19.0.1")
    assert res.notes["decapsulated"] == 11


TEREDO_A = "2001:0:4137:9e50::1"  # a Teredo address (2001:0::/32)


def _in_udp(payload: bytes) -> bytes:
    """``payload`` in UDP between two ports no tunnel is registered for."""
    return _outer4(17, struct.pack("!HHHH", 49152, 32900, 8 + len(payload), 0) + payload)


def _v6_seed(client: str) -> list[tuple[float, bytes]]:
    a6 = socket.inet_pton(socket.AF_INET6, A6)
    new = socket.inet_pton(socket.AF_INET6, client)
    return [(t, p.replace(a6, new)) for t, p in seed_exchange(v6=True)]


ORIGIN = b"\x00\x00" + struct.pack("!H", 3797 ^ 0xFFFF) + bytes(b ^ 0xFF for b in (192, 0, 2, 1))
AUTH = b"\x00\x01\x00\x00" + b"\x11" * 8 + b"\x00"  # no client id, no value; nonce, confirmation
AYIYA = b"\x41\x52\x11\x29" + b"\0\0\0\0" + b"\x22" * 16 + b"\x33" * 20  # id 16 B, SHA-1 20 B


@pytest.mark.parametrize(
    ("name", "client", "head", "found"),
    [
        ("teredo: a teredo address", TEREDO_A, b"", "teredo"),
        ("teredo: origin indication", A6, ORIGIN, "teredo"),
        ("teredo: authentication, origin indication", A6, AUTH + ORIGIN, "teredo"),
        ("ayiya", A6, AYIYA, "ayiya"),
        ("ipv6, no teredo address", A6, b"", None),
        # Zeek's pattern: its "." does not match a newline byte (0x0a),
        # here the teredo address's last byte.
        ("teredo address ending in a newline byte", "2001:0:4137:9e50::a", b"", None),
        ("teredo: authentication, then ipv6", A6, AUTH, None),
    ],
)
def test_tunnels_found_by_content(
    tmp_path: Path, name: str, client: str, head: bytes, found: str | None
) -> None:
    """On a UDP port no tunnel is registered for, Teredo and AYIYA are found
    by their content, as Zeek's protocol detection finds them; other UDP
    that looks like IPv6 is not a tunnel."""
    pk = [(t, link(1, _in_udp(head + p))) for t, p in _v6_seed(client)]
    res = analyze_bytes(tmp_path, pcap(pk, 1))
    assert res.error is None
    if found is None:
        assert res.n == 0 and res.skipped() == {"not tcp": {"udp": 11}}, res.skipped()
        return
    assert res.n == 1 and res.skipped() == {}, (name, res.skipped())
    rec = res.record(1)
    check_seed(rec)
    assert rec["client"]["addr"] == client
    assert [(t["type"], t["src"], t["dst"]) for t in rec["tunnel"]] == [
        (found, "198.19.0.1:49152", "198.19.0.2:32900")
    ]


def _nflog(pkt: bytes) -> bytes:
    """NFLOG: family AF_INET, version 0, resource 0; a prefix TLV, then the
    payload TLV (type 9), lengths in host (little-endian) order."""
    prefix = b"test\0"
    tlv1 = struct.pack("<HH", 4 + len(prefix), 10) + prefix + b"\0" * (-len(prefix) % 4)
    return b"\x02\x00\x00\x00" + tlv1 + struct.pack("<HH", 4 + len(pkt), 9) + pkt


ETH_HDR = b"\x02" * 6 + b"\x04" * 6


@pytest.mark.parametrize(
    ("name", "linktype", "frame"),
    [
        ("nflog", 239, _nflog),
        ("ppp", 9, lambda p: b"\xff\x03\x00\x21" + p),
        ("ppp, protocol compressed", 9, lambda p: b"\x21" + p),
        ("pppoe session", 1, lambda p: ETH_HDR + b"\x88\x64\x11\x00\x00\x01"
         + struct.pack("!H", len(p) + 2) + b"\x00\x21" + p),
        ("three vlan tags", 1, lambda p: ETH_HDR + b"\x88\xa8\x00\x01\x81\x00\x00\x02"
         + b"\x81\x00\x00\x03\x08\x00" + p),
        ("mpls, two labels", 1, lambda p: ETH_HDR + b"\x88\x47\x00\x01\x00\x40\x00\x02\x01\x40" + p),
        ("ethernet over mpls", 1, lambda p: ETH_HDR + b"\x88\x47\x00\x01\x01\x40\x00\x00\x00\x00"
         + ETH_HDR + b"\x08\x00" + p),
        ("802.3 llc/snap", 1, lambda p: ETH_HDR + struct.pack("!H", len(p) + 8)
         + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + p),
        ("fddi", 10, lambda p: b"\x50" + b"\x02" * 6 + b"\x04" * 6
         + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + p),
        ("vn-tag", 1, lambda p: ETH_HDR + b"\x89\x26\x00\x00\x00\x00\x08\x00" + p),
        ("sll with a vlan tag", 113, lambda p: struct.pack("!HHH8s", 0, 1, 6, b"\x02" * 8)
         + b"\x81\x00\x00\x05\x08\x00" + p),
    ],
)  # fmt: skip
def test_general_path_link_layers(
    tmp_path: Path, name: str, linktype: int, frame: Callable[[bytes], bytes]
) -> None:
    """Link layers and tags only the general (per-packet) path decodes: the
    seed's exchange inside each gives the seed's numbers, no tunnel, and
    nothing skipped."""
    pk = [(t, frame(p)) for t, p in seed_exchange()]
    res = analyze_bytes(tmp_path, pcap(pk, linktype))
    assert res.error is None and res.skipped() == {}, (name, res.skipped())
    assert res.n == 1 and res.tcp_packets == 11
    rec = res.record(1)
    check_seed(rec)
    assert rec["tunnel"] == []


@pytest.mark.parametrize("ng", [False, True])
def test_batches_keep_their_bytes(tmp_path: Path, ng: bool) -> None:
    """A batch's bytes stay its own when the reader reads on: batches
    collected first (``list(iter_batches(...))``) hold the same packets as
    batches looked at one by one, over several chunks (the reader reads at
    least 256 KiB at a time: this file is about 2 MB)."""
    pkts = [(t + 10 * k, link(1, p)) for k in range(2500) for t, p in seed_exchange()]
    data = pcapng([(t, p, 0) for t, p in pkts], [(1, None)]) if ng else pcap(pkts, 1)
    path = _write(tmp_path, data)

    def packets(b: Any) -> list[bytes]:
        at = zip(b.data_off.tolist(), b.caplen.tolist(), strict=True)
        return [bytes(b.buf[o : o + c]) for o, c in at]

    one_by_one = [packets(b) for b in iter_batches(path, 1024)]
    collected = [packets(b) for b in list(iter_batches(path, 1024))]
    assert len(one_by_one) >= 4 and collected == one_by_one
    assert [p for ps in collected for p in ps] == [p for _, p in pkts]


def test_reads_sized_to_a_small_file(tmp_path: Path) -> None:
    """A regular file smaller than a chunk is read with a buffer of its own
    size (at least 64 kB), not a chunk's: each read zeroes its buffer."""
    from finwait.capture.reader import CHUNK, _read_size

    small = tmp_path / "small.pcap"
    small.write_bytes(bytes(100))
    big = tmp_path / "big.pcap"
    with open(big, "wb") as f:
        f.truncate(CHUNK + 1)  # (sparse)
    with open(small, "rb") as fh:
        assert _read_size(fh, CHUNK) == 1 << 16
    with open(big, "rb") as fh:
        assert _read_size(fh, CHUNK) == CHUNK
    r, w = os.pipe()  # (a pipe's size says nothing: a whole chunk)
    with os.fdopen(r, "rb") as fh, os.fdopen(w, "wb"):
        assert _read_size(fh, CHUNK) == CHUNK
