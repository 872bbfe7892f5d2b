"""Capture sets: several files analysed as one capture.

Rotated captures (``tcpdump -C``/``-G``/``-W``, dumpcap ring buffers) cut
connections at file boundaries.  :func:`analyze_set` orders the files by
their first packet's timestamp (pcap and pcapng may be mixed) and feeds them,
in that order, to one tracker: a connection that crosses a boundary is one
connection, ids are per set, frames are numbered over the whole set (as
``mergecap -a`` of the files in that order would number them), and each
record lists the files it appears in (``files``).

A damaged file inside a set is reported with its file name and byte offset
(``errors``); what was read of it before the damage is kept, and the next
files are still analysed.
"""

from __future__ import annotations

import collections
import copy
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ..capture.decode import NOTES, Tunnels, decode
from ..capture.reader import CaptureError, EmptyCaptureError, iter_batches
from .chunks import CHUNK_BYTES, Chunk, Part, decode_chunk, merge, plan
from .classify import Analysis, classify
from .tracker import Tracker

Progress = Callable[[int], None]


def expand(paths: Iterable[str | Path]) -> list[str]:
    """The files of a set: each directory stands for the regular files in
    it (names starting with ``.`` skipped), in name order."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(
                str(Path(p) / name)
                for name in os.listdir(p)
                if not name.startswith(".") and os.path.isfile(Path(p) / name)
            )
        else:
            out.append(str(p))
    return out


def first_timestamp(path: str | Path) -> float:
    """The first record's timestamp; ``inf`` for a file with no readable
    record (it goes last, where its error is reported)."""
    try:
        for batch in iter_batches(path, 1 << 16):
            if len(batch):
                return float(batch.ts[0])
    except CaptureError:
        pass
    return math.inf


def order(paths: Iterable[str | Path]) -> list[str]:
    """The files by first timestamp (ties: the order given)."""
    files = [str(p) for p in paths]
    keys = [first_timestamp(p) for p in files]
    return [f for _, _, f in sorted(zip(keys, range(len(files)), files, strict=True))]


Mapper = Callable[[Callable[[Chunk], Part], list[Chunk]], Iterator[Part]]


def analyze_set(
    paths: Iterable[str | Path],
    progress: Progress | None = None,
    chunk_size: int = 8 << 20,
    zeek_timeouts: bool = False,
    ordered: bool = False,
    mapper: Mapper | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    cuts: dict[str, list[int]] | None = None,
    as_set: bool = True,
    verify_checksums: bool = False,
) -> Analysis:
    """Classify every TCP connection of the files taken as one capture.
    ``progress`` is called with the bytes read so far over the whole set;
    ``ordered``: the files are already in capture order.  With ``mapper``
    (an ordered parallel map: :func:`pool_mapper`, or Dask's), each file is
    cut into chunks of ``chunk_bytes`` (or at ``cuts[path]``) decoded in
    parallel (analyze/chunks.py); the result is the sequential one.
    ``as_set=False``: one file analysed alone (no ``files`` field);
    ``verify_checksums`` as for :func:`~finwait.analyze.run.analyze_file`."""
    files = [str(p) for p in paths] if ordered else order(paths)
    tracker = Tracker(zeek_timeouts)
    tunnels = Tunnels()
    drops: Counter[str] = Counter()
    records = 0
    errors: list[tuple[str, int | None, bool]] = []
    seen: list[np.ndarray] = []  # per file: the connections with a packet in it
    done = 0
    for path in files:
        first = records  # frames of this file: first + 1 ..
        size = os.path.getsize(path) if os.path.exists(path) else 0
        folded = None
        if mapper is not None:
            chunks = plan(path, chunk_bytes, None if cuts is None else cuts.get(path),
                          verify_checksums)  # fmt: skip
            if len(chunks) > 1:
                folded = _fold_chunks(tracker, tunnels, drops, first, mapper, chunks,
                                      progress, done)  # fmt: skip
        if folded is not None:
            tracker, tunnels, drops, got = folded
            records += got
        else:
            try:
                for batch in iter_batches(path, chunk_size):
                    batch.frame += first
                    records += len(batch)
                    tracker.add(decode(batch, drops, tunnels, verify_checksums))
                    if progress is not None:
                        progress(done + batch.file_offset + int(batch.buf.size))
            except CaptureError as exc:
                empty = isinstance(exc, EmptyCaptureError)
                errors.append((str(exc), None if empty else exc.offset, empty))
        n = tracker.nconns
        last = tracker.c.last_frame[:n]
        # A connection has a packet in this file when its last packet so far
        # is one of the file's (connections are only ever extended).
        hit = np.flatnonzero(last > first) if records > first else np.zeros(0, dtype=np.int64)
        seen.append(hit)
        done += size
    name = files[0] if len(files) == 1 else f"set of {len(files)} files"
    res = classify(tracker, name)
    res.records_read = records
    res.notes = Counter({k: drops.pop(k) for k in NOTES if k in drops})
    res.drops = drops
    res.tunnels = tunnels.stacks
    if as_set:
        res.files = files
        res.conn_files = _by_conn(seen, res.n)
    if errors:
        res.errors = [e[0] for e in errors]
        res.error = "; ".join(res.errors)
        res.error_offset = errors[0][1]
        res.empty = all(e[2] for e in errors) and len(errors) == len(files)
    return res


def _fold_chunks(
    tracker: Tracker,
    tunnels: Tunnels,
    drops: Counter[str],
    first: int,
    mapper: Mapper,
    chunks: list[Chunk],
    progress: Progress | None,
    done: int,
) -> tuple[Tracker, Tunnels, Counter[str], int] | None:
    """Fold the decoded chunks of one file, in order, into (a copy of) the
    tracker; None when a chunk did not read cleanly (the caller reads the
    file sequentially: the state before the file is untouched)."""
    tracker, tunnels, drops = copy.deepcopy((tracker, tunnels, drops))
    acc = Part(0, None, first, Counter(), tunnels.stacks)
    for part in mapper(decode_chunk, chunks):
        if part.error is not None:
            return None
        base = acc.records
        acc = merge(Part(0, None, base, Counter(), acc.stacks), part)
        if acc.cols is not None:
            tracker.add(acc.cols)
        drops.update(part.drops)
        if progress is not None:
            c = chunks[part.index]
            progress(done + (c.stop if c.stop >= 0 else os.path.getsize(c.path)))
    for st in acc.stacks:
        tunnels.id(st)
    return tracker, tunnels, drops, acc.records - first


def pool_mapper(workers: int) -> Mapper:
    """An ordered map over a process pool, at most ``2 * workers`` chunks
    ahead of the fold (memory bounded by the chunk size)."""

    def run(fn: Callable[[Chunk], Part], chunks: list[Chunk]) -> Iterator[Part]:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            pending = collections.deque(pool.submit(fn, c) for c in chunks[: 2 * workers])
            nxt = len(pending)
            while pending:
                part = pending.popleft().result()
                if nxt < len(chunks):
                    pending.append(pool.submit(fn, chunks[nxt]))
                    nxt += 1
                yield part

    return run


def _by_conn(seen: list[np.ndarray], n: int) -> list[list[int]]:
    """Per connection, the indices of the files it appears in."""
    out: list[list[int]] = [[] for _ in range(n)]
    for k, conns in enumerate(seen):
        for c in conns.tolist():
            out[c].append(k)
    return out
