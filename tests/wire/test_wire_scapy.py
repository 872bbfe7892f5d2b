"""Cross-checks against an independent builder, scapy: packets scapy builds
decode to the expected Segment, and the bytes we build are the bytes scapy
builds (so our checksums are the ones scapy computes)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings

from finwait.wire.ip import decode_packet, encode_packet
from finwait.wire.segment import ACK, FIN, PSH, SYN, Segment, TcpOptions

from .strategies import segments

scapy_all = pytest.importorskip("scapy.all")
IP, IPv6, TCP, Raw = scapy_all.IP, scapy_all.IPv6, scapy_all.TCP, scapy_all.Raw
in4_chksum, in6_chksum = scapy_all.in4_chksum, scapy_all.in6_chksum
scapy_checksum = scapy_all.checksum
IPv6ExtHdrRouting = scapy_all.IPv6ExtHdrRouting
IPv6ExtHdrHopByHop = scapy_all.IPv6ExtHdrHopByHop


def _scapy(seg: Segment, scapy_opts: list[tuple[str, object]]) -> bytes:
    net = (
        IP(src=seg.src, dst=seg.dst, ttl=64, id=0, flags="DF")
        if ":" not in seg.src
        else IPv6(src=seg.src, dst=seg.dst, hlim=64)
    )
    tcp = TCP(
        sport=seg.sport, dport=seg.dport, seq=seg.seq, ack=seg.ack, flags=seg.flags,
        window=seg.window, urgptr=seg.urgent, options=scapy_opts,
    )  # fmt: skip
    return bytes(net / tcp / Raw(seg.payload)) if seg.payload else bytes(net / tcp)


CASES = [
    (
        Segment("198.18.0.1", "198.18.0.2", 40000, 80, 12345, 0, SYN, 64240, b"",
                TcpOptions(1460, 7, True, (111, 0))),
        [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (111, 0)), ("NOP", None), ("WScale", 7)],
    ),
    (
        Segment("119.75.218.70", "192.168.1.100", 80, 51000, 1050, 2248, FIN | ACK, 512),
        [],
    ),
    (
        Segment("2001:db8::1", "2001:db8::2", 9000, 443, 7, 9, PSH | ACK, 1000, b"payload!",
                TcpOptions(timestamps=(0xFFFFFFFF, 3))),
        [("NOP", None), ("NOP", None), ("Timestamp", (0xFFFFFFFF, 3))],
    ),
    (
        Segment("198.18.0.2", "198.18.0.1", 80, 40000, 1, 2, ACK, 300, b"odd",
                TcpOptions(timestamps=(1, 2), sack_blocks=((100, 200), (300, 400)))),
        [("NOP", None), ("NOP", None), ("Timestamp", (1, 2)),
         ("NOP", None), ("NOP", None), ("SAck", (100, 200, 300, 400))],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("seg", "scapy_opts"), CASES)
def test_same_bytes_as_scapy(seg: Segment, scapy_opts: list[tuple[str, object]]) -> None:
    theirs = _scapy(seg, scapy_opts)
    assert encode_packet(seg) == theirs
    assert decode_packet(theirs) == seg


def test_scapy_unaligned_options_decode() -> None:
    # scapy pads with EOL and does not align; the decoder does not care.
    seg = Segment("198.18.0.1", "198.18.0.2", 1, 2, 3, 4, SYN, 5)
    raw = _scapy(seg, [("WScale", 3), ("MSS", 536), ("SAckOK", b"")])
    assert decode_packet(raw).options == TcpOptions(mss=536, wscale=3, sack_permitted=True)


def test_scapy_routing_header_checksum() -> None:
    # scapy's in6_chksum uses the routing header's last address as the
    # pseudo-header destination when segments are left, as RFC 8200 §8.1 says.
    pkt = (
        IPv6(src="2001:db8::1", dst="2001:db8::5", hlim=64)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::6", "2001:db8::7"], segleft=2)
        / TCP(sport=5, dport=6, seq=7, ack=8, flags="A", window=9)
    )
    seg = decode_packet(bytes(pkt))
    assert (seg.src, seg.dst, seg.seq, seg.flags) == ("2001:db8::1", "2001:db8::7", 7, ACK)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(segments())
@example(Segment("::", "::", 0, 139, 0, 0, 0, 0, payload=b"\0" * 5))  # NetBIOS port
@example(Segment("0.0.0.0", "0.0.0.0", options=TcpOptions(unknown=((19, b""),))))  # short MD5
@example(Segment("0.0.0.0", "0.0.0.0", options=TcpOptions(unknown=((29, b"\0"),))))  # short AO
def test_our_checksums_are_scapys(seg: Segment) -> None:
    """scapy's checksum functions, run over our exact bytes (with the
    checksum fields zeroed), arrive at the values we wrote.  scapy neither
    dissects nor re-serialises the segment: it would rebuild payloads by
    port (139 as NetBIOS) and options by kind (a short MD5 option at full
    length), and gives up on some odd options (kind 29 with one byte)."""
    ours = encode_packet(seg)
    if ":" not in seg.src:
        start = (ours[0] & 0x0F) * 4
        header = bytearray(ours[:start])
        ip_written = int.from_bytes(header[10:12], "big")
        header[10:12] = b"\0\0"
        assert scapy_checksum(bytes(header)) == ip_written
    else:
        start = 40  # encode_packet writes no extension header
    segment = bytearray(ours[start:])
    written = int.from_bytes(segment[16:18], "big")
    segment[16:18] = b"\0\0"
    if ":" not in seg.src:
        computed = in4_chksum(6, IP(ours[:start]), bytes(segment))
    else:
        computed = in6_chksum(6, IPv6(ours[:start]), bytes(segment))
    assert computed == written
