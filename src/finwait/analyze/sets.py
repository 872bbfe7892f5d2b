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

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..capture.decode import NOTES, Tunnels, decode
from ..capture.reader import CaptureError, EmptyCaptureError, iter_batches
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


def analyze_set(
    paths: Iterable[str | Path],
    progress: Progress | None = None,
    chunk_size: int = 8 << 20,
    zeek_timeouts: bool = False,
    ordered: bool = False,
) -> Analysis:
    """Classify every TCP connection of the files taken as one capture.
    ``progress`` is called with the bytes read so far over the whole set;
    ``ordered``: the files are already in capture order."""
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
        try:
            for batch in iter_batches(path, chunk_size):
                batch.frame += first
                records += len(batch)
                tracker.add(decode(batch, drops, tunnels))
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
        done += os.path.getsize(path) if os.path.exists(path) else 0
    res = classify(tracker, files[0] if len(files) == 1 else f"set of {len(files)} files")
    res.records_read = records
    res.notes = Counter({k: drops.pop(k) for k in NOTES if k in drops})
    res.drops = drops
    res.tunnels = tunnels.stacks
    res.files = files
    res.conn_files = _by_conn(seen, res.n)
    if errors:
        res.errors = [e[0] for e in errors]
        res.error = "; ".join(res.errors)
        res.error_offset = errors[0][1]
        res.empty = all(e[2] for e in errors) and len(errors) == len(files)
    return res


def _by_conn(seen: list[np.ndarray], n: int) -> list[list[int]]:
    """Per connection, the indices of the files it appears in."""
    out: list[list[int]] = [[] for _ in range(n)]
    for k, conns in enumerate(seen):
        for c in conns.tolist():
            out[c].append(k)
    return out
