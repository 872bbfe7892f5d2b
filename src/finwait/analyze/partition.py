"""Parallel tracking, exact: connections partitioned by their 4-tuple.

A connection's tracker state (relative sequence numbers, the highest byte
sent, the FIN an ACK acknowledges, port reuse, Zeek's timers) depends on
its own packets only, in capture order, never on another 4-tuple's.  So the
work splits two ways at once:

- **by chunk** (analyze/chunks.py): each chunk of the file is read and
  decoded by one worker, which splits its TCP segments into ``n`` pieces by
  a hash of the unordered 4-tuple (:func:`partition_of`: both directions,
  every connection ever seen on the 4-tuple, land in the same piece);
- **by partition**: worker ``p`` folds piece ``p`` of every chunk, in chunk
  order, into its own :class:`~finwait.analyze.tracker.Tracker`
  (:class:`Folder`): it tracks exactly the connections of its 4-tuples over
  exactly their packets, in capture order, with the capture's frame numbers
  and tunnel ids.

The partitions' results (:class:`Partial`: the tracker's columns, and per
file the connections seen in it) are then merged by :func:`merge`: the
connection tables concatenated and renumbered by first packet (what the
sequential tracker's ids are), the per-connection events (history letters,
anomalies, RSTs) given the new ids.  The merge is associative (a sorted
union of disjoint tables), so a cluster merges as a tree.

Pieces travel as compact columns (32-bit addresses words, sequence numbers
and frames, 16-bit ports, flags and windows: about 70 bytes a segment
instead of 144); packets never do.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..capture.decode import TcpColumns, Tunnels
from .alloc import steady
from .chunks import Chunk, Part, decode_batches
from .columns import ConnColumns, DirColumns
from .tracker import Events, Tracker
from .weave import Output, Spec, Stream, Tail, Weaver, Woven

I64 = npt.NDArray[np.int64]
Stacks = list[tuple[tuple[str, str, str], ...]]

# Compact dtypes for what travels; the tracker gets int64 columns back.
_DTYPES = {
    "ts": np.float64, "src": np.uint32, "dst": np.uint32, "sport": np.uint16,
    "dport": np.uint16, "seq": np.uint32, "ack": np.uint32, "flags": np.uint16,
    "window": np.uint16, "plen": np.uint32, "tunnel": np.int32,
}  # fmt: skip


_NAMES = ("frame", "ts", "src", "dst", "sport", "dport", "seq", "ack", "flags", "window",
          "plen", "tunnel")  # fmt: skip
FOLD_BATCH = 1 << 15  # segments a tracker takes at a time
# Bytes of a chunk decoded at a time: the sequential streaming run's batch
# (run.STREAM_CHUNK); in 8 MB batches the decoder's temporaries fall out of
# the caches, and decoding took 15 % more CPU.
DECODE_BATCH = 4 << 20
AHEAD = 2  # a worker decodes up to AHEAD * n chunks past the slowest fold


def partition_of(cols: TcpColumns, n: int) -> I64:
    """Each segment's partition, 0 .. n - 1: a multiplicative hash of the
    sum of both endpoints' address words (all four: IPv6 peers that differ
    only in their high bits spread too) and ports, the same for both
    directions."""
    if n == 1:
        return np.zeros(len(cols), dtype=np.int64)
    w = cols.src + cols.dst  # (column by column: 5x faster than .sum(axis=1))
    a = w[:, 0] + w[:, 1]
    for more in (w[:, 2], w[:, 3], cols.sport, cols.dport):
        a += more  # (in place: no temporary a term)
    h = a.view(np.uint64)
    with np.errstate(over="ignore"):
        h *= np.uint64(0x9E3779B97F4A7C15)
    # The hash's top 32 bits scaled to 0 .. n - 1: a multiply and a shift
    # (a 64-bit division by n cost more than the rest of the hash).
    h >>= np.uint64(32)
    h *= np.uint64(n)
    h >>= np.uint64(32)
    out: I64 = h.view(np.int64)
    return out


@dataclass
class Piece:
    """Partition ``p``'s segments of chunk ``index`` (frames local to the
    chunk), as columns (``cols``) or, to travel, as compact columns
    (``packed``); with what every partition needs to know of the chunk: its
    record count and tunnel stacks (and, in piece 0 only, its skip
    counters).  ``error``: the chunk did not read cleanly."""

    index: int
    records: int
    stacks: Stacks
    cols: list[TcpColumns] = field(default_factory=list)
    packed: list[dict[str, npt.NDArray[Any]]] = field(default_factory=list)
    drops: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def pack(self) -> Piece:
        """The same piece with compact columns (what travels)."""
        frame_dt = np.uint32 if self.records < (1 << 32) else np.int64
        packed = []
        for c in self.cols:
            one = {"frame": c.frame.astype(frame_dt)}
            for name, dt in _DTYPES.items():
                one[name] = getattr(c, name).astype(dt)
            packed.append(one)
        return dataclasses.replace(self, cols=[], packed=self.packed + packed)


def split(part: Part, batches: list[TcpColumns], n: int, pack: bool = False,
          keep: int | None = None) -> list[Piece]:  # fmt: skip
    """A chunk's decoded segments (``batches``) as ``n`` pieces, each one
    set of columns for the whole chunk (the fold then takes them in
    :data:`FOLD_BATCH` slices, not in the small slices each batch would
    give); with ``pack``, compact ones (what travels), except piece
    ``keep`` (the one the worker folds itself, in the tracker's dtypes).
    Each segment is gathered once, straight into its piece's columns."""
    pieces = [Piece(part.index, part.records, part.stacks, error=part.error) for _ in range(n)]
    pieces[0].drops = part.drops
    if part.error is not None or not batches:
        return pieces
    if n == 1:
        pieces[0].cols = batches
        if pack and keep != 0:
            pieces[0] = pieces[0].pack()
        return pieces
    where = []
    for c in batches:
        key = partition_of(c, n)
        where.append([np.flatnonzero(key == p) for p in range(n)])
    frame_dt = np.uint32 if part.records < (1 << 32) else np.int64
    first = batches[0]
    for p in range(n):
        total = sum(w[p].size for w in where)
        if not total:
            continue
        compact = pack and p != keep
        out = {}
        for k in _NAMES:
            col = getattr(first, k)
            dt = (frame_dt if k == "frame" else _DTYPES[k]) if compact else col.dtype
            out[k] = np.empty((total, *col.shape[1:]), dtype=dt)
        lo = 0
        for c, w in zip(batches, where, strict=True):
            idx = w[p]
            hi = lo + idx.size
            for k in _NAMES:
                # np.take: a 2-D fancy index (the addresses) is 4x slower
                if compact:
                    out[k][lo:hi] = np.take(getattr(c, k), idx, axis=0)
                else:  # (mode="clip": straight into the slice, not buffered)
                    np.take(getattr(c, k), idx, axis=0, out=out[k][lo:hi], mode="clip")
            lo = hi
        if compact:
            pieces[p].packed = [out]
        else:
            pieces[p].cols = [TcpColumns(**out)]
    return pieces


def _slice(part: TcpColumns | dict[str, npt.NDArray[Any]], lo: int, hi: int, base: int,
           remap: I64) -> TcpColumns:  # fmt: skip
    """Segments ``lo .. hi`` of a piece's columns (the tracker's dtypes or
    compact ones) as the tracker takes them: frames offset by ``base``,
    tunnel ids through ``remap``, compact columns widened here, a slice at
    a time (while it is in the caches; the piece stays compact until then)."""
    cols: dict[str, npt.NDArray[Any]] = {}
    for k in _NAMES:
        a = getattr(part, k)[lo:hi] if isinstance(part, TcpColumns) else part[k][lo:hi]
        if k == "frame":
            a = np.add(a, base, dtype=np.int64)
        elif k == "tunnel":
            a = remap[a]
        elif k != "ts" and a.dtype != np.int64:
            a = a.astype(np.int64)
        cols[k] = a
    return TcpColumns(**cols)


def decode_split(chunk: Chunk, n: int, pack: bool = False,
                 keep: int | None = None) -> list[Piece]:  # fmt: skip
    """Read, decode and split one chunk (in a worker): :func:`split`."""
    batches: list[TcpColumns] = []
    part = decode_batches(chunk, batches.append, DECODE_BATCH)
    return split(part, batches, n, pack, keep)


@dataclass
class Partial:
    """A partition's result, or the merge of several: the tracker (trimmed
    to its connections), per file the connections with a packet in it,
    and what is per capture (records, skip counters, tunnel stacks)."""

    tracker: Tracker
    seen: list[I64]
    records: int
    drops: Counter[str]
    stacks: Stacks
    error: str | None = None


class Folder:
    """Partition ``p``'s tracker, fed piece ``p`` of every chunk in chunk
    order.  ``file_of[i]``: the index of chunk ``i``'s file in the set.
    ``seen``: per file ended so far, its connections (rows of the tracker;
    with ``keys``, their first frames instead: rows move when connections
    are retired, analyze/weave.py's :class:`~finwait.analyze.weave.Stream`)."""

    def __init__(self, file_of: list[int], zeek_timeouts: bool = False,
                 keys: bool = False) -> None:  # fmt: skip
        self.file_of = file_of
        self.keys = keys
        self.tracker = Tracker(zeek_timeouts)
        self.tunnels = Tunnels()
        self.records = 0
        self.drops: Counter[str] = Counter()
        self.seen: list[I64] = []
        self.error: str | None = None
        self.next = 0
        self.file_first = 0

    def fold(self, piece: Piece) -> Folder:
        i = piece.index
        if i != self.next:
            raise ValueError(f"piece of chunk {i} folded before chunk {self.next}")
        self.next += 1
        if self.error is not None:
            return self
        if piece.error is not None:
            self.error = piece.error
            return self
        if i == 0 or self.file_of[i - 1] != self.file_of[i]:
            self.file_first = self.records
        remap = np.array([self.tunnels.id(st) for st in piece.stacks], dtype=np.int64)
        parts: list[TcpColumns | dict[str, npt.NDArray[Any]]] = [*piece.cols, *piece.packed]
        for part in parts:
            size = len(part) if isinstance(part, TcpColumns) else part["frame"].size
            # In slices: the tracker's working set stays in the caches.
            for lo in range(0, size, FOLD_BATCH):
                rows = _slice(part, lo, lo + FOLD_BATCH, self.records, remap)
                if not self.keys:
                    self.tracker.reserve(len(rows))  # (it keeps every connection)
                self.tracker.add(rows)
        self.drops.update(piece.drops)
        self.records += piece.records
        if i + 1 == len(self.file_of) or self.file_of[i + 1] != self.file_of[i]:
            # A connection has a packet in this file when its last packet so
            # far is one of the file's (as analyze_set's sequential read).
            tr = self.tracker
            last = tr.c.last_frame[: tr.nconns]
            hit = np.flatnonzero(last > self.file_first)
            if self.keys:
                hit = tr.c.first_frame[hit]
            self.seen.append(hit if self.records > self.file_first else hit[:0])
        return self

    def result(self) -> Partial:
        return Partial(trim(self.tracker), self.seen, self.records, self.drops,
                       self.tunnels.stacks, self.error)  # fmt: skip


# -- the merge ---------------------------------------------------------------

# Tracker attributes that only matter while packets are still added.
_TRANSIENT = {"_timers", "flow_ids", "_exact", "_known_h", "_known_id", "zeek_timeouts"}


def trim(tr: Tracker) -> Tracker:
    """The tracker's tables cut to its connections and flows (what is
    shipped back; the grown capacity is not): views of the tracker's
    arrays, not copies (pickled, a view is its own rows only)."""
    out = Tracker(tr.zeek_timeouts)
    n, f = tr.nconns, tr.nflows
    for name, value in vars(tr).items():
        if name in _TRANSIENT:
            continue
        setattr(out, name, _cut(name, value, n, f))
    return out


def _cut(name: str, value: Any, n: int, f: int) -> Any:
    if isinstance(value, ConnColumns):
        return value.head(n)
    if isinstance(value, DirColumns):
        out = DirColumns()
        for fd in fields(value):
            setattr(out, fd.name, getattr(value, fd.name)[: 2 * n])
        return out
    if isinstance(value, Events):
        return Events([value.packed()]) if value.parts else Events()
    if name in _PER_FLOW:
        return value[:f]
    if name in _PER_SLOT:
        return value[: 2 * n]
    return value


_PER_FLOW = {"flow_key", "flow_conn", "flow_fr"}
_PER_SLOT = {"hist_count"}
_SUMMED = {"packets"}


def merge_trackers(a: Tracker, b: Tracker) -> tuple[Tracker, I64, I64]:
    """The union of two trackers over disjoint 4-tuples, connections
    renumbered by first frame; and the new ids of ``a``'s and ``b``'s
    connections.  Every attribute of the tracker is handled by kind (per
    connection, per direction, per flow, events, counters); an unknown one
    is an error, so a tracker change cannot be merged wrongly in silence."""
    na, nb = a.nconns, b.nconns
    n = na + nb
    first = np.r_[a.c.first_frame[:na], b.c.first_frame[:nb]]
    order = np.argsort(first, kind="stable")  # new id -> old (a, then b + na)
    new = np.empty(n, dtype=np.int64)
    new[order] = np.arange(n)
    # Each table is written once, each side's rows straight to their new
    # places (no concatenation first: one fresh array a column, not two).
    at_a, at_b = new[:na], new[na:]
    slot_a = (2 * at_a[:, None] + np.arange(2)).ravel()  # old slot -> new slot
    slot_b = (2 * at_b[:, None] + np.arange(2)).ravel()

    def place(x: npt.NDArray[Any], y: npt.NDArray[Any], ia: I64, ib: I64) -> npt.NDArray[Any]:
        z = np.empty((ia.size + ib.size, *x.shape[1:]), dtype=x.dtype)
        z[ia] = x
        z[ib] = y
        return z

    fa = a.nflows
    out = Tracker(a.zeek_timeouts)
    for name, va in vars(a).items():
        vb = getattr(b, name)
        if name in _TRANSIENT:
            continue
        if isinstance(va, ConnColumns):
            m = ConnColumns()
            for fd in fields(va):
                x, y = getattr(va, fd.name)[:na], getattr(vb, fd.name)[:nb]
                if fd.name == "flow":
                    y = y + fa
                setattr(m, fd.name, place(x, y, at_a, at_b))
            value: Any = m
        elif isinstance(va, DirColumns):
            d = DirColumns()
            for fd in fields(va):
                x, y = getattr(va, fd.name)[: 2 * na], getattr(vb, fd.name)[: 2 * nb]
                setattr(d, fd.name, place(x, y, slot_a, slot_b))
            value = d
        elif isinstance(va, Events):
            ca, key_a = va.packed()
            cb, key_b = vb.packed()
            conn = np.r_[new[ca], new[cb + na]] if n else np.zeros(0, dtype=np.int64)
            value = Events([(conn, np.r_[key_a, key_b])])
        elif name in _PER_SLOT:
            value = place(va[: 2 * na], vb[: 2 * nb], slot_a, slot_b)
        elif name == "flow_conn":
            x, y = va[:fa], vb[: b.nflows]
            value = np.r_[np.where(x >= 0, new[np.maximum(x, 0)], -1),
                          np.where(y >= 0, new[np.maximum(y, 0) + na], -1)]  # fmt: skip
        elif name in _PER_FLOW:
            value = np.concatenate([va[:fa], vb[: b.nflows]])
        elif name in _SUMMED or name in ("nconns", "nflows", "next_id"):
            value = va + vb
        elif name == "row_id":  # (trackers folded whole: ids are the rows)
            value = np.arange(n, dtype=np.int64)
        elif name == "now":
            value = max(va, vb)
        elif name == "hole_slot":  # open content holes: 2 * conn + direction
            value = np.r_[2 * new[va >> 1] + (va & 1), 2 * new[(vb >> 1) + na] + (vb & 1)]
        elif name == "hole_start":
            value = np.r_[va, vb]
        else:
            raise NotImplementedError(f"merge_trackers: unknown tracker attribute {name!r}")
        setattr(out, name, value)
    return out, new[:na], new[na:]


def merge(a: Partial, b: Partial) -> Partial:
    """Two partitions' results as one (associative)."""
    tr, ma, mb = merge_trackers(a.tracker, b.tracker)
    seen = [np.sort(np.r_[ma[x], mb[y]]) for x, y in zip(a.seen, b.seen, strict=True)]
    differ = a.records != b.records or a.stacks != b.stacks
    if differ and a.error is None and b.error is None:
        raise ValueError("partitions of different captures")
    return Partial(tr, seen, a.records, a.drops + b.drops, a.stacks, a.error or b.error)


def tree(items: list[Any], pair: Any) -> Any:
    """Reduce ``items`` (at least one) pairwise, level by level: ``pair``
    may submit a task and return its future (a Dask tree reduction)."""
    while len(items) > 1:
        nxt = [pair(items[k], items[k + 1]) for k in range(0, len(items) - 1, 2)]
        if len(items) % 2:
            nxt.append(items[-1])
        items = nxt
    return items[0]


# -- running it --------------------------------------------------------------

ChunkDone = Callable[[int], None]  # called with a chunk's index once folded everywhere
# A runner takes the chunks, each chunk's file, Zeek's timers, a callback per
# chunk folded and (optionally) an Output: then the partitions make the
# output themselves and the runner returns what it wove (analyze/weave.py);
# else, or when it cannot weave, the partitions' merged result.
Result = Partial | Woven | None


class Runner(Protocol):
    def __call__(self, chunks: list[Chunk], file_of: list[int], zeek_timeouts: bool,
                 done: ChunkDone | None, output: Output | None = None, /) -> Result: ...  # fmt: skip


def serial_runner(n: int, lag: int = 0) -> Runner:
    """All ``n`` partitions in this process (tests: the same split, folds,
    merge and streamed output as the parallel runners, without processes;
    ``lag``: a chunk's ids reach the partitions only after they have folded
    ``lag`` more chunks, as when a worker is ahead of the others)."""

    def run(chunks: list[Chunk], file_of: list[int], zeek_timeouts: bool,
            done: ChunkDone | None, output: Output | None = None) -> Result:  # fmt: skip
        if output is not None:
            return _serial_stream(n, lag, chunks, file_of, zeek_timeouts, done, output)
        folders = [Folder(file_of, zeek_timeouts) for _ in range(n)]
        for c in chunks:
            # (piece c.index % n kept in the tracker's dtypes, the others
            # compact: as a worker process splits)
            for f, pc in zip(folders, decode_split(c, n, pack=True, keep=c.index % n),
                             strict=True):  # fmt: skip
                f.fold(pc)
            if folders[0].error is not None:
                return None
            if done is not None:
                done(c.index)
        return tree([f.result() for f in folders], merge)  # type: ignore[no-any-return]

    return run


def _serial_stream(n: int, lag: int, chunks: list[Chunk], file_of: list[int],
                   zeek_timeouts: bool, done: ChunkDone | None, output: Output) -> Result:  # fmt: skip
    """:func:`serial_runner` writing ``output`` (analyze/weave.py: the
    partitions stream their connections out as they are retired)."""
    spec = output.spec()
    streams = [Stream(Folder(file_of, zeek_timeouts, keys=True), spec) for _ in range(n)]
    weaver = Weaver(output, n)
    pending: list[list[I64]] = []  # ids ranked, not yet delivered
    try:
        for c in chunks:
            pieces = decode_split(c, n, pack=True, keep=c.index % n)
            for p, (st, pc) in enumerate(zip(streams, pieces, strict=True)):
                new = st.fold(pc)
                if new is None:
                    return None
                pending += [ids for _, ids in weaver.first(p, c.index, new)]
            if done is not None:
                done(c.index)
            while len(pending) > lag:
                for st, ids in zip(streams, pending.pop(0), strict=True):
                    st.ids(ids)
            for st in streams:
                for msg in st.retire():
                    weaver.lines(*msg)
        for got in pending:
            for st, ids in zip(streams, got, strict=True):
                st.ids(ids)
        tails: list[Tail] = []
        for st in streams:
            for last in st.finish():
                if isinstance(last, Tail):
                    tails.append(last)
                else:
                    weaver.lines(*last)
        weaver.close()
    finally:
        weaver.discard()
    return weaver.result(tails)


def process_runner(n: int) -> ProcessRunner:
    """Run partitions on ``n`` worker processes (:class:`ProcessRunner`)."""
    return ProcessRunner(n)


class ProcessRunner:
    """``n`` worker processes.  Each worker takes the next chunk nobody has
    taken yet (a shared counter), reads and decodes it, sends piece ``q`` of
    it to worker ``q`` and keeps its own; worker ``p`` folds piece ``p`` of
    every chunk, in order, into its tracker.  A worker takes chunk ``k``
    only while ``k`` is at most ``n`` chunks past the slowest worker's fold
    (memory: about ``n + 1`` chunks' pieces in flight), and it takes chunks
    whenever it would otherwise wait: so the decoding goes to whichever
    worker has time (a smaller partition, a larger share of the cores),
    and the workers finish together.  Only pieces (compact columns, as raw
    bytes on a pipe per pair of workers: :func:`_sender`) and, at the end,
    the partitions' trackers travel; the merge runs here.  With an output
    (analyze/weave.py), no tracker travels: each worker sends the first
    frames of the connections each chunk began, gets their ids back, and
    sends the lines of its connections as they are retired (memory: its
    open connections, not every connection); this process writes them in
    id order.  ``decoded``: after a run, how many chunks each worker
    decoded."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.decoded = [0] * n

    def __call__(self, chunks: list[Chunk], file_of: list[int], zeek_timeouts: bool,
                 done: ChunkDone | None, output: Output | None = None) -> Result:  # fmt: skip
        n = self.n
        import multiprocessing as mp

        ctx = mp.get_context()
        spec = None if output is None else output.spec()
        # pipes[q][p]: worker q's pieces for worker p (read end, write end)
        pipes = [[ctx.Pipe(duplex=False) if q != p else None for p in range(n)]
                 for q in range(n)]  # fmt: skip
        # outs[p]: worker p's result (its partition's tables, out of band, or
        # its first frames, lines and tail as they come); backs[p]: its ids
        outs = [ctx.Pipe(duplex=False) for _ in range(n)]
        backs = [ctx.Pipe(duplex=False) for _ in range(n)] if spec is not None else []
        for _, end in [*(x for row in pipes for x in row if x is not None), *outs, *backs]:
            _roomy(end.fileno())
        events = ctx.Queue()
        shared = (ctx.Value("q", 0), ctx.Array("q", n))  # next chunk; chunks folded, per worker
        procs = [
            ctx.Process(
                target=_peer,
                args=(
                    p,
                    n,
                    chunks,
                    file_of,
                    zeek_timeouts,
                    pipes,
                    events,
                    shared,
                    outs[p][1],
                    spec,
                    backs[p][0] if backs else None,
                    _not_mine(p, outs, backs),
                ),
                daemon=True,
                name=f"finwait-partition-{p}",
            )
            for p in range(n)
        ]
        for pr in procs:
            pr.start()
        for row in pipes:
            for pair in row:
                if pair is not None:
                    pair[0].close()
                    pair[1].close()
        for _, write in outs:
            write.close()
        for read, _ in backs:
            read.close()
        decoded = self.decoded = [0] * n
        finished = False
        try:
            if spec is not None:
                assert output is not None
                got = self._stream(n, outs, backs, output, done)
                finished = got is not None
                return got
            results: dict[int, Any] = {}
            while len(results) < n:
                kind, p, payload = events.get()
                if kind == "chunk" and done is not None:
                    done(payload)
                elif kind == "done":
                    try:  # its Partial
                        results[p] = _receive_object(outs[p][0].fileno())
                    except EOFError:  # the worker died while sending it
                        return None
                    decoded[p] = payload
                elif kind in ("error", "crash"):
                    return None
            finished = True
            return tree([results[p] for p in range(n)], merge)  # type: ignore[no-any-return]
        finally:
            if not finished:
                for pr in procs:
                    pr.kill()
            for pr in procs:
                pr.join()
            for read, _ in outs:
                read.close()
            for _, write in backs:
                write.close()

    def _stream(self, n: int, outs: list[Any], backs: list[Any], output: Output,
                done: ChunkDone | None) -> Woven | None:  # fmt: skip
        """The main process's side of a run that writes ``output``
        (analyze/weave.py): each chunk's new connections ranked and their
        ids sent back (by a thread a worker, so a worker that is busy
        writing lines never holds this process up), the lines written in
        id order.  None when a chunk did not read cleanly or a worker
        ended (``output.written``: the connections written before)."""
        import threading
        from multiprocessing.connection import wait

        weaver = Weaver(output, n)
        boxes: list[queue.Queue[Any]] = [queue.Queue() for _ in range(n)]
        threads = [threading.Thread(target=_replies, args=(backs[p][1].fileno(), boxes[p]),
                                    daemon=True) for p in range(n)]  # fmt: skip
        for t in threads:
            t.start()
        live = {outs[p][0]: p for p in range(n)}
        tails: dict[int, Tail] = {}
        ok = False
        try:
            while live:
                for conn in wait(list(live)):
                    p = live[conn]
                    try:
                        msg = _receive_object(conn.fileno())  # type: ignore[union-attr]
                    except EOFError:  # (ended: an error, or killed)
                        return None
                    if msg[0] == "first":
                        for i, ids in weaver.first(p, msg[1], msg[2]):
                            for box, mine in zip(boxes, ids, strict=True):
                                box.put(mine)
                            if done is not None:
                                done(i)
                    elif msg[0] == "lines":
                        weaver.lines(*msg[1:])
                    elif msg[0] == "tail":
                        tails[p], self.decoded[p] = msg[1:]
                        del live[conn]
                    else:  # "error": a chunk did not read cleanly
                        return None
            weaver.close()
            ok = True
        finally:
            weaver.discard()
            for box in boxes:
                box.put(None)
            if ok:  # (else a thread may be waiting on the full pipe of a worker
                for t in threads:  # about to be killed: a daemon, it ends then)
                    t.join()
        return weaver.result([tails[p] for p in range(n)])


def _replies(fd: int, todo: queue.Queue[Any]) -> None:
    """Send a worker the ids of its connections, as they are ranked."""
    try:
        while (ids := todo.get()) is not None:
            _send_object(fd, ids)
    except OSError:  # (the worker ended: the run falls back)
        while todo.get() is not None:
            pass


def _not_mine(p: int, outs: list[Any], backs: list[Any]) -> list[Any]:
    """The ends of the main process's pipes that worker ``p`` inherits
    but does not use: while any process holds a worker's write end open,
    the main process would wait for ever for the rest of what that worker,
    ended, was sending."""
    mine = {id(outs[p][1]), *([id(backs[p][0])] if backs else [])}
    return [c for pair in (*outs, *backs) for c in pair if id(c) not in mine]


# -- pieces between worker processes -------------------------------------------
#
# A piece goes as a small pickled header (its chunk, record count, tunnel
# stacks, counters, error, and each column's dtype and shape) followed by
# each column's bytes, written straight from the arrays and read straight
# into new ones (os.write / os.readv): no pickling of the columns, no
# intermediate copies.  Each destination has its own sender thread, so a
# worker never waits for a peer to read before it goes on decoding and
# folding, and a slow reader holds up only the pieces meant for it.


def _wire(piece: Piece) -> tuple[bytes, list[npt.NDArray[Any]]]:
    """A piece's header and its columns in compact dtypes, each the
    concatenation of the piece's batches (a piece :func:`split` packed:
    its columns as they are, no copy)."""
    frame_dt = np.uint32 if piece.records < (1 << 32) else np.int64
    arrays: list[npt.NDArray[Any]] = []
    if len(piece.packed) == 1 and not piece.cols:
        arrays = [piece.packed[0][name] for name in _NAMES]
    elif piece.cols or piece.packed:
        # (in the order the fold takes them: cols, then packed)
        batches = [*({k: getattr(c, k) for k in _NAMES} for c in piece.cols), *piece.packed]
        for name in _NAMES:
            dt = frame_dt if name == "frame" else _DTYPES[name]
            parts = [b[name] for b in batches]
            arrays.append(np.concatenate(parts, dtype=dt, casting="unsafe")
                          if len(parts) > 1 else parts[0].astype(dt, copy=False))  # fmt: skip
    shapes = [(a.dtype.str, a.shape) for a in arrays]
    meta = (piece.index, piece.records, piece.stacks, piece.drops, piece.error, shapes)
    return pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL), arrays


def write_piece(path: str, piece: Piece) -> tuple[Any, ...] | None:
    """``piece``'s compact columns written to a new file ``path``, one after
    the other, each at a multiple of 8 bytes (``--dask local:N``: pieces
    through files, not Dask's comms); what :func:`read_piece` needs besides
    (its index, records, tunnel stacks, skip counters, error and the
    columns' dtypes and shapes).  None, and no file, for a piece without
    segments."""
    _, arrays = _wire(piece)
    if not sum(a.nbytes for a in arrays):  # (nothing to map)
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        at = 0
        for a in arrays:
            _write(fd, bytes(-at % 8))
            _write(fd, np.ascontiguousarray(a))
            at += -at % 8 + a.nbytes
    finally:
        os.close(fd)
    shapes = [(a.dtype.str, a.shape) for a in arrays]
    return (piece.index, piece.records, piece.stacks, piece.drops, piece.error, shapes)


def read_piece(path: str, meta: tuple[Any, ...]) -> Piece:
    """The piece :func:`write_piece` wrote, its columns views of the file
    mapped (no copy: the fold reads them from the page cache, a slice at a
    time, widening them as it goes).  The file may be removed after."""
    index, records, stacks, drops, error, shapes = meta
    raw: Any = np.memmap(path, dtype=np.uint8, mode="r")
    cols, at = [], 0
    for dt, shape in shapes:
        at += -at % 8
        dtype = np.dtype(dt)
        size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        cols.append(raw[at : at + size].view(dtype).reshape(shape))
        at += size
    piece = Piece(index, records, stacks, drops=drops, error=error)
    piece.packed = [dict(zip(_NAMES, cols, strict=True))]
    return piece


def _roomy(fd: int) -> None:
    """A pipe of 1 MB (Linux's default ceiling for users) instead of 64 kB:
    a sixteenth of the system calls and context switches for what flows
    through it (best effort)."""
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass


def _send_object(fd: int, obj: Any) -> None:
    """``obj`` pickled with its arrays out of band: a small pickle, then
    each array's bytes written straight from the array (no pickled copy of
    a few hundred MB for a partition of many connections)."""
    bufs: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    raws = [b.raw() for b in bufs]
    _write(fd, struct.pack(f"<QQ{len(raws)}Q", len(head), len(raws), *(r.nbytes for r in raws)))
    _write(fd, head)
    for r in raws:
        if r.nbytes:
            _write(fd, r)


def _receive_object(fd: int) -> Any:
    """What :func:`_send_object` sent: each array read straight into its
    own new buffer (not zero-filled first), which the unpickled array uses."""
    fixed = bytearray(16)
    _read(fd, fixed)
    size, count = struct.unpack("<QQ", fixed)
    sizes = bytearray(8 * count)
    _read(fd, sizes)
    head = bytearray(size)
    _read(fd, head)
    bufs = []
    for nbytes in struct.unpack(f"<{count}Q", sizes):
        buf = np.empty(nbytes, dtype=np.uint8)
        if nbytes:
            _read(fd, buf)
        bufs.append(buf)
    return pickle.loads(head, buffers=bufs)


def _write(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        view = view[os.write(fd, view) :]


def _read(fd: int, into: Any) -> None:
    view = memoryview(into).cast("B")
    while view.nbytes:
        got = os.readv(fd, [view])
        if not got:
            raise EOFError("a peer closed its pipe")
        view = view[got:]


def _sender(fd: int, todo: queue.Queue[Piece | None]) -> None:
    while (piece := todo.get()) is not None:
        head, arrays = _wire(piece)
        _write(fd, struct.pack("<Q", len(head)))
        _write(fd, head)
        for a in arrays:
            if a.nbytes:
                _write(fd, np.ascontiguousarray(a))


def _receive(fd: int) -> Piece | None:
    """The next piece on the pipe; None at its end (the peer is done)."""
    size = bytearray(8)
    got = os.readv(fd, [size])
    if not got:
        return None
    _read(fd, memoryview(size)[got:])
    head = bytearray(struct.unpack("<Q", size)[0])
    _read(fd, head)
    index, records, stacks, drops, error, shapes = pickle.loads(head)
    piece = Piece(index, records, stacks, drops=drops, error=error)
    if shapes:
        arrays = []
        for dt, shape in shapes:
            a = np.empty(shape, dtype=np.dtype(dt))
            if a.nbytes:
                _read(fd, a)
            arrays.append(a)
        piece.packed = [dict(zip(_NAMES, arrays, strict=True))]  # (widened as folded)
    return piece


def _peer(p: int, n: int, chunks: list[Chunk], file_of: list[int], zeek_timeouts: bool,
          pipes: list[list[Any]], events: Any, shared: tuple[Any, Any],
          out: Any, spec: Spec | None = None, back: Any = None,
          foreign: list[Any] | None = None) -> None:  # fmt: skip
    import threading
    from multiprocessing.connection import wait

    for conn in foreign or []:  # (inherited: held open, a peer's end would never show)
        conn.close()
    try:
        steady()  # (forked from finwait analyze: set already; a spawned worker too)
        folder = Folder(file_of, zeek_timeouts, keys=spec is not None)
        stream = None if spec is None else Stream(folder, spec)
        replies = 0  # chunks whose ids came back

        def take_ids(every: bool) -> None:
            """Set the ids that came back (``every``: wait for all)."""
            nonlocal replies
            assert stream is not None
            while replies < len(chunks) and (every or back.poll()):
                stream.ids(_receive_object(back.fileno()))
                replies += 1

        nxt, folded = shared
        outboxes: dict[int, queue.Queue[Piece | None]] = {}
        threads = []
        for q in range(n):
            if q != p:
                outboxes[q] = queue.Queue()
                t = threading.Thread(target=_sender, args=(pipes[p][q][1].fileno(), outboxes[q]),
                                     daemon=True)  # fmt: skip
                t.start()
                threads.append(t)
        inbox = {pipes[q][p][0].fileno(): pipes[q][p][0] for q in range(n) if q != p}
        held: dict[int, Piece] = {}
        decoded = 0

        def take() -> int | None:
            """The next chunk nobody has taken, if it is at most ``n``
            * AHEAD chunks past the slowest worker's fold (None otherwise)."""
            with nxt.get_lock():
                k = int(nxt.value)
                if k >= len(chunks) or k > min(folded[:]) + AHEAD * n:
                    return None
                nxt.value = k + 1
            return k

        for i in range(len(chunks)):
            pause = 0.0
            while i not in held:
                # The pieces already sent here first; then decode while
                # allowed, else wait for a peer's piece, looking again every
                # few ms (a slower worker's fold may allow more).
                for conn in wait(list(inbox.values()), timeout=pause):
                    got = _receive(conn.fileno())  # type: ignore[union-attr]
                    if got is None:
                        del inbox[conn.fileno()]  # type: ignore[union-attr]
                    else:
                        held[got.index] = got
                if i in held:
                    break
                k = take()
                if k is None:
                    pause = 0.005
                    continue
                pause = 0.0
                pieces = decode_split(chunks[k], n, pack=True, keep=p)
                for q, box in outboxes.items():
                    box.put(pieces[q])
                held[k] = pieces[p]
                decoded += 1
            if stream is not None:
                # Streaming (analyze/weave.py): the new connections' first
                # frames out, the ids that came back set, and the lines of
                # the connections retired now out.
                new = stream.fold(held.pop(i))
                folded[p] = i + 1
                if new is None:
                    _send_object(out.fileno(), ("error", folder.error))
                    return
                _send_object(out.fileno(), ("first", i, new))
                take_ids(False)
                for msg in stream.retire():
                    _send_object(out.fileno(), ("lines", *msg))
                continue
            folder.fold(held.pop(i))
            folded[p] = i + 1
            if folder.error is not None:
                events.put(("error", p, folder.error))
                return
            if p == 0:
                events.put(("chunk", p, i))
        for box in outboxes.values():
            box.put(None)
        for t in threads:
            t.join()
        if stream is None:
            events.put(("done", p, decoded))
            _send_object(out.fileno(), folder.result())
            return
        take_ids(True)
        for last in stream.finish():
            if isinstance(last, Tail):
                _send_object(out.fileno(), ("tail", last, decoded))
            else:
                _send_object(out.fileno(), ("lines", *last))
    except BaseException as exc:  # reported, so the caller falls back
        events.put(("crash", p, repr(exc)))
