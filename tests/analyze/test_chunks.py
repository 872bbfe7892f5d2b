"""One file on many cores (analyze/chunks.py, analyze/partition.py): for
random captures, random cut points and any number of 4-tuple partitions,
the chunked and partitioned analysis equals the sequential one record by
record (pcap and pcapng, one file and sets); the merge of partial results is
associative; a false boundary or a damaged file falls back to the
sequential result."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from capture.builders import A4, B4, ip4, pcap, tcp
from finwait.analyze import analyze_file, tracker
from finwait.analyze.chunks import Chunk, decode_chunk, plan
from finwait.analyze.partition import Runner, process_runner, serial_runner
from finwait.analyze.sets import analyze_set

from .test_jsonl import ACK, FIN, PSH, RST, SYN, zoo
from .test_sets import to_pcapng


def _same(path: Path, cuts: list[int], runner: Runner | None = None) -> int:
    want = analyze_file(path)
    runner = runner or serial_runner(2)
    got = analyze_set([path], runner=runner, cuts={str(path): cuts}, as_set=False)
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
    parts=st.integers(1, 4),
)
def test_chunked_equals_sequential(
    tmp_path: Path, seed: int, fracs: list[float], ng: bool, parts: int
) -> None:
    path = tmp_path / f"z{seed}.pcap"
    path.write_bytes(zoo(seed, 60))
    if ng:
        to_pcapng(path, path.with_suffix(".pcapng"))
        path = path.with_suffix(".pcapng")
    size = path.stat().st_size
    cuts = [int(f * size) for f in fracs]
    _same(path, cuts, serial_runner(parts))


def rotate_at(data: bytes, at: list[float], out: Path) -> list[Path]:
    """The pcap ``data`` cut into files before the records at fractions
    ``at`` of its record count (what tcpdump -C does, by count)."""
    head, offs = data[:24], []
    off = 24
    while off < len(data):
        offs.append(off)
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    cut = sorted({0, *(int(f * len(offs)) for f in at)} - {len(offs)})
    ends = [*(offs[k] for k in cut[1:]), len(data)]
    files = []
    for k, (a, z) in enumerate(zip((offs[c] for c in cut), ends, strict=True)):
        f = out / f"part{k:02d}.pcap"
        f.write_bytes(head + data[a:z])
        files.append(f)
    return files


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    at=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    fracs=st.lists(st.floats(0.0, 1.0), max_size=3),
    parts=st.integers(1, 3),
    zeek=st.booleans(),
)
def test_partitioned_set_equals_sequential(
    tmp_path: Path, seed: int, at: list[float], fracs: list[float], parts: int, zeek: bool
) -> None:
    """A set (files cut at random records, each cut again into chunks at
    random points), tracked in partitions, Zeek's timers on or off: the
    sequential set's records, ``files`` included, and the original file's
    otherwise."""
    import tempfile

    d = Path(tempfile.mkdtemp(dir=tmp_path))
    data = zoo(seed, 40)
    files = rotate_at(data, at, d)
    cuts = {str(f): [int(x * f.stat().st_size) for x in fracs] for f in files}
    want = analyze_set(files, zeek_timeouts=zeek)
    got = analyze_set(files, runner=serial_runner(parts), cuts=cuts, zeek_timeouts=zeek)
    assert got.records_read == want.records_read and got.drops == want.drops
    assert list(got.records()) == list(want.records())
    whole = d / "whole.pcap"
    whole.write_bytes(data)
    strip = [{k: v for k, v in r.items() if k != "files"} for r in got.records()]
    assert strip == list(analyze_file(whole, zeek_timeouts=zeek).records())


def test_partition_merge_is_associative(tmp_path: Path) -> None:
    """Partition results merged in any bracketing give the same records;
    and the merge renumbers: folding the partitions apart and taking them
    side by side (no renumbering) does not give the sequential ids."""
    from finwait.analyze.classify import classify
    from finwait.analyze.partition import Folder, decode_split
    from finwait.analyze.partition import merge as pmerge

    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(13, 150))
    size = path.stat().st_size
    chunks = plan(path, cuts=[size // 3, 2 * size // 3])
    folders = [Folder([0] * len(chunks)) for _ in range(4)]
    for c in chunks:
        for f, pc in zip(folders, decode_split(c, 4), strict=True):
            f.fold(pc)
    a, b, c, d = (f.result() for f in folders)
    assert min(x.tracker.nconns for x in (a, b, c, d)) > 0
    want = list(analyze_file(path).records())

    def recs(p):  # type: ignore[no-untyped-def]
        return list(classify(p.tracker, str(path)).records())

    for x in (pmerge(pmerge(pmerge(a, b), c), d), pmerge(a, pmerge(b, pmerge(c, d))),
              pmerge(pmerge(a, b), pmerge(c, d)), pmerge(pmerge(d, c), pmerge(b, a))):  # fmt: skip
        assert recs(x) == want
    # Alone, every partition numbers its connections from 1: only one of
    # them has the capture's first connection as its connection 1.
    assert sum(recs(x)[0] == want[0] for x in (a, b, c, d)) == 1


def test_merge_knows_every_tracker_attribute() -> None:
    """merge_trackers handles each attribute of a Tracker by kind; a new
    attribute it does not know fails here (and in the merge) rather than
    being merged wrongly."""
    from finwait.analyze.partition import merge_trackers
    from finwait.analyze.tracker import Tracker

    a, b = Tracker(), Tracker()
    merge_trackers(a, b)
    a.extra = 1  # type: ignore[attr-defined]
    b.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(NotImplementedError, match="extra"):
        merge_trackers(a, b)


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
    for n, parts in ((2, 3), (3, 8)):
        runner = process_runner(n)
        assert _same(path, [size * k // parts for k in range(1, parts)], runner) == parts
        assert sum(runner.decoded) == parts  # (no fall-back)


def test_process_pool_balances_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks go to whichever worker has time: with worker 1's folds slowed
    down (50 ms more a chunk), worker 0 decodes most chunks, and the result
    is still the sequential one, without falling back.  (Chunk ``p + kn``
    to worker ``p``, as before, gave each the same count.)"""
    import multiprocessing
    import time

    from finwait.analyze import partition

    fold = partition.Folder.fold

    def slow(self: partition.Folder, piece: partition.Piece) -> partition.Folder:
        if multiprocessing.current_process().name == "finwait-partition-1":
            time.sleep(0.05)
        return fold(self, piece)

    monkeypatch.setattr(partition.Folder, "fold", slow)  # (the workers are forks)
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(8, 300))
    size = path.stat().st_size
    runner = process_runner(2)
    assert _same(path, [size * k // 16 for k in range(1, 16)], runner) == 16
    assert sum(runner.decoded) == 16 and runner.decoded[0] >= 11, runner.decoded


def test_url_through_fsspec(tmp_path: Path) -> None:
    """A memory:// URL (fsspec): read sequentially and in partitions."""
    import fsspec

    data = zoo(14, 120)
    url = "memory://finwait-test/z.pcap"
    with fsspec.open(url, "wb") as fh:
        fh.write(data)
    path = tmp_path / "z.pcap"
    path.write_bytes(data)
    want = list(analyze_file(path).records())
    assert list(analyze_file(url).records()) == want
    cuts = {url: [len(data) // 3, 2 * len(data) // 3]}
    got = analyze_set([url], runner=serial_runner(2), cuts=cuts, as_set=False)
    assert len(plan(url, cuts=cuts[url])) == 3
    assert list(got.records()) == want


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

    inner = serial_runner(2)

    def broken(chunks, file_of, zeek, done):  # type: ignore[no-untyped-def]
        return inner(bad, file_of, zeek, done)

    want = analyze_file(path)
    got = analyze_set([path], runner=broken, cuts={str(path): [size // 2]}, as_set=False)
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
    got = analyze_set([path], runner=serial_runner(2), cuts={str(path): [len(raw) // 2]},
                      as_set=False)  # fmt: skip
    assert (got.error, got.error_offset) == (want.error, want.error_offset)
    assert list(got.records()) == list(want.records())


def test_tracker_does_not_depend_on_batches(tmp_path: Path) -> None:
    """A bug the chunked runs found (fixed): a 4-tuple's packet 74 s after
    a connection that began without a SYN (a horizon start, 18.5 s after a
    RST) started yet another connection when both were in one batch (the
    horizon counted the RST, from before that start, as a close) but not
    when a batch boundary fell between them.  So the sequential result
    depended on the batch size, and chunked runs differed from it for such
    a capture (291 connections against 290 here)."""
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(9, 300))
    want = list(analyze_file(path).records())
    assert list(analyze_file(path, chunk_size=1 << 16).records()) == want


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


def test_quick_scan_defers_to_the_full_window(tmp_path: Path) -> None:
    """Records of 36 kB whose payload is itself a run of small consistent
    record headers.  From a true record start, 16 true records run far past
    the quick scan's 64 kB while the payload's fake chain right after it
    fits: the quick scan must not take the fake chain while the earlier,
    true one is undecided.  Everywhere, the answer is the full search's."""
    from finwait.analyze import chunks as ch

    body = b"".join(struct.pack("<IIII", 1_780_000_000, k, 20, 20) + bytes(20)
                    for k in range(1000))  # fmt: skip
    rec = len(body) + 16
    recs = [struct.pack("<IIII", 1_780_000_001, k, len(body), len(body)) + body
            for k in range(40)]  # fmt: skip
    path = tmp_path / "big.pcap"
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(head + b"".join(recs))
    info = ch._header(str(path))
    assert info is not None
    kind, header, limit = info
    for k in (1, 2, 7, 20):
        for off in (24 + rec * k, 24 + rec * k - 10, 24 + rec * k + 5_000):
            got = ch.find_boundary(str(path), off, kind, header, limit, 1_780_000_000)
            full = ch._scan(str(path), off, 1 << 30, ch.WINDOW, kind, header, limit,
                            1_780_000_000)  # fmt: skip
            assert got == full[1], (off, got, full)
            if off <= 24 + rec * k:
                assert got == 24 + rec * k


def test_partition_hash_uses_every_address_bit() -> None:
    """IPv6 clients that differ only above their low 32 bits (one /64 per
    site, the same interface id) spread over the partitions, the same for
    both directions of a connection."""
    import numpy as np

    from finwait.analyze.partition import partition_of
    from finwait.capture.decode import TcpColumns

    k = 64
    cli = np.array([[0x20010DB8, site, 0, 1] for site in range(k)], dtype=np.int64)
    srv = np.tile(np.array([0x20010DB8, 0xFFFF, 0, 2], dtype=np.int64), (k, 1))
    z = np.zeros(k, dtype=np.int64)
    sport, dport = np.full(k, 40000), np.full(k, 443)

    def cols(src, dst, sp, dp):  # type: ignore[no-untyped-def]
        return TcpColumns(z, z.astype(float), src, dst, sp, dp, z, z, z, z, z, z)

    there = partition_of(cols(cli, srv, sport, dport), 2)
    back = partition_of(cols(srv, cli, dport, sport), 2)
    assert (there == back).all()
    assert 16 <= int(there.sum()) <= k - 16, there


def _horizon_soup(seed: int, n: int) -> bytes:
    """A few 4-tuples, packets with random flags at gaps around the close
    (5 s) and idle (300 s) horizons: long chains of packets whose start
    depends on the starts before them."""
    rng = random.Random(seed)
    out: list[tuple[float, bytes]] = []
    t = 1_700_000_000.0
    for _ in range(n):
        t += rng.choice((0.0, 0.5, 3.0, 5.5, 6.0, 18.5, 301.0))
        port = 40000 + rng.randrange(3)
        flags = rng.choice((ACK, ACK, PSH | ACK, SYN, SYN | ACK, FIN | ACK, RST, RST | ACK))
        sp, dp, s, d = (port, 80, A4, B4) if rng.random() < 0.5 else (80, port, B4, A4)
        seq = rng.getrandbits(32)
        out.append((t, ip4(s, d, tcp(sp, dp, seq, rng.getrandbits(32), flags, rng.randrange(3)))))
    return pcap(out, 101)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    soup=st.booleans(),
    size=st.sampled_from([1 << 9, 1 << 11, 3000, 1 << 13, 1 << 16]),
    rounds=st.sampled_from([0, 1, tracker.HORIZON_ROUNDS]),
)
# An ACK ahead of the peer's data whose SYN-ACK comes later: ack_of_unsent_data
# must not count that SYN-ACK because it is in the same batch.
@example(seed=58112155, soup=True, size=1 << 11, rounds=tracker.HORIZON_ROUNDS)
def test_sequential_result_is_the_same_for_any_batch_size(
    seed: int, soup: bool, size: int, rounds: int
) -> None:
    """The records of a random capture (the zoo of shapes with reused
    4-tuples, or packets at random gaps around the horizons) are the same
    whatever the reader's batch size, from a packet or two per batch to the
    whole file in one, and in chunks; and whether the horizon starts are
    settled by the vectorised rounds or one packet at a time (``rounds``
    0: only the latter)."""
    import tempfile

    data = _horizon_soup(seed, 400) if soup else zoo(seed % 1000, 120)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.pcap"
        path.write_bytes(data)
        want = list(analyze_file(path).records())
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tracker, "HORIZON_ROUNDS", rounds)
            assert list(analyze_file(path, chunk_size=size).records()) == want
            assert list(analyze_file(path, chunk_size=120).records()) == want
        cuts = [len(data) // 3, 2 * len(data) // 3]
        got = analyze_set([path], runner=serial_runner(2), cuts={str(path): cuts}, as_set=False)
        assert list(got.records()) == want


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    cut=st.floats(0.0, 1.0),
    end=st.one_of(st.none(), st.floats(0.0, 1.0)),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=40),
)
def test_chunk_read_into_the_readers_buffer(
    tmp_path: Path, cut: float, end: float | None, sizes: list[int]
) -> None:
    """A chunk's bytes (the file's header, then the chunk) read in place
    into the caller's buffer (``readinto``: the reader's one copy from the
    file, as a sequential read), in reads of any size: exactly the header
    and the file's bytes from the chunk's start to its stop, nothing
    after; and the reader takes them that way (its ``read`` is not used)."""
    from finwait.analyze import chunks as ch

    path = tmp_path / "z.pcap"
    data = zoo(5, 30)
    path.write_bytes(data)
    start = 24 + int(cut * (len(data) - 24))
    stop = -1 if end is None else max(start, 24 + int(end * (len(data) - 24)))
    chunk = Chunk(str(path), start, stop, data[:24], 0, False)
    want = data[:24] + (data[start:] if stop < 0 else data[start:stop])
    sl = ch._Slice(chunk)
    got = bytearray()
    try:
        for k in [*sizes, len(want) + 1]:
            buf = bytearray(k)
            n = sl.readinto(memoryview(buf))
            assert n == min(k, len(want) - len(got))  # (full reads until the end)
            got += buf[:n]
        assert sl.readinto(memoryview(bytearray(8))) == 0
    finally:
        sl.close()
    assert bytes(got) == want


def test_chunk_reader_reads_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunked reader fills its buffer through ``readinto``: ``read``
    (a new bytes object a batch, copied again into the buffer) is never
    called, and the records are the sequential read's."""
    from finwait.analyze import chunks as ch
    from finwait.capture import reader

    def refuse(self: object, size: int = -1) -> bytes:
        raise AssertionError("a chunk read through read(), not readinto()")

    monkeypatch.setattr(ch._Slice, "read", refuse, raising=False)
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(7, 40))
    size = path.stat().st_size
    chunks = plan(path, cuts=[size // 3, 2 * size // 3])
    assert len(chunks) == 3
    frames = [len(b) for c in chunks for b in ch._raw_batches(c, 4096)]
    assert sum(frames) == sum(len(b) for b in reader.iter_batches(path))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    seed=st.integers(0, 10_000),
    at=st.floats(0.05, 0.95),
    fracs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    big=st.booleans(),
)
@example(seed=1, at=0.5, fracs=[0.9], big=False)  # the second section inside the first chunk
def test_pcapng_sections_chunked_equal_sequential(
    tmp_path: Path, seed: int, at: float, fracs: list[float], big: bool
) -> None:
    """A pcapng file of two sections (the second with its own byte order
    and nanosecond timestamps), cut anywhere: a chunk holding the second
    section header, the first chunk included, is not read with the first
    section's interfaces; the result is the sequential one."""
    from capture.builders import pcapng

    from .test_jsonl import _conversation

    rng = random.Random(seed)
    pk: list[tuple[float, bytes]] = []
    for i in range(30):
        pk += _conversation(rng, 1_700_000_000 + i * 0.5, 40000 + i)
    pk.sort(key=lambda p: p[0])
    k = max(1, int(at * len(pk)))
    data = (pcapng([(t, d, 0) for t, d in pk[:k]], [(101, None)])
            + pcapng([(t, d, 0) for t, d in pk[k:]], [(101, 9)], big=big))  # fmt: skip
    path = tmp_path / f"s{seed}.pcapng"
    path.write_bytes(data)
    _same(path, [int(f * len(data)) for f in fracs], serial_runner(2))


def test_pcapng_chunk_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pcapng chunk's bytes are read from the file once (the check
    for a second section is the reader's, as it walks the blocks: no
    separate read of the whole chunk first), and the chunks give the
    sequential result."""
    from finwait.analyze import chunks as ch
    from finwait.capture import reader

    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(9, 60))
    ng = path.with_suffix(".pcapng")
    to_pcapng(path, ng)
    size = ng.stat().st_size
    chunks = plan(ng, cuts=[size // 3, 2 * size // 3])
    assert len(chunks) == 3
    read = [0]
    real = reader.open_capture

    class Counting:
        def __init__(self, fh: object) -> None:
            self.fh = fh

        def __getattr__(self, name: str) -> object:
            return getattr(self.fh, name)

        def read(self, size: int = -1) -> bytes:
            data: bytes = self.fh.read(size)  # type: ignore[attr-defined]
            read[0] += len(data)
            return data

        def readinto(self, buf: object) -> int:
            got: int = self.fh.readinto(buf) or 0  # type: ignore[attr-defined]
            read[0] += got
            return got

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()  # type: ignore[attr-defined]

    monkeypatch.setattr(reader, "open_capture", lambda p: Counting(real(p)))
    parts = [ch.decode_chunk(c) for c in chunks]
    assert all(p.error is None for p in parts)
    assert read[0] == size - len(chunks[0].header)
    monkeypatch.undo()
    _same(ng, [size // 3, 2 * size // 3])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 7),
    words=st.lists(
        st.tuples(*[st.integers(0, 2**32 - 1)] * 8, st.integers(0, 65535), st.integers(0, 65535)),
        min_size=1,
        max_size=50,
    ),
)
def test_partition_in_range_and_the_same_both_ways(n: int, words: list[tuple[int, ...]]) -> None:
    """Any addresses and ports: each segment's partition is one of 0 .. n
    - 1, the same for the reverse direction; and with many 4-tuples every
    partition gets some."""
    import numpy as np

    from finwait.analyze.partition import partition_of
    from finwait.capture.decode import TcpColumns

    a = np.array(words, dtype=np.int64)
    src, dst, sport, dport = a[:, 0:4], a[:, 4:8], a[:, 8], a[:, 9]

    def cols(s, d, sp, dp):  # type: ignore[no-untyped-def]
        z = np.zeros(len(s), dtype=np.int64)
        return TcpColumns(z, z.astype(float), s, d, sp, dp, z, z, z, z, z, z)

    there = partition_of(cols(src, dst, sport, dport), n)
    back = partition_of(cols(dst, src, dport, sport), n)
    assert there.dtype == np.int64 and ((there >= 0) & (there < n)).all()
    assert (there == back).all()
    many = np.arange(4096, dtype=np.int64)
    wide = np.tile(np.array([0, 0, 0xFFFF, 0xC6120001]), (many.size, 1))
    spread = partition_of(cols(wide, wide + 1, 40000 + many, np.full(many.size, 80)), n)
    assert np.bincount(spread, minlength=n).min() > 4096 // n // 2
