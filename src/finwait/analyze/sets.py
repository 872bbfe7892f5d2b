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

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..capture.decode import NOTES, Tunnels, decode
from ..capture.reader import CaptureError, EmptyCaptureError, iter_batches
from .chunks import CHUNK_BYTES, Chunk, plan, size_of
from .classify import Analysis, classify
from .partition import Partial, Runner
from .tracker import Tracker
from .weave import Output, Woven

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


def analyze_set(
    paths: Iterable[str | Path],
    progress: Progress | None = None,
    chunk_size: int = 8 << 20,
    zeek_timeouts: bool = False,
    ordered: bool = False,
    runner: Runner | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    cuts: dict[str, list[int]] | None = None,
    as_set: bool = True,
    verify_checksums: bool = False,
    output: Output | None = None,
) -> Analysis:
    """Classify every TCP connection of the files taken as one capture.
    ``progress`` is called with the bytes read so far over the whole set;
    ``ordered``: the files are already in capture order.  With ``runner``
    (analyze/partition.py: :func:`~finwait.analyze.partition.process_runner`,
    or Dask's), each file is cut into chunks of ``chunk_bytes`` (or at
    ``cuts[path]``), decoded in parallel and tracked in parallel by
    4-tuple partition; the result is the sequential one (a chunk that does
    not read cleanly makes the whole run sequential).  ``as_set=False``: one
    file analysed alone (no ``files`` field); ``verify_checksums`` as for
    :func:`~finwait.analyze.run.analyze_file`.

    With ``runner`` and ``output`` (analyze/weave.py), the partitions
    classify and render their connections themselves and the lines go to
    ``output`` in id order (then ``output.done`` is set): the result has
    the counts and ``n`` but no rows, as a streamed analysis."""
    files = [str(p) for p in paths] if ordered else order(paths)
    if runner is not None:
        if output is not None:
            output.name = _name(files)
            output.files = files if as_set else None
        got = _partitioned(files, runner, progress, zeek_timeouts, chunk_bytes, cuts,
                           verify_checksums, output)  # fmt: skip
        if isinstance(got, Woven):
            return _woven(got, files, as_set)
        if got is not None:
            return _finish(got.tracker, files, got.records, got.drops, got.stacks, got.seen,
                           [], as_set)  # fmt: skip
    tracker = Tracker(zeek_timeouts)
    tunnels = Tunnels()
    drops: Counter[str] = Counter()
    records = 0
    errors: list[tuple[str, int | None, bool]] = []
    seen: list[np.ndarray] = []  # per file: the connections with a packet in it
    done = 0
    for path in files:
        first = records  # frames of this file: first + 1 ..
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
        done += size_of(path)
    return _finish(tracker, files, records, drops, tunnels.stacks, seen, errors, as_set)


def _finish(
    tracker: Tracker,
    files: list[str],
    records: int,
    drops: Counter[str],
    stacks: list[tuple[tuple[str, str, str], ...]],
    seen: list[np.ndarray],
    errors: list[tuple[str, int | None, bool]],
    as_set: bool,
) -> Analysis:
    res = classify(tracker, _name(files))
    res.records_read = records
    drops = Counter(drops)
    res.notes = Counter({k: drops.pop(k) for k in NOTES if k in drops})
    res.drops = drops
    res.tunnels = stacks
    if as_set:
        res.files = files
        res.conn_files = _by_conn(seen, res.n)
    if errors:
        res.errors = [e[0] for e in errors]
        res.error = "; ".join(res.errors)
        res.error_offset = errors[0][1]
        res.empty = all(e[2] for e in errors) and len(errors) == len(files)
    return res


def _name(files: list[str]) -> str:
    return files[0] if len(files) == 1 else f"set of {len(files)} files"


def _woven(got: Woven, files: list[str], as_set: bool) -> Analysis:
    """The result of a run whose partitions wrote the output: counts only."""
    res = Analysis(_name(files), records_read=got.records, tcp_packets=got.packets, n=got.n)
    res.cols = {"tunnel": np.zeros(0, dtype=np.int64)}
    res.tunnelled = got.tunnelled
    drops = Counter(got.drops)
    res.notes = Counter({k: drops.pop(k) for k in NOTES if k in drops})
    res.drops = drops
    res.tunnels = got.stacks
    if as_set:
        res.files = files
    return res


def _partitioned(
    files: list[str],
    runner: Runner,
    progress: Progress | None,
    zeek_timeouts: bool,
    chunk_bytes: int,
    cuts: dict[str, list[int]] | None,
    verify_checksums: bool,
    output: Output | None = None,
) -> Partial | Woven | None:
    """The files' chunks run by ``runner``; None when a chunk did not read
    cleanly (the caller then reads the files sequentially)."""
    chunks: list[Chunk] = []
    file_of: list[int] = []
    ends: list[int] = []  # bytes of the set up to the end of each chunk
    done = 0
    for k, path in enumerate(files):
        size = size_of(path)
        for c in plan(path, chunk_bytes, None if cuts is None else cuts.get(path),
                      verify_checksums):  # fmt: skip
            chunks.append(dataclasses.replace(c, index=len(chunks)))
            file_of.append(k)
            ends.append(done + (c.stop if c.stop >= 0 else size))
        done += size
    report = None if progress is None else (lambda i: progress(ends[i]))
    if output is None:  # (a runner may not take one)
        got = runner(chunks, file_of, zeek_timeouts, report)
    else:
        got = runner(chunks, file_of, zeek_timeouts, report, output)
    if got is None or (isinstance(got, Partial) and got.error is not None):
        return None
    return got


def _by_conn(seen: list[np.ndarray], n: int) -> list[list[int]]:
    """Per connection, the indices of the files it appears in."""
    out: list[list[int]] = [[] for _ in range(n)]
    for k, conns in enumerate(seen):
        for c in conns.tolist():
            out[c].append(k)
    return out
