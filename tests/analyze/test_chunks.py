"""One file on many cores (analyze/chunks.py): for random captures and
random cut points, the chunked analysis equals the sequential one record by
record (pcap and pcapng); the merge of partial results is associative; a
false boundary or a damaged file falls back to the sequential result."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finwait.analyze import analyze_file
from finwait.analyze.chunks import Chunk, Part, decode_chunk, merge, plan
from finwait.analyze.sets import analyze_set, pool_mapper

from .test_jsonl import zoo
from .test_sets import to_pcapng


def serial(fn, chunks: list[Chunk]) -> Iterator[Part]:  # type: ignore[no-untyped-def]
    for c in chunks:
        yield fn(c)


def _same(path: Path, cuts: list[int], mapper=serial) -> int:  # type: ignore[no-untyped-def]
    want = analyze_file(path)
    got = analyze_set([path], mapper=mapper, cuts={str(path): cuts}, as_set=False)
    assert (got.error, got.records_read, got.tcp_packets) == (
        want.error, want.records_read, want.tcp_packets)  # fmt: skip
    assert got.drops == want.drops and got.notes == want.notes
    assert list(got.records()) == list(want.records())
    return len(plan(path, cuts=cuts))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    fracs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
    ng=st.booleans(),
)
def test_chunked_equals_sequential(tmp_path: Path, seed: int, fracs: list[float], ng: bool) -> None:
    path = tmp_path / f"z{seed}.pcap"
    path.write_bytes(zoo(seed, 60))
    if ng:
        to_pcapng(path, path.with_suffix(".pcapng"))
        path = path.with_suffix(".pcapng")
    size = path.stat().st_size
    cuts = [int(f * size) for f in fracs]
    _same(path, cuts)


def test_cuts_make_chunks(tmp_path: Path) -> None:
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(3, 200))
    size = path.stat().st_size
    assert _same(path, [size * k // 10 for k in range(1, 10)]) >= 8
    ng = path.with_suffix(".pcapng")
    to_pcapng(path, ng)
    assert _same(ng, [ng.stat().st_size * k // 10 for k in range(1, 10)]) >= 8


def test_process_pool(tmp_path: Path) -> None:
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(8, 300))
    size = path.stat().st_size
    _same(path, [size // 3, 2 * size // 3], pool_mapper(2))


def test_merge_is_associative(tmp_path: Path) -> None:
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(9, 120))
    size = path.stat().st_size
    parts = [decode_chunk(c) for c in plan(path, cuts=[size // 4, size // 2, 3 * size // 4])]
    assert len(parts) == 4
    a, b, c, d = parts
    left = merge(merge(merge(a, b), c), d)
    right = merge(a, merge(b, merge(c, d)))
    mid = merge(merge(a, b), merge(c, d))
    for x in (right, mid):
        assert x.records == left.records and x.stacks == left.stacks and x.drops == left.drops
        assert x.cols is not None and left.cols is not None
        for k in ("frame", "ts", "src", "dst", "seq", "ack", "flags", "plen", "tunnel"):
            assert np.array_equal(getattr(x.cols, k), getattr(left.cols, k))
    # Frames after the merge are the file's.
    assert left.cols is not None and left.cols.frame[0] >= 1
    assert np.all(np.diff(left.cols.frame) > 0)


def test_false_boundary_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(10, 100))
    size = path.stat().st_size
    good = plan(path, cuts=[size // 2])
    assert len(good) == 2
    # Move the boundary off by 4 bytes: the first chunk no longer ends on
    # it, so the file is read sequentially and the result is unchanged.
    bad = [Chunk(str(path), good[0].start, good[1].start + 4, good[0].header, 0),
           Chunk(str(path), good[1].start + 4, -1, good[0].header, 1)]  # fmt: skip
    assert decode_chunk(bad[0]).error is not None

    def broken(fn, chunks):  # type: ignore[no-untyped-def]
        yield from serial(fn, bad)

    want = analyze_file(path)
    got = analyze_set([path], mapper=broken, cuts={str(path): [size // 2]}, as_set=False)
    assert list(got.records()) == list(want.records())


def test_damaged_file_chunked(tmp_path: Path) -> None:
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(11, 150))
    chunks = plan(path, cuts=[path.stat().st_size // 2])
    raw = bytearray(path.read_bytes())
    at = chunks[1].start  # a record header in the second chunk
    first = analyze_file(path)
    raw[at + 8 : at + 12] = struct.pack("<I", 0x7FFFFFFF)
    path.write_bytes(bytes(raw))
    want = analyze_file(path)
    assert want.error is not None and want.n < first.n
    got = analyze_set([path], mapper=serial, cuts={str(path): [len(raw) // 2]}, as_set=False)
    assert (got.error, got.error_offset) == (want.error, want.error_offset)
    assert list(got.records()) == list(want.records())


def test_no_boundary_four_bytes_into_a_header(tmp_path: Path) -> None:
    """Records whose captured and original lengths agree, all within a
    second: 4 bytes into a header the sub-second field reads as seconds and
    the chain goes on, shifted; the file's first timestamp rules it out."""
    pkt = bytes(range(60))
    recs = [struct.pack("<IIII", 1_780_000_000, 1000 + k, 60, 60) + pkt for k in range(400)]
    path = tmp_path / "tight.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 200, 101) + b"".join(recs))
    true = {24 + 76 * k for k in range(400)}
    for c in range(100, 76 * 300, 7):
        chunks = plan(path, cuts=[c])
        assert all(ch.start in true for ch in chunks), c
