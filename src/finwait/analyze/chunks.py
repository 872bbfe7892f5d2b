"""One capture on many cores: the file cut into chunks at record (pcap) or
block (pcapng) boundaries, each chunk read and decoded in parallel, the
decoded segments folded in capture order into one tracker — exactly what a
sequential run gives.

What runs where.  Reading and decoding (the larger part of the work: record
location, timestamps, link/IP/TCP headers, decapsulation) are per chunk and
independent.  The tracker's state is not: a segment's meaning depends on
everything its connection sent before (relative sequence numbers,
retransmissions, the FIN that an ACK acknowledges, port reuse, Zeek's
timers).  The partial result of a chunk is therefore its decoded segments
(columns, with frame numbers local to the chunk), its skip counters and its
tunnel stacks; the merge of two adjacent partial results is their
concatenation with the second's frames shifted by the first's record count,
its counters added and its tunnel ids renumbered (associative: any
bracketing gives the same result), and the tracker folds the merged segments
in order.  The fold runs in the calling process while the workers decode
the next chunks.

Boundaries.  A pcap chunk starts where a chain of :data:`CHAIN` consistent
record headers begins (captured length within the snap length and not above
the original length, sub-second field in range, timestamps within a day of
each other); a pcapng chunk where a chain of blocks with matching leading and
trailing lengths begins at a packet block.  The chain is a heuristic, so
every chunk is verified: its records must chain exactly from its start to
the next chunk's start (the reader raises otherwise), and chunk 0 starts at
the file's first record, so by induction every boundary is a true one.  A
chunk that fails — a false boundary, a damaged file, a pcapng section or
interface block after the first packet — makes the file fall back to one
sequential read: the result is the sequential one in every case.
"""

from __future__ import annotations

import io
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..capture import reader
from ..capture.decode import TcpColumns, Tunnels, decode
from ..capture.reader import CaptureError

CHAIN = 16  # consistent headers in a row that make a boundary
WINDOW = 2 << 20  # bytes searched for a boundary after a cut point (> one record)
STEP = 64 << 10  # searched this many candidates at a time
QUICK = 64 << 10  # bytes read first for a boundary ...
QUICK_CANDIDATES = 4 << 10  # ... and the positions tried in them
DAY = 86_400
CHUNK_BYTES = 32 << 20
PCAPNG_PACKET_BLOCKS = (reader.BT_EPB, reader.BT_SPB, reader.BT_OPB)
_SHB = struct.pack("<I", reader.PCAPNG_SHB)  # the same bytes in either order


@dataclass(frozen=True)
class Chunk:
    """What travels to a worker: a byte range of a file and the file's
    header (pcap: 24 bytes; pcapng: the blocks before the first packet)."""

    path: str
    start: int
    stop: int  # -1: to the end of the file
    header: bytes
    index: int = 0
    verify_checksums: bool = False


@dataclass
class Part:
    """A chunk's partial result."""

    index: int
    cols: TcpColumns | None
    records: int
    drops: Counter[str] = field(default_factory=Counter)
    stacks: list[tuple[tuple[str, str, str], ...]] = field(default_factory=lambda: [()])
    error: str | None = None  # the chunk did not read cleanly: fall back


def size_of(path: str | Path) -> int:
    """The file's size in bytes (0 when it cannot be found: its reader
    reports why); URLs through fsspec."""
    try:
        if reader.is_url(path):
            from ..capture.remote import size

            return size(str(path))
        return os.path.getsize(path)
    except OSError:
        return 0


def _header(path: str) -> tuple[str, bytes, int] | None:
    """(kind, header bytes, snap limit) or None when the file cannot be
    chunked (not a capture, too short: the sequential reader says why)."""
    with reader.open_capture(path) as fh:
        head = fh.read(1 << 16)
    if len(head) < 24:
        return None
    le, be = struct.unpack("<I", head[:4])[0], struct.unpack(">I", head[:4])[0]
    if reader.PCAP_MAGIC_US in (le, be) or reader.PCAP_MAGIC_NS in (le, be):
        big = be in (reader.PCAP_MAGIC_US, reader.PCAP_MAGIC_NS)
        snap = struct.unpack((">" if big else "<") + "I", head[16:20])[0]
        return "pcap", head[:24], max(reader.MAX_SNAPLEN, min(snap, 1 << 24))
    if le == reader.PCAPNG_SHB and len(head) >= 12:
        big = struct.unpack(">I", head[8:12])[0] == reader.PCAPNG_BOM
        e = ">" if big else "<"
        off = 0
        while off + 12 <= len(head):
            btype, blen = struct.unpack_from(e + "II", head, off)
            if btype in PCAPNG_PACKET_BLOCKS:
                return "pcapng", head[:off], reader.MAX_SNAPLEN * 4 + 64
            if blen < 12 or blen % 4 or (btype == reader.PCAPNG_SHB and off):
                return None
            off += blen
        return None
    return None


def _big(kind: str, header: bytes) -> bool:
    if kind == "pcap":
        return struct.unpack(">I", header[:4])[0] in (reader.PCAP_MAGIC_US, reader.PCAP_MAGIC_NS)
    return bool(struct.unpack(">I", header[8:12])[0] == reader.PCAPNG_BOM)


def find_boundary(
    path: str, offset: int, kind: str, header: bytes, limit: int, first_sec: int = 0
) -> int | None:
    """The first offset at or after ``offset`` where a chain of :data:`CHAIN`
    consistent record headers (pcap) or blocks (pcapng) starts; None when
    there is none in the next :data:`WINDOW` bytes.

    It first reads :data:`QUICK` bytes and tries the first
    :data:`QUICK_CANDIDATES` positions: a position is taken only when every
    earlier one failed a check inside those bytes (none ran off their end),
    so the answer is the full search's, at a fraction of the reading (the
    full window is about 6 MB for a 256 kB snap length)."""
    full = WINDOW + CHAIN * (limit + 32)
    if full > QUICK:
        done, got = _scan(path, offset, QUICK, QUICK_CANDIDATES, kind, header, limit, first_sec)
        if done:
            return got
    return _scan(path, offset, full, WINDOW, kind, header, limit, first_sec)[1]


def _scan(
    path: str, offset: int, want: int, positions: int, kind: str, header: bytes, limit: int,
    first_sec: int,
) -> tuple[bool, int | None]:  # fmt: skip
    """(decided, the boundary or None) from ``want`` bytes at ``offset``,
    trying the first ``positions``; a quick scan (fewer bytes than the full
    window) is undecided when a position before its answer ran past its
    bytes."""
    with reader.open_capture(path) as fh:
        fh.seek(offset)
        buf = fh.read(want)
    eof = len(buf) < want
    quick = want < WINDOW + CHAIN * (limit + 32)
    arr = np.frombuffer(buf, dtype=np.uint8)
    big = _big(kind, header)
    dt = np.dtype(">u4" if big else "<u4")
    n = len(buf)
    if n < 32:
        return not quick or eof, None
    quads = np.lib.stride_tricks.sliding_window_view(arr, 4)

    def words(pos: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
        ok = pos + 4 * k + 4 <= n
        out = np.zeros(pos.size, dtype=np.int64)
        out[ok] = quads[pos[ok] + 4 * k].copy().view(dt).ravel()
        return out

    for lo in range(0, min(positions, n - 16), STEP):
        cand = np.arange(lo, min(lo + STEP, positions, n - 16), dtype=np.int64)
        found, open_ = _search(cand, words, n, kind, header, limit, eof, offset, first_sec)
        if quick and open_ is not None and (found is None or open_ < found):
            return False, None  # an earlier position's chain runs past the bytes read
        if found is not None:
            return True, offset + found
    return not quick or (eof and positions >= n - 16), None


def _search(
    cand: npt.NDArray[np.int64],
    words: Callable[[npt.NDArray[np.int64], int], npt.NDArray[np.int64]],
    n: int,
    kind: str,
    header: bytes,
    limit: int,
    eof: bool,
    align: int = 0,
    first_sec: int = 0,
) -> tuple[int | None, int | None]:
    """The first of ``cand`` that starts a consistent chain (of CHAIN
    records, or fewer that end exactly at the end of the file), or None;
    and the first whose chain ran past the ``n`` bytes read before the end
    of the file (undecided: more bytes might make it a chain), or None."""
    ended: list[npt.NDArray[np.int64]] = []
    past: list[npt.NDArray[np.int64]] = []

    def beyond(cand: npt.NDArray[np.int64], off: npt.NDArray[np.bool_]) -> None:
        if not eof:
            past.append(cand[off])

    def at_end(cand: npt.NDArray[np.int64], nxt: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        fin = (nxt == n) if eof else np.zeros(nxt.size, dtype=bool)
        ended.append(cand[fin])
        return ~fin

    # Each round keeps the candidates whose chain is still consistent and
    # moves them one record on: most positions fail at the first header.
    nxt = cand.copy()
    if kind == "pcap":
        ns = header[:4] in (b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1")
        frac_max = 1_000_000_000 if ns else 1_000_000
        sec0: npt.NDArray[np.int64] | None = None  # the first record's seconds
        for _ in range(CHAIN):
            live = at_end(cand, nxt)
            beyond(cand, live & (nxt + 16 > n))
            live &= nxt + 16 <= n
            # The sub-second field first: it rules out most positions.
            live[live] = words(nxt[live], 1) < frac_max
            cand, nxt = cand[live], nxt[live]
            sec, cap, orig = words(nxt, 0), words(nxt, 2), words(nxt, 3)
            sec0 = sec if sec0 is None else sec0[live]
            ok = (cap <= limit) & (cap <= orig) & (np.abs(sec - sec0) <= DAY)
            # Not before the file's first record (less a day): a position 4
            # bytes into a true header reads the sub-second field as seconds
            # and, when captured and original lengths agree, chains on.
            ok &= sec >= first_sec - DAY
            beyond(cand, ok & (nxt + 16 + cap > n))
            ok &= nxt + 16 + cap <= n
            cand, nxt, sec0 = cand[ok], (nxt + 16 + cap)[ok], sec0[ok]
            if not cand.size:
                break
    else:
        cand = cand[(cand + align) % 4 == 0]  # blocks are 32-bit aligned in the file
        cand = cand[np.isin(words(cand, 0), PCAPNG_PACKET_BLOCKS)]
        nxt = cand.copy()
        for _ in range(CHAIN):
            live = at_end(cand, nxt)
            cand, nxt = cand[live], nxt[live]
            beyond(cand, nxt + 8 > n)
            live = nxt + 8 <= n
            cand, nxt = cand[live], nxt[live]
            blen = words(nxt, 1)
            ok = (blen >= 12) & (blen % 4 == 0) & (blen <= limit)
            beyond(cand, ok & (nxt + blen > n))
            ok &= nxt + blen <= n
            cand, nxt, blen = cand[ok], nxt[ok], blen[ok]
            ok = words(nxt + blen - 8, 1) == blen
            cand, nxt = cand[ok], (nxt + blen)[ok]
            if not cand.size:
                break
    found = np.concatenate([*ended, cand])
    undecided = np.concatenate([np.zeros(0, dtype=np.int64), *past])
    return (int(found.min()) if found.size else None,
            int(undecided.min()) if undecided.size else None)  # fmt: skip


def plan(
    path: str | Path,
    chunk_bytes: int = CHUNK_BYTES,
    cuts: list[int] | None = None,
    verify_checksums: bool = False,
) -> list[Chunk]:
    """The chunks of ``path``: cut every ``chunk_bytes`` (or at ``cuts``),
    each cut moved forward to the next boundary.  One chunk (the whole
    file) when it cannot be chunked: not a capture, read once (a pipe), or
    compressed (its offsets are not the file's)."""
    name = str(path)
    if reader.read_once(name) or reader.compression_of(name) is not None:
        return [Chunk(name, 0, -1, b"", 0, verify_checksums)]
    size = size_of(name)
    try:
        info = _header(name)
    except OSError:
        info = None
    if info is None:
        return [Chunk(name, 0, -1, b"", 0, verify_checksums)]
    kind, header, limit = info
    first = len(header)
    first_sec = 0
    if kind == "pcap":
        with reader.open_capture(name) as fh:
            fh.seek(first)
            raw = fh.read(4)
        if len(raw) == 4:
            first_sec = struct.unpack((">" if _big(kind, header) else "<") + "I", raw)[0]
    if cuts is None:
        cuts = list(range(first + chunk_bytes, size, chunk_bytes))
    starts = [first]
    for c in sorted(cuts):
        if c <= starts[-1] or c >= size:
            continue
        b = find_boundary(name, c, kind, header, limit, first_sec)
        if b is not None and b > starts[-1] and b < size:
            starts.append(b)
    stops = [*starts[1:], -1]
    return [
        Chunk(name, a, z, header, i, verify_checksums)
        for i, (a, z) in enumerate(zip(starts, stops, strict=True))
    ]


class _Slice(io.RawIOBase):
    """The file's header followed by the chunk's bytes, as one stream.
    :meth:`readinto` reads them straight into the caller's buffer (the
    reader's: one copy from the page cache, as a sequential read makes;
    through :meth:`read`, each batch's bytes were copied twice)."""

    def __init__(self, chunk: Chunk) -> None:
        self.head = chunk.header
        self.fh = reader.open_capture(chunk.path)
        self.fh.seek(chunk.start)
        self.left = -1 if chunk.stop < 0 else chunk.stop - chunk.start

    def readable(self) -> bool:
        return True

    def readinto(self, into: Any) -> int:
        """Fill ``into`` (less only at the chunk's end): the byte count."""
        view = memoryview(into).cast("B")
        got = 0
        if self.head:
            got = min(len(self.head), len(view))
            view[:got] = self.head[:got]
            self.head = self.head[got:]
        want = len(view) - got if self.left < 0 else min(len(view) - got, self.left)
        fill = getattr(self.fh, "readinto", None)
        while want > 0:
            if fill is not None:
                n = fill(view[got : got + want]) or 0
            else:  # (a file object without readinto)
                data = self.fh.read(want)
                n = len(data)
                view[got : got + n] = data
            if not n:
                break
            got += n
            want -= n
            if self.left > 0:
                self.left -= n
        return got

    def close(self) -> None:
        self.fh.close()
        super().close()


def _raw_batches(chunk: Chunk, chunk_size: int) -> Iterator[reader.RawBatch]:
    if not chunk.header:  # the whole file, as it is (not cut)
        yield from reader.iter_batches(chunk.path, chunk_size)
        return
    sl = _Slice(chunk)
    try:
        ch = reader._Chunker(sl, size=chunk_size)  # type: ignore[arg-type]
        if chunk.header[:4] == _SHB:
            yield from reader._pcapng(chunk.path, ch, one_section=True)
        else:
            yield from reader._pcap(chunk.path, ch)
    finally:
        sl.close()


def decode_chunk(chunk: Chunk, chunk_size: int = 8 << 20) -> Part:
    """Read and decode one chunk (in a worker): its partial result."""
    parts: list[TcpColumns] = []
    part = decode_batches(chunk, parts.append, chunk_size)
    part.cols = _concat(parts) if parts else None
    return part


def decode_batches(
    chunk: Chunk, each: Callable[[TcpColumns], None], chunk_size: int = 8 << 20
) -> Part:
    """Read and decode one chunk a batch at a time, handing each batch's
    segments (frames local to the chunk) to ``each``; the chunk's partial
    result without its columns."""
    drops: Counter[str] = Counter()
    tunnels = Tunnels()
    records = 0
    error = None
    try:  # (a second pcapng section in the chunk: an error, the reader's)
        for batch in _raw_batches(chunk, chunk_size):
            records += len(batch)
            got = decode(batch, drops, tunnels, chunk.verify_checksums)
            if len(got):
                each(got)
    except CaptureError as exc:
        error = str(exc)
    return Part(chunk.index, None, records, drops, tunnels.stacks, error)


def _concat(parts: list[TcpColumns]) -> TcpColumns:
    if len(parts) == 1:
        return parts[0]
    names = ("frame", "ts", "src", "dst", "sport", "dport", "seq", "ack", "flags", "window",
             "plen", "tunnel")  # fmt: skip
    return TcpColumns(*(np.concatenate([getattr(p, k) for p in parts]) for k in names))
