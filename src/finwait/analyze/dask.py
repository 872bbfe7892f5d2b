"""``--dask``: the partitioned analysis (analyze/partition.py) as Dask tasks
on a cluster (``tcp://HOST:PORT``, a running ``dask scheduler``) or on a
LocalCluster of this machine (``local`` or ``local:N`` workers).

The graph, for ``n`` workers and chunks ``0 .. C - 1`` (``2`` tasks a
chunk with 2 workers, ``2n - 1`` with more):

- ``split-i``: read, decode and split chunk ``i`` into ``n`` compact pieces
  on worker ``w = i mod n``, which opens the file itself, through fsspec
  for a URL; it keeps piece ``w`` in the worker (:data:`_HELD`) and returns
  the others (with 2 workers the other piece itself, else a list that
  ``n - 1`` getitem tasks name);
- ``fold-p-r``: fold pieces ``p`` of round ``r``'s chunks (``r n`` …
  ``r n + n - 1``, one split on each worker) into partition ``p``'s
  tracker, after ``fold-p-(r-1)``, on worker ``p`` (worker ``p``'s own
  piece taken from where its split left it): one task a round, not one a
  chunk (each task costs the scheduler, here in the ``finwait`` process,
  about 3 ms).  The tracker is that worker's state for the run
  (:data:`_FOLDERS`), never a task's result: a fold returns its last
  chunk's index, so results stay immutable, the chain travels as a few
  bytes, and a fold run again for a chunk already folded is a no-op
  (retry-safe); piece ``p`` of each chunk is what travels (about 70 bytes
  a segment; on a LocalCluster through a file in the run's spool
  directory, Dask carrying only its name: :class:`Spooled`);
- ``split-i`` also waits for the folds of the round of chunk ``i - 2n``
  (their indices), so at most about ``2n`` chunks' pieces exist at once:
  memory on each worker is bounded by the chunk size (and its open
  connections, when the partitions stream), not by the file size;
- writing JSON Lines, CSV, the text summary or --stats (analyze/weave.py),
  the partitions stream: what partition ``p``'s round ``r`` left (the
  first frames of the connections its chunks began, and the lines of the
  connections it retired after each chunk) comes back to this process,
  which ranks each chunk's new connections once it has every
  partition's, sends the ids back, and writes the lines in id order;
  ``finish-p`` (after its ids) sends the rest.  On a LocalCluster all of
  it goes through files in the spool directory: the fold's result names
  the round's file (no take task), and the ids go to a file the
  partition's next folds read (no ids task), so they come during the
  next round's folds; on a ``tcp://`` cluster a ``take-p-r`` task brings
  the round back and an ``ids-p-i`` task a round (with a priority over
  the waiting folds) the ids.  A fold, take or finish run again returns
  what it returned the first time (kept until ``finwait`` has it), so a
  re-run costs nothing more.  A worker holds its open connections, not
  every connection;
- otherwise (the HTML report, Parquet: every connection needed here)
  ``result-p`` takes partition ``p``'s tracker out of its worker; the
  results are merged as a tree (``merge``: ``log2 n`` levels), and only the
  final merge comes back to this process.

The graph goes to the scheduler in one piece (Dask delayed tasks, each
with its placement as an annotation, computed together: one graph update
instead of one per task).

On a terminal, Dask's own progress bar (``distributed.progress``) runs on
stderr.  Needs ``pip install 'finwait[dask]'``.

Memory allocation.  A Dask nanny starts its worker with
``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``),
which also freezes glibc's mmap threshold at 128 kB: every numpy temporary
of a batch (hundreds of kB) is then mmapped, faulted in page by page and
unmapped, which doubled the analysis's CPU time (7 s of system time on the
5 M-packet capture).  Each task therefore first restores glibc's usual
steady state in its worker (:func:`~finwait.analyze.alloc.steady`: allocations under 32 MB from
the heap, the heap trimmed past 64 MB free), on any cluster.
"""

from __future__ import annotations

import gc
import operator
import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, redirect_stdout
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .alloc import steady as _malloc
from .chunks import Chunk
from .partition import (
    ChunkDone,
    Folder,
    Partial,
    Piece,
    decode_split,
    merge,
    read_piece,
    tree,
    write_piece,
)
from .weave import Output, Spec, Stream, Tail, Weaver, Woven

# A worker's partitions, by (run, partition): the trackers the folds feed.
WINDOW = 3  # blocks of lines rendered ahead of the one written
_FOLDERS: dict[tuple[str, int], Folder] = {}
# The piece of each chunk its split kept for this worker's own fold, by (run, chunk).
_HELD: dict[tuple[str, int], Piece] = {}
# A run that writes an output (analyze/weave.py): each partition's stream,
# the first frames of the connections each chunk ``i`` began (key ``i``)
# and their ids while they wait for the chunks' before (key ``-1 - i``),
# what each round's folds leave for this process (by the round's first
# chunk), and how many chunks' ids each partition has set.
_STREAMS: dict[tuple[str, int], Stream] = {}
_NEW: dict[tuple[str, int, int], Any] = {}
_ROUNDS: dict[tuple[str, int, int], tuple[list[Any], list[Any]]] = {}
_APPLIED: dict[tuple[str, int], int] = {}
# A LocalCluster's run: the spool directory each partition writes its lines to.
_SPOOLS: dict[tuple[str, int], str | None] = {}
# What each take and finish task returned, kept so that one run again (Dask
# may re-run a task whose result was lost) returns it again: a take's
# until its partition's next ids (this process has the round by then), a
# finish's until the run is forgotten.
_TAKEN: dict[tuple[str, int, int], tuple[Any, ...]] = {}
_FINISHED: dict[tuple[str, int], tuple[Any, ...]] = {}
PIECES_READ = [0]  # pieces this worker read from a spool (tests)
RETIRED = [0]  # connections this worker's partitions sent before their end (tests)


def _split(chunk: Chunk, n: int, *after: int) -> list[Piece]:
    _malloc()
    return decode_split(chunk, n, pack=True)


def _split_keep(run: str, i: int, chunk: Chunk, n: int, w: int, spool: str | None,
                *after: int) -> Any:  # fmt: skip
    """Chunk ``i`` split on worker ``w``: piece ``w`` kept here for
    :func:`_fold_own`, the others returned (one piece when ``n`` is 2);
    with ``spool`` (a LocalCluster's directory), each other piece written
    to a file there and a :class:`Spooled` naming it returned instead."""
    _malloc()
    pieces = decode_split(chunk, n, pack=True, keep=w)
    _HELD[run, i] = pieces[w]
    others: list[Any] = pieces[:w] + pieces[w + 1 :]
    if spool is not None:
        others = [_spool_piece(spool, run, p, piece)
                  for p, piece in zip([*range(w), *range(w + 1, n)], others, strict=True)]  # fmt: skip
    return others[0] if n == 2 else others


@dataclass(frozen=True)
class Spooled:
    """A piece whose compact columns its split wrote to ``path`` (one after
    the other, each at a multiple of 8 bytes): what goes through Dask in
    its place on a LocalCluster, a few hundred bytes instead of about 70
    a segment (sent, received and deserialised by both workers' event
    loops).  ``meta``: the piece's index, records, tunnel stacks, skip
    counters, error and its columns' dtypes and shapes."""

    path: str
    index: int
    meta: tuple[Any, ...]


def _spool_piece(spool: str, run: str, p: int, piece: Piece) -> Spooled | Piece:
    """``piece`` (partition ``p``'s) written to a file in ``spool``; a piece
    without columns as it is.  Rewritten whole if its split runs again."""
    import os

    path = os.path.join(spool, f"{run}-{piece.index}-{p}")
    meta = write_piece(path, piece)
    return piece if meta is None else Spooled(path, piece.index, meta)


def _unspool(ref: Spooled) -> Piece:
    """The piece :func:`_spool_piece` wrote (:func:`read_piece`: its
    columns mapped); the file stays (see :func:`_fold`)."""
    PIECES_READ[0] += 1
    return read_piece(ref.path, ref.meta)


def _fold_own(run: str, p: int, _prev: int, i: int, _others: Any) -> int:
    """Fold the piece of chunk ``i`` that its split (on this worker) kept."""
    folder = _FOLDERS[run, p]
    piece = _HELD.pop((run, i), None)
    if piece is None:
        if folder.next > i:  # folded already: a task run again
            return i
        raise RuntimeError(f"--dask: piece {p} of chunk {i} is not on its worker")
    if piece.index >= folder.next:
        _into(run, p, piece)
    return i


def _into(run: str, p: int, piece: Piece) -> None:
    """Fold ``piece`` into partition ``p`` (streaming: through its
    :class:`Stream`, the first frames of the connections it began kept)."""
    st = _STREAMS.get((run, p))
    if st is None:
        _FOLDERS[run, p].fold(piece)
    else:
        _NEW[run, p, piece.index] = st.fold(piece)


def _start(run: str, p: int, file_of: list[int], zeek_timeouts: bool,
           spec: Spec | None = None, spool: str | None = None) -> int:  # fmt: skip
    _malloc()
    folder = _FOLDERS[run, p] = Folder(file_of, zeek_timeouts, keys=spec is not None)
    if spec is not None:
        _STREAMS[run, p] = Stream(folder, spec)
        _APPLIED[run, p] = 0
        _SPOOLS[run, p] = spool
    return -1


def _folds(run: str, p: int, n: int, _prev: Any, i0: int, *items: Any) -> Any:
    """Fold the pieces of chunks ``i0``, ``i0 + 1`` … (one round: a chunk
    split on each worker) into partition ``p``, in order: a chunk split
    on this worker by the piece its split kept (its item only names the
    split), any other by its item, the piece that travelled.  One task a
    round instead of one a chunk (each task costs the scheduler about
    3 ms); each fold is still retry-safe.  The last chunk's index.

    Streaming, after each chunk: the ids that came meanwhile set (with a
    spool: :func:`_ids_came`) and the connections they let go retired, as a
    ``--workers`` worker does.  (Retired once a round, after the round's
    ids came through a task, a partition held about a round's connections
    more: on the capture of 492 k connections its tables peaked at 171 MB
    instead of 85, the worker at 424-453 MB instead of 304-351.)  With a
    spool, what the round left goes to ``finwait`` through a file of it
    (:func:`_round_file`), named by the task's result: no take task."""
    st = _STREAMS.get((run, p))
    streaming = st is not None and (run, p, i0) not in _ROUNDS and (run, p, i0) not in _TAKEN
    firsts: list[Any] = []
    lines: list[Any] = []
    for k, item in enumerate(items):
        i = i0 + k
        if i % n == p:
            _fold_own(run, p, -1, i, item)
        else:
            _fold(run, p, -1, item)
        if streaming and st is not None:
            # The chunk's new connections (their first frames), and the
            # lines of those retired now, for :func:`_take` (with a spool,
            # each block written to it as soon as it is rendered).
            firsts.append(_NEW.pop((run, p, i), None))
            if all(f is not None for f in firsts):
                spool = _SPOOLS[run, p]
                if spool is not None:
                    _ids_came(run, p, spool)
                lines += _lines(run, p, i, st.retire(), spool)
    if streaming:
        RETIRED[0] += sum(ids.size for ids, _, _ in lines)
        _ROUNDS[run, p, i0] = (firsts, lines)
    spool = _SPOOLS.get((run, p))
    if st is not None and spool is not None:
        return _round_file(run, p, i0, spool)
    return i0 + len(items) - 1


def _round_file(run: str, p: int, i0: int, spool: str) -> tuple[int, str]:
    """What :func:`_take` returns for round ``i0``, written (pickled) to a
    file of the spool by the round's fold itself (a LocalCluster's): the
    fold's result names it, ``finwait`` reads it (:func:`_round_read`).
    One task a round and partition fewer (16 on the capture of 492 k
    connections), each with its messages to and from the scheduler and a
    transfer to ``finwait``.  Run again, the same (:data:`_TAKEN`)."""
    if (run, p, i0) not in _TAKEN:
        import os
        import pickle

        firsts, lines = _ROUNDS.pop((run, p, i0))
        path = os.path.join(spool, f"{run}-round-{p}-{i0}")
        with open(path, "wb") as fh:
            pickle.dump((i0, firsts, lines), fh, protocol=5)
        _TAKEN[run, p, i0] = (i0, path)
    return _TAKEN[run, p, i0]


def _round_read(got: tuple[int, str]) -> tuple[Any, ...]:
    """In ``finwait``: what :func:`_round_file` wrote, the file removed."""
    import os
    import pickle

    with open(got[1], "rb") as fh:
        out: tuple[Any, ...] = pickle.load(fh)
    os.unlink(got[1])
    return out


def _fold(run: str, p: int, _prev: int, piece: Piece | Spooled) -> int:
    """Fold ``piece`` into the run's partition ``p`` on this worker; its
    chunk's index.  A piece already folded (a task run again) is skipped.
    A spooled piece is read from its file, and the file removed once the
    piece is folded: a fold run again for it skips it without reading it
    (a file left by a fold that failed goes with the run's spool)."""
    folder = _FOLDERS[run, p]
    if piece.index >= folder.next:
        if isinstance(piece, Spooled):
            import os

            _into(run, p, _unspool(piece))
            os.unlink(piece.path)
        else:
            _into(run, p, piece)
    return piece.index


def _result(run: str, p: int, _last: int) -> Partial:
    return _FOLDERS.pop((run, p)).result()


def _take(run: str, p: int, i0: int, _last: int) -> tuple[Any, ...]:
    """What round ``i0``'s folds of partition ``p`` left (streaming): the
    first frames of the connections each chunk began (None: it did not
    read cleanly) and the lines of the connections retired (:func:`_lines`).
    Run again, the same (:data:`_TAKEN`)."""
    if (run, p, i0) not in _TAKEN:
        firsts, lines = _ROUNDS.pop((run, p, i0))
        _TAKEN[run, p, i0] = (i0, firsts, lines)
    return _TAKEN[run, p, i0]


def _lines(run: str, p: int, tag: int, lines: Iterable[Any], spool: str | None) -> list[Any]:
    """Lines (ids, text, ends) as they go to ``finwait``: with ``spool`` (a
    directory this worker shares with it: a LocalCluster's), each text
    written to a file there as it comes (one block's text in memory at a
    time, not a round's) and its path in its place (the lines do not go
    through Dask's comms: for 492 k connections, 0.5 GB sent, received and
    deserialised)."""
    if spool is None:
        return list(lines)
    import os

    out = []
    for k, (ids, text, ends) in enumerate(lines):
        if text.nbytes:
            path = os.path.join(spool, f"{run}-lines-{p}-{tag}-{k}")  # (not a piece's name)
            text.tofile(path)
            text = path
        out.append((ids, text, ends))
    return out


def _ids(run: str, p: int, chunks: list[int], ids: list[Any]) -> int:
    """Partition ``p``'s connections begun in ``chunks`` get their ids
    (``ids``, one array a chunk, ranked in ``finwait``), in chunk order
    whatever the order the tasks run in; a task run again changes nothing.
    The takes of the rounds ranked are forgotten: ``finwait`` has them."""
    for key in [k for k in _TAKEN if k[:2] == (run, p) and k[2] <= chunks[-1]]:
        del _TAKEN[key]
    for i, one in zip(chunks, ids, strict=True):
        if i >= _APPLIED[run, p]:
            _NEW[run, p, -1 - i] = one  # (waiting for the ids of the chunks before)
    while (run, p, -1 - _APPLIED[run, p]) in _NEW:
        _STREAMS[run, p].ids(_NEW.pop((run, p, -1 - _APPLIED[run, p])))
        _APPLIED[run, p] += 1
    return _APPLIED[run, p]


def _ids_file(spool: str, run: str, p: int, i: int) -> str:
    import os

    return os.path.join(spool, f"{run}-ids-{p}-{i}")


def _send_ids(spool: str, run: str, p: int, chunks: list[int], ids: list[Any]) -> None:
    """In ``finwait``, for a LocalCluster: what an :func:`_ids` task would
    give partition ``p``, written to a file of the spool instead (its
    chunks, their sizes and the ids, one int64 array), which the partition's
    folds read as soon as it is there (:func:`_ids_came`): the ids come
    during a round's folds, not after them, and no task carries them."""
    import os

    import numpy as np

    path = _ids_file(spool, run, p, chunks[0])
    head = np.array([len(chunks), *chunks, *(x.size for x in ids)], dtype=np.int64)
    np.concatenate([head, *ids]).astype(np.int64, copy=False).tofile(path + ".part")
    os.rename(path + ".part", path)  # (whole, or not there)


def _ids_came(run: str, p: int, spool: str, every: bool = False) -> None:
    """The ids :func:`_send_ids` wrote for partition ``p``, set in chunk
    order, each file removed once set; ``every``: all of the chunks folded
    (they are there: ``finwait`` wrote them before it asked for them)."""
    import os

    import numpy as np

    while True:
        path = _ids_file(spool, run, p, _APPLIED[run, p])
        try:
            got = np.fromfile(path, dtype=np.int64)
        except FileNotFoundError:
            if every and _APPLIED[run, p] < _FOLDERS[run, p].next:
                raise RuntimeError(
                    f"--dask: the ids of chunk {_APPLIED[run, p]} did not come"
                ) from None
            return
        k = int(got[0])
        sizes = np.cumsum(got[1 + k : 1 + 2 * k])
        _ids(run, p, got[1 : 1 + k].tolist(), np.split(got[1 + 2 * k :], sizes[:-1]))
        os.unlink(path)


def _finish(run: str, p: int, spool: str | None, *_ids_set: int) -> tuple[Any, ...]:
    """Partition ``p``'s last lines (every id known: after its
    :func:`_ids` tasks, or with a spool its last fold and the ids files)
    and its :class:`Tail`; run again, the same (:data:`_FINISHED`: the
    stream's counts are not added twice)."""
    if (run, p) not in _FINISHED:
        if spool is not None:
            _ids_came(run, p, spool, every=True)
        tail: list[Tail] = []

        def lines() -> Iterator[Any]:
            for last in _STREAMS[run, p].finish():
                if isinstance(last, Tail):
                    tail.append(last)
                else:
                    yield last

        got = _lines(run, p, -1, lines(), spool)
        _FINISHED[run, p] = (got, tail[0])
    return _FINISHED[run, p]


def _forget(run: str) -> None:
    for key in [k for k in _FOLDERS if k[0] == run]:
        del _FOLDERS[key]
    tables: list[dict[Any, Any]] = [_STREAMS, _NEW, _ROUNDS, _APPLIED, _TAKEN, _FINISHED, _SPOOLS]
    for table in tables:
        for one in [k for k in table if k[0] == run]:
            del table[one]
    for held in [k for k in _HELD if k[0] == run]:
        del _HELD[held]


def _gathered(client: Any, futures: list[Any]) -> list[Any] | None:
    """The futures' results; None when a task failed or its worker was
    lost (the run then falls back to the sequential read)."""
    try:
        got: list[Any] = client.gather(futures)
    except Exception:  # (a worker lost, a task failed: whatever Dask raises)
        return None
    return got


# A LocalCluster's settings: no sampling profiler in the workers (a thread
# walking the running task's stack every 10 ms), no work stealing (every
# fold is pinned to its partition's worker; the scheduler's balancing loop
# would only cost), the system monitors (psutil: CPU, memory, network and
# disk counters) every 5 s instead of every 0.5 s, and the event loops'
# "tick" (a check that the loop is not blocked) every second instead of
# every 20 ms.
_LOCAL_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.scheduler.work-stealing": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.tick.interval": "1s",
}


def _warm() -> None:
    """What every process of a LocalCluster does lazily on its first use,
    done once in ``finwait`` before the workers are forked from it (this
    process needs the same): the installed packages' versions (each
    worker reads them from their metadata when it registers with the
    scheduler), and numpy's serialisation and size estimates (imported by
    each worker when it first sends an array, or sizes a result).  Each
    worker starts with them instead of paying for them again (about 20 ms
    of CPU each)."""
    import importlib

    import numpy as np
    from dask.sizeof import sizeof
    from distributed.versions import get_versions

    get_versions()
    serialize: Any = importlib.import_module("distributed.protocol.serialize")
    for registry in (serialize.dask_serialize, serialize.dask_deserialize):
        registry.dispatch(np.ndarray)
    sizeof(np.zeros(1))


def _local_worker(link: Any) -> None:
    """A LocalCluster's worker in a fork of the ``finwait`` process: waits
    for the scheduler's address, then runs one one-thread worker until the
    scheduler closes it."""
    import asyncio
    import logging

    import dask
    from distributed import Worker

    try:
        address = link.recv()
    except EOFError:  # the cluster did not start
        return
    link.close()
    logging.getLogger("distributed").setLevel(logging.CRITICAL)

    async def run() -> None:
        # (death_timeout: gone when the scheduler is, even if finwait was killed)
        async with Worker(address, nthreads=1, memory_limit=0, dashboard=False,
                          death_timeout=30) as worker:  # fmt: skip
            await worker.finished()

    with dask.config.set(_LOCAL_CONFIG):
        asyncio.run(run())


class DaskRunner(AbstractContextManager["DaskRunner"]):
    """A partition runner (analyze/partition.py's ``Runner``) on a Dask
    cluster: one partition per worker."""

    def __init__(self, address: str, progress: bool = False) -> None:
        import importlib

        dd: Any = importlib.import_module("dask.distributed")
        # What is alive now (Dask's modules and classes, hundreds of thousands
        # of objects) is left out of the cyclic collector's passes until
        # :meth:`close`: in ``finwait`` its full collections over them took
        # 0.08 CPU s a run (4 of them), 0.015 s after; forked workers inherit
        # it too (their collections do not walk, and copy, those pages).
        gc.freeze()
        self.cluster: Any = None
        self.client: Any
        self.progress = progress
        self.procs: list[Any] = []
        self.started = "cluster"  # how local workers were started (tests)
        try:
            if address == "local" or address.startswith("local:"):
                n = int(address.split(":", 1)[1]) if ":" in address else None
                self._local(dd, n)
            else:
                self.client = dd.Client(address, timeout=30)
        except BaseException:
            gc.unfreeze()
            raise
        self.addrs = sorted(self.client.scheduler_info()["workers"])
        self.workers = max(1, len(self.addrs))
        # Each task placed on its worker (none known: a split may not run
        # where its fold does, and the pieces travel as results).
        self.placed = bool(self.addrs)
        self.tasks = 0  # tasks submitted (tests: the work went to the cluster)
        self.spooled = 0  # blocks of lines read from the spool (tests)
        self.spool_dir: str | None = None  # the last run's spool (tests: removed)

    def _local(self, dd: Any, n: int | None) -> None:
        """A LocalCluster: the scheduler in this process, ``n`` one-thread
        workers (one per core by default).

        The workers are forks of this process taken before any thread runs
        (Dask's, the scheduler's loop): they have Dask, numpy and finwait
        imported already, and no nanny.  A fork of a process that runs Dask's
        threads can deadlock on a lock held at the fork (it did: a worker
        stuck in a logging handler's flush), so where a thread already runs
        (a test process that used a cluster before), the workers come from
        a fork server that imports Dask, numpy and finwait once, under
        nannies; spawned where there is no fork server.  Both without
        Dask's sampling profiler (a thread walking the task's stack every
        10 ms)."""
        import importlib
        import logging
        import multiprocessing
        import os
        import threading

        import dask

        methods = multiprocessing.get_all_start_methods()
        n = n or os.cpu_count() or 1
        quiet = _LOCAL_CONFIG
        # No dashboard (nobody looks at it; it warns when 8787 is taken), and
        # the workers' shutdown noise kept off stderr.
        opts: dict[str, Any] = {"threads_per_worker": 1, "dashboard_address": ":0",
                                "scheduler_kwargs": {"dashboard": False},
                                "silence_logs": logging.CRITICAL}  # fmt: skip
        if "fork" in methods and threading.active_count() == 1:
            _warm()
            ctx = multiprocessing.get_context("fork")
            links = [ctx.Pipe(duplex=False) for _ in range(n)]
            for read, _ in links:
                proc = ctx.Process(target=_local_worker, args=(read,), daemon=True,
                                   name="finwait-dask-worker")  # fmt: skip
                proc.start()
                self.procs.append(proc)
            try:
                with dask.config.set(quiet):
                    self.cluster = dd.LocalCluster(n_workers=0, processes=True, **opts)
                for _, write in links:
                    write.send(self.cluster.scheduler_address)
                self.client = dd.Client(self.cluster)
                self._registered(n)
                self.client.wait_for_workers(n, timeout=60)
            except BaseException:
                self.close()
                raise
            finally:
                for read, write in links:
                    read.close()
                    write.close()
            self.started = "fork"
            return
        forkserver = "forkserver" in methods
        method = "forkserver" if forkserver else "spawn"
        with dask.config.set({**quiet, "distributed.worker.multiprocessing-method": method}):
            if forkserver:
                du: Any = importlib.import_module("distributed.utils")
                du.get_mp_context().set_forkserver_preload(["distributed", __name__])
            self.cluster = dd.LocalCluster(n_workers=n, processes=True, **opts)
        self.client = dd.Client(self.cluster)
        self.started = method

    def _registered(self, n: int, timeout: float = 60.0) -> None:
        """Wait until ``n`` workers have registered with the LocalCluster's
        scheduler (in this process), looking at its table every 5 ms:
        Dask's own wait asks every 100 ms, which cost each run up to 0.1 s
        of wall time (the workers took about 20 ms)."""
        import time

        end = time.monotonic() + timeout
        while len(self.cluster.scheduler.workers) < n and time.monotonic() < end:
            time.sleep(0.005)

    def __call__(
        self,
        chunks: list[Chunk],
        file_of: list[int],
        zeek_timeouts: bool,
        done: ChunkDone | None,
        output: Output | None = None,
    ) -> Partial | Woven | None:
        import uuid

        run = uuid.uuid4().hex
        # A LocalCluster's pieces and blocks of lines travel through files
        # there, removed with it at the end of the run whatever happens.
        spool = self.spool_dir = self._spool(run) if self.placed else None
        try:
            return self._run(run, spool, chunks, file_of, zeek_timeouts, done, output)
        finally:
            if spool is not None:
                import shutil

                shutil.rmtree(spool, ignore_errors=True)

    def _run(
        self,
        run: str,
        spool: str | None,
        chunks: list[Chunk],
        file_of: list[int],
        zeek_timeouts: bool,
        done: ChunkDone | None,
        output: Output | None,
    ) -> Partial | Woven | None:
        import importlib

        dask: Any = importlib.import_module("dask")
        delayed = dask.delayed
        c = self.client
        n, addrs = self.workers, self.addrs or [None]
        ahead = 2 * n

        # The whole graph goes to the scheduler at once (one update, not one
        # per task), each task with its placement as an annotation.
        def task(func: Any, name: str, *args: Any, at: int | None = None) -> Any:
            one = delayed(func, pure=False)
            if at is None or addrs[at] is None:
                return one(*args, dask_key_name=f"{name}-{run}")
            with dask.annotate(workers=[addrs[at]], allow_other_workers=False):
                return one(*args, dask_key_name=f"{name}-{run}")

        weaving = output is not None and self.placed
        spec = output.spec() if weaving and output is not None else None
        last = [task(_start, f"start-{p}", run, p, file_of, zeek_timeouts, spec, spool, at=p)
                for p in range(n)]  # fmt: skip
        folds: list[list[Any]] = []  # per chunk: the fold tasks its round ends with
        items: list[list[Any]] = [[] for _ in range(n)]  # this round's, per partition
        takes: list[list[Any]] = []  # streaming: per round, what its folds left
        rounds: list[list[Any]] = []  # ... and its folds (for the progress bar)
        for i, chunk in enumerate(chunks):
            after = folds[i - ahead] if i >= ahead else []
            w = i % n
            if not self.placed:
                sp = task(_split, f"split-{i}", chunk, n, *after)
                for p in range(n):
                    piece = task(operator.getitem, f"piece-{p}-{i}", sp, p)
                    last[p] = task(_fold, f"fold-{p}-{i}", run, p, last[p], piece)
                    self.tasks += 2
                self.tasks += 1
                folds.append(list(last))
                continue
            sp = task(_split_keep, f"split-{i}", run, i, chunk, n, w, spool, *after, at=w)
            self.tasks += 1
            for p in range(n):
                if p != w and n > 2:
                    k = p - (p > w)
                    items[p].append(task(operator.getitem, f"piece-{p}-{i}", sp, k))
                    self.tasks += 1
                else:  # (its own piece: the split, named; else the piece itself)
                    items[p].append(sp)
            if w == n - 1 or i == len(chunks) - 1:  # a round's folds, one task a partition
                i0 = i - w
                for p in range(n):
                    last[p] = task(_folds, f"fold-{p}-{i0}", run, p, n, last[p], i0, *items[p],
                                   at=p)  # fmt: skip
                    items[p] = []
                    self.tasks += 1
                folds.extend(list(last) for _ in range(w + 1))
                if weaving and spool is not None:  # (the folds bring the round back)
                    takes.append(list(last))
                    rounds.append(list(last))
                elif weaving:
                    takes.append([task(_take, f"take-{p}-{i0}", run, p, i0, last[p], at=p)
                                  for p in range(n)])  # fmt: skip
                    rounds.append(list(last))
                    self.tasks += n
        try:
            if weaving:
                assert output is not None
                return self._stream(run, output, takes, rounds, spool, done)
            parts = [task(_result, f"result-{p}", run, p, last[p], at=p) for p in range(n)]
            level = iter(range(1 << 30))
            top = tree(parts, lambda a, b: task(merge, f"merge-{next(level)}", a, b))
            self.tasks += 2 * n + n - 1
            got: Partial = self._wait(c.compute(top, optimize_graph=False))
        finally:
            c.run(_forget, run)
        if done is not None and chunks:
            done(len(chunks) - 1)
        return None if got.error is not None else got

    def _wait(self, futures: Any) -> Any:
        """The futures' results (Dask's progress bar on stderr meanwhile)."""
        if self.progress:
            import importlib

            progress: Any = importlib.import_module("distributed").progress
            with redirect_stdout(sys.stderr):  # stdout may be the JSON Lines
                progress(futures)
                sys.stderr.write("\n")
        return self.client.gather(futures)

    def _stream(self, run: str, output: Output, takes: list[list[Any]], folds: list[list[Any]],
                spool: str | None, done: ChunkDone | None) -> Woven | None:  # fmt: skip
        """A run whose partitions stream their connections out
        (analyze/weave.py): round by round, what each partition's folds
        left is taken here, the chunks' new connections ranked and their
        ids sent back to the partitions (tasks ahead of the waiting folds),
        the lines written in id order; then each partition's last lines.
        None when a chunk did not read cleanly (``output.written``: the
        connections written before)."""
        import threading

        c, n = self.client, self.workers
        weaver = Weaver(output, n, spool)

        def at(p: int) -> dict[str, Any]:
            return {"workers": [self.addrs[p]], "allow_other_workers": False, "pure": False}

        # (the folds' results too: their indices, a few bytes, which the
        # progress bar follows; the takes' are released as they are read.
        # With a spool the folds are the takes: their results name files.)
        fused = spool is not None
        flat = c.compute([*(t for rnd in takes for t in rnd if not fused),
                          *(f for rnd in folds for f in rnd)], optimize_graph=False)  # fmt: skip
        half = 0 if fused else len(flat) // 2
        folded = flat[half:]
        rounds = [folded[k : k + n] for k in range(0, len(folded), n)] if fused else [
            flat[k : k + n] for k in range(0, half, n)]  # fmt: skip
        del flat
        acks: list[list[Any]] = [[] for _ in range(n)]
        bar = None
        if self.progress:  # (Dask's bar, over the folds, from a thread of its own)
            import importlib

            progress: Any = importlib.import_module("distributed").progress
            bar = threading.Thread(target=progress, args=(folded,), daemon=True)
        try:
            with redirect_stdout(sys.stderr):  # stdout may be the JSON Lines
                if bar is not None:
                    bar.start()
                for r in range(len(rounds)):
                    ranked: list[tuple[int, list[Any]]] = []
                    for p in range(n):  # (one partition's lines at a time: memory)
                        got = _gathered(c, [rounds[r][p]])
                        if got is None:
                            return None
                        rounds[r][p] = None  # (released: the cluster forgets it)
                        i0, firsts, lines = _round_read(got[0]) if fused else got[0]
                        for k, frames in enumerate(firsts):
                            if frames is None:
                                return None
                            ranked += weaver.first(p, i0 + k, frames)
                        self._lines(weaver, lines)
                    if ranked and spool is not None:  # (a file a partition)
                        for q in range(n):
                            _send_ids(
                                spool, run, q, [i for i, _ in ranked], [x[q] for _, x in ranked]
                            )
                    elif ranked:  # (the round's chunks: one task a partition)
                        for q in range(n):
                            acks[q].append(c.submit(
                                _ids, run, q, [i for i, _ in ranked], [x[q] for _, x in ranked],
                                priority=10, key=f"ids-{q}-{ranked[0][0]}-{run}", **at(q)))  # fmt: skip
                        self.tasks += n
                    if ranked and done is not None:
                        done(ranked[-1][0])
                # (after the partition's ids: its tasks, or its last fold
                # with the ids files written)
                after = acks if spool is None else [[folded[-n + p]] for p in range(n)]
                finals = [c.submit(_finish, run, p, spool, *after[p], key=f"finish-{p}-{run}",
                                   **at(p)) for p in range(n)]  # fmt: skip
                self.tasks += n
                tails: list[Tail] = []
                for p in range(n):
                    end = _gathered(c, [finals[p]])
                    if end is None:
                        return None
                    finals[p] = None
                    lines, tail = end[0]
                    self._lines(weaver, lines)
                    tails.append(tail)
                weaver.close()
                if bar is not None:
                    bar.join()
                    sys.stderr.write("\n")
        finally:
            weaver.discard()
        return weaver.result(tails)

    def _lines(self, weaver: Weaver, lines: list[Any]) -> None:
        for ids, text, ends in lines:
            if isinstance(text, str):  # (a file's path: the text spooled)
                self.spooled += 1
                weaver.file_lines(ids, text, ends)
            else:
                weaver.lines(ids, text, ends)

    def _spool(self, run: str) -> str | None:
        """A directory for the pieces the workers exchange and their
        rendered blocks when they run on this machine (a LocalCluster),
        else None (a cluster's workers may be elsewhere: pieces and lines
        go through Dask)."""
        if self.cluster is None:
            return None
        import tempfile

        return tempfile.mkdtemp(prefix=f"finwait-dask-{run[:8]}-")

    def close(self) -> None:
        gc.unfreeze()
        if getattr(self, "client", None) is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()  # (the scheduler tells its workers to close)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.procs = []

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
