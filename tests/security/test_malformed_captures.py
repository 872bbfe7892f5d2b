"""A generated corpus of broken pcap and pcapng files: truncated at every
byte (so at every structure boundary), absurd lengths, wrong magic,
zero-length records, mixed link types and garbage blocks.  Each must give
its clear message (``Analysis.error`` with an offset) and the partial result
before the damage, never a traceback and never memory beyond a bound.
Reader bugs found here stay as regression tests."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest

from finwait.analyze.classify import Analysis
from finwait.analyze.run import analyze_file
from finwait.wire.ip import encode_packet
from finwait.wire.segment import ACK, FIN, PSH, SYN, Segment

A, B = "198.18.0.1", "198.18.0.2"
ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"  # LINKTYPE_ETHERNET, IPv4


def packets() -> list[bytes]:
    segs = [
        Segment(A, B, 40000, 80, 0, 0, SYN, 65535),
        Segment(B, A, 80, 40000, 0, 1, SYN | ACK, 65535),
        Segment(A, B, 40000, 80, 1, 1, ACK, 65535),
        Segment(A, B, 40000, 80, 1, 1, PSH | ACK, 65535, b"x" * 247),
        Segment(B, A, 80, 40000, 1, 248, FIN | ACK, 65535),
        Segment(A, B, 40000, 80, 248, 2, FIN | ACK, 65535),
        Segment(B, A, 80, 40000, 2, 249, ACK, 65535),
    ]
    return [encode_packet(s) for s in segs]


def pcap(pkts: list[bytes], linktype: int = 101, caplens: list[int] | None = None) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)
    for i, p in enumerate(pkts):
        cap = len(p) if caplens is None else caplens[i]
        out += struct.pack("<IIII", 1000 + i, 0, cap, len(p)) + p
    return out


def block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(linktype: int, tsresol: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = struct.pack("<HHB3x", 9, 1, tsresol) + b"\0" * 4
    return block(1, struct.pack("<HHI", linktype, 0, 262144) + opts)


def epb(ifid: int, pkt: bytes, i: int) -> bytes:
    return block(6, struct.pack("<IIIII", ifid, 0, 1_000_000 * i, len(pkt), len(pkt)) + pkt)


def pcapng(pkts: list[bytes]) -> bytes:
    return SHB + idb(101) + b"".join(epb(0, p, i) for i, p in enumerate(pkts))


def analyze(tmp: Path, data: bytes, name: str = "c.pcap") -> Analysis:
    f = tmp / name
    f.write_bytes(data)
    return analyze_file(f, chunk_size=256)


def test_intact_files_read_completely(tmp_path: Path) -> None:
    for data in (pcap(packets()), pcapng(packets())):
        r = analyze(tmp_path, data)
        assert r.error is None and r.records_read == 7 and r.n == 1


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_at_every_byte(tmp_path: Path, fmt: str) -> None:
    pkts = packets()
    data = pcap(pkts) if fmt == "pcap" else pcapng(pkts)
    # Where each record ends: a cut there leaves exactly that many records.
    ends, pos = [], (24 if fmt == "pcap" else len(SHB) + len(idb(101)))
    for i, p in enumerate(pkts):
        pos += 16 + len(p) if fmt == "pcap" else len(epb(0, p, i))
        ends.append(pos)
    for cut in range(len(data)):
        r = analyze(tmp_path, data[:cut])
        complete = sum(1 for e in ends if e <= cut)
        assert r.records_read == complete, cut
        # A cut after the file header (pcapng: after the SHB or the IDB) is a
        # clean, empty capture.
        boundary = cut == 24 if fmt == "pcap" else cut in (len(SHB), len(SHB) + len(idb(101)))
        if cut == 0:
            assert r.empty and r.error
        elif cut not in ends and not boundary:
            assert r.error and "at byte offset" in r.error, (cut, r.error)
            assert r.error_offset is not None and 0 <= r.error_offset <= cut


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xde\xad\xbe\xef" + bytes(40), "not a pcap or pcapng"),
        (pcap(packets()[:2]) + struct.pack("<IIII", 0, 0, 0xFFFFFFFF, 0xFFFFFFFF), "exceeds"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 9, 4, 0, 0, 65535, 101), "unsupported pcap version"),
        (SHB + idb(101) + struct.pack("<II", 6, 0x7FFFFFFC) + bytes(64), "exceeds"),
        (SHB + idb(101) + struct.pack("<II", 6, 13) + bytes(16), "length 13"),
        (SHB + idb(101) + epb(3, packets()[0], 0), "unknown interface 3"),
        (SHB + epb(0, packets()[0], 0), "unknown interface 0"),
        (pcapng(packets()[:3]) + b"\x17" * 40, "corrupt pcapng block"),
    ],
    ids=[
        "magic",
        "pcap-caplen",
        "pcap-version",
        "ng-blocklen",
        "ng-odd-len",
        "ng-ifid",
        "ng-no-idb",
        "ng-garbage-tail",
    ],
)
def test_damage_gives_a_clear_message_and_partial_results(
    tmp_path: Path, data: bytes, needle: str
) -> None:
    tracemalloc.start()
    try:
        r = analyze(tmp_path, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.error is not None and needle in r.error, r.error
    assert peak < 64 << 20  # no allocation sized by an absurd length field
    if needle in ("exceeds", "corrupt pcapng block") and data.startswith(b"\xd4\xc3\xb2\xa1"):
        assert r.records_read == 2


def test_zero_length_records_are_counted_not_fatal(tmp_path: Path) -> None:
    pkts = packets()
    r = analyze(
        tmp_path,
        pcap(
            [*pkts[:3], b"", *pkts[3:]],
            caplens=[len(p) for p in pkts[:3]] + [0] + [len(p) for p in pkts[3:]],
        ),
    )
    assert r.error is None and r.records_read == 8 and r.n == 1
    assert sum(r.drops.values()) - r.drops["tcp"] == 1


def test_mixed_link_types_and_unknown_blocks_are_read(tmp_path: Path) -> None:
    pkts = packets()
    garbage = block(0x0BAD, b"\x55" * 37)  # an unknown block type: skipped (pcapng §3.1)
    data = (
        SHB
        + idb(101)
        + idb(1)
        + garbage
        + b"".join(epb(i % 2, (ETH + p) if i % 2 else p, i) for i, p in enumerate(pkts))
    )
    r = analyze(tmp_path, data, "m.pcapng")
    assert r.error is None and r.records_read == 7 and r.n == 1
    assert r.drops["tcp"] == 7


@pytest.mark.parametrize("tsresol", [19, 0x80 | 64])
def test_absurd_timestamp_resolution(tmp_path: Path, tsresol: int) -> None:
    """Found by fuzz/fuzz_capture.py: an if_tsresol of 10**19 (or 2**64)
    overflowed the bulk decoder's int64 and escaped as a traceback."""
    data = SHB + idb(101, tsresol) + epb(0, packets()[0], 1)
    r = analyze(tmp_path, data)
    assert r.error is not None and "resolution" in r.error
