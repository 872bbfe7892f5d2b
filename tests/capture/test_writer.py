"""The pcap writer: file and record headers byte by byte, and a Trace written
and read back by two independent readers, scapy and tshark, whose relative
sequence numbers must be the Trace's own."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from finwait.capture.writer import (
    LINKTYPE_RAW,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    PcapWriter,
    segment_packet,
    write_trace,
)
from finwait.trace import DROPPED, LOST, Trace
from finwait.wire.errors import ParseError
from finwait.wire.ip import decode_packet, encode_packet
from finwait.wire.segment import ACK, FIN, PSH, SYN, Segment, TcpOptions

# -- PcapWriter ---------------------------------------------------------------


def _records(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    out, at = [], 24
    while at < len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, at)
        out.append((sec, frac, incl, orig, data[at + 16 : at + 16 + incl]))
        at += 16 + incl
    return out


def test_file_header() -> None:
    assert (LINKTYPE_RAW, PCAP_MAGIC_US, PCAP_MAGIC_NS) == (101, 0xA1B2C3D4, 0xA1B23C4D)
    buf = io.BytesIO()
    PcapWriter(buf).close()
    assert buf.getvalue() == struct.pack(
        "<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, 262144, LINKTYPE_RAW
    )
    buf = io.BytesIO()
    PcapWriter(buf, linktype=1, nanosecond=True, snaplen=65535).close()
    assert buf.getvalue()[:4] == struct.pack("<I", PCAP_MAGIC_NS)
    assert struct.unpack_from("<II", buf.getvalue(), 16) == (65535, 1)
    assert not buf.closed  # a file object passed in stays open


def test_record_times_and_lengths() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        w.write(b"\x45abc", 1.5)
        w.write(b"x", 0.9999999)  # rounds up into the next second
        w.write(b"", 0.0)
    assert w.packets == 3
    assert _records(buf.getvalue()) == [
        (1, 500000, 4, 4, b"\x45abc"),
        (1, 0, 1, 1, b"x"),
        (0, 0, 0, 0, b""),
    ]


def test_nanosecond_records() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, nanosecond=True) as w:
        w.write(b"p", 2.000000123)
    assert _records(buf.getvalue())[0][:2] == (2, 123)


def test_snaplen_truncates_but_keeps_original_length() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, snaplen=4) as w:
        w.write(b"0123456789", 0.0)
    assert _records(buf.getvalue()) == [(0, 0, 4, 10, b"0123")]


def test_bad_times_and_closed_writer() -> None:
    w = PcapWriter(io.BytesIO())
    for t in (-0.5, float("nan"), float("inf"), 2.0**33):
        with pytest.raises(ValueError):
            w.write(b"x", t)
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write(b"x", 0.0)
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), snaplen=0)


def test_path_is_opened_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "one.pcap"
    with PcapWriter(path) as w:
        w.write(b"\x45", 0.25)
    assert path.read_bytes()[24:] == struct.pack("<IIII", 0, 250000, 1, 1) + b"\x45"


def _whole_records(data: bytes) -> int:
    """How many records ``data`` holds; fails unless it ends on a record's end."""
    at, n = 24, 0
    while at < len(data):
        assert at + 16 <= len(data), f"a record header cut short at {at}"
        kept = struct.unpack_from("<IIII", data, at)[2]
        assert at + 16 + kept <= len(data), f"a record cut short at {at}"
        at += 16 + kept
        n += 1
    return n


def test_the_file_always_ends_on_a_record_boundary(tmp_path: Path) -> None:
    """Whatever moment the process stops at (SIGKILL included), the file
    holds whole records only: records are written out in whole numbers, and
    a header never goes out without its packet (issue: a Ctrl-C left a
    record header announcing 1,500 bytes and none of them)."""
    path = tmp_path / "live.pcap"
    w = PcapWriter(path)
    assert len(path.read_bytes()) == 24  # a valid empty capture at once
    seen_growth = 0
    for i in range(3000):
        w.write(bytes(40 + (i * 37) % 1461), i * 0.001)
        if i % 50 == 0:
            data = path.read_bytes()
            seen_growth += len(data) > 24
            assert _whole_records(data) <= i + 1
    w.close()
    assert seen_growth, "records were only written at close"
    assert _whole_records(path.read_bytes()) == 3000


def test_a_record_goes_to_a_file_object_in_one_write() -> None:
    writes: list[bytes] = []

    class Recorder(io.BytesIO):
        def write(self, b: object) -> int:
            writes.append(bytes(b))  # type: ignore[call-overload]
            return len(writes[-1])

    with PcapWriter(Recorder()) as w:
        w.write(b"x" * 100, 1.0)
    assert [len(b) for b in writes] == [24, 116]


# -- write_trace ----------------------------------------------------------------

A4, B4 = ("198.18.0.2", 40000), ("198.18.0.1", 80)
A6, B6 = ("2001:db8::2", 40000), ("2001:db8::1", 80)


def _trace(a: tuple[str, int], b: tuple[str, int]) -> Trace:
    """Open, data both ways, a lost segment and its retransmission, a
    corrupted one, then the seed's release with half-close data: B closes
    first (FIN seq 50, ack 248), A keeps sending, then A's FIN (seq 248+3)."""
    isn_a, isn_b = 0xFFFFFF00, 7000  # A's numbers wrap past 2**32
    tr = Trace()
    tr.add_endpoint("A", *a, isn=isn_a)
    tr.add_endpoint("B", *b, isn=isn_b)

    def seg(frm: tuple[str, int], to: tuple[str, int], seq: int, ack: int, flags: int,
            data: bytes = b"") -> Segment:  # fmt: skip
        base_s = isn_a if frm == a else isn_b
        base_a = isn_b if frm == a else isn_a
        return Segment(
            frm[0], to[0], frm[1], to[1], (base_s + seq) & 0xFFFFFFFF,
            (base_a + ack) & 0xFFFFFFFF if flags & ACK else 0, flags, 5000, data,
            TcpOptions(timestamps=(seq, ack)) if not flags & SYN else TcpOptions(1460, 7, True),
        )  # fmt: skip

    tr.add_segment(0.000, seg(a, b, 0, 0, SYN))
    tr.add_segment(0.010, seg(b, a, 0, 1, SYN | ACK))
    tr.add_segment(0.020, seg(a, b, 1, 1, ACK))
    tr.add_segment(0.021, seg(a, b, 1, 1, PSH | ACK, b"q" * 200))
    tr.add_segment(0.022, seg(a, b, 201, 1, PSH | ACK, b"r" * 47), LOST, "loss")
    tr.add_segment(0.030, seg(b, a, 1, 201, PSH | ACK, b"s" * 49))
    tr.add_segment(0.031, seg(a, b, 201, 50, PSH | ACK, b"r" * 47), DROPPED, "bad checksum")
    tr.add_segment(0.250, seg(a, b, 201, 50, PSH | ACK, b"r" * 47))
    tr.add_segment(0.260, seg(b, a, 50, 248, FIN | ACK))  # the seed's step 1
    tr.add_segment(0.270, seg(a, b, 248, 51, ACK))  # step 2: half-closed
    tr.add_segment(0.280, seg(a, b, 248, 51, PSH | ACK, b"end"))  # A still sends
    tr.add_segment(0.290, seg(b, a, 51, 251, ACK))
    tr.add_segment(0.300, seg(a, b, 251, 51, FIN | ACK))  # step 3
    tr.add_segment(0.310, seg(b, a, 51, 252, ACK))  # step 4
    return tr


@pytest.fixture(params=["v4", "v6"])
def trace(request: pytest.FixtureRequest) -> Trace:
    return _trace(A4, B4) if request.param == "v4" else _trace(A6, B6)


def test_trace_read_back_by_scapy(trace: Trace, tmp_path: Path) -> None:
    rdpcap = pytest.importorskip("scapy.all").rdpcap
    path = tmp_path / "trace.pcap"
    assert write_trace(trace, path) == 14
    packets = rdpcap(str(path))
    events = list(trace.segments())
    assert len(packets) == len(events)
    for pkt, ev in zip(packets, events, strict=True):
        raw = bytes(pkt)
        assert float(pkt.time) == pytest.approx(ev.t, abs=1e-6)
        if ev.reason == "bad checksum":
            with pytest.raises(ParseError, match="bad checksum"):
                decode_packet(raw)
            assert decode_packet(raw, verify_checksum=False) == ev.segment
        else:
            assert raw == encode_packet(ev.segment)
            assert decode_packet(raw) == ev.segment


def test_include_lost_false_leaves_lost_out(trace: Trace) -> None:
    buf = io.BytesIO()
    assert write_trace(trace, buf, include_lost=False) == 13
    recorded = {rec[4] for rec in _records(buf.getvalue())}
    lost = next(ev for ev in trace.segments() if ev.fate == LOST)
    assert segment_packet(lost) not in recorded


def test_written_in_time_order() -> None:
    tr = _trace(A4, B4)
    tr.events.reverse()
    buf = io.BytesIO()
    write_trace(tr, buf, nanosecond=True)
    times = [sec * 10**9 + frac for sec, frac, *_ in _records(buf.getvalue())]
    assert times == sorted(times)


def _tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if os.environ.get("FINWAIT_LIVE") == "require":
            pytest.fail("tshark is required (FINWAIT_LIVE=require) but not installed")
        pytest.skip("tshark not installed")
    return path


def test_trace_read_back_by_tshark(trace: Trace, tmp_path: Path) -> None:
    tshark = _tshark()
    path = tmp_path / "trace.pcap"
    write_trace(trace, path)
    out = subprocess.run(
        [tshark, "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-T", "fields",
         "-e", "tcp.seq", "-e", "tcp.ack", "-e", "tcp.flags", "-e", "tcp.flags.str",
         "-e", "tcp.checksum.status", "-e", "tcp.len"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    events = list(trace.segments())
    assert len(rows) == len(events)
    for row, ev in zip(rows, events, strict=True):
        seq, ack, flags, flags_str, status, length = row
        assert (int(seq), int(ack or 0)) == trace.relative(ev), ev.segment.describe()
        assert int(flags, 16) == ev.segment.flags
        assert flags_str.endswith("F") == bool(ev.segment.flags & FIN)
        assert int(length) == len(ev.segment.payload)
        # tshark's checksum status: 1 good, 0 bad.
        assert status == ("0" if ev.reason == "bad checksum" else "1")


def test_seed_release_numbers_in_tshark(tmp_path: Path) -> None:
    """The seed's four steps appear as 50/248, 248/51, (data), 251/51, 51/252."""
    tshark = _tshark()
    path = tmp_path / "seed.pcap"
    write_trace(_trace(A4, B4), path)
    out = subprocess.run(
        [tshark, "-r", str(path), "-Y", "tcp.len == 0 && frame.number >= 9",
         "-T", "fields", "-e", "tcp.seq", "-e", "tcp.ack"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert out.split() == ["50", "248", "248", "51", "51", "251", "251", "51", "51", "252"]
