"""``--dask``: the partitioned analysis as tasks on a LocalCluster of 2
worker processes (splits, folds pinned per partition, a tree of merges)
gives, record by record, what the sequential run gives; files are opened
through fsspec (a ``file://`` URL here)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from finwait.analyze import analyze_file
from finwait.analyze.sets import analyze_set

from .test_alloc import _mmapped_alloc, mmapped_before_after
from .test_chunks import rotate_at
from .test_jsonl import zoo

pytest.importorskip("distributed")


def test_malloc_thresholds() -> None:
    """A Dask nanny starts its worker with MALLOC_TRIM_THRESHOLD_=65536,
    which mmaps every numpy temporary (twice the analysis's CPU time); the
    tasks' first call restores glibc's usual thresholds."""
    out = mmapped_before_after(
        "from finwait.analyze.dask import _malloc\n"
        "before = _mmapped_alloc(); _malloc(); print(before, _mmapped_alloc())")  # fmt: skip
    assert out == ["True", "False"]


def _pieces_read() -> int:
    from finwait.analyze import dask as fd

    return fd.PIECES_READ[0]


def _retired() -> int:
    from finwait.analyze import dask as fd

    return fd.RETIRED[0]


def _slow_folds() -> None:
    """In a worker: each fold 0.5 s slower, so that the ids come back
    before the last folds whatever the machine's load (once a process)."""
    import time

    from finwait.analyze.weave import Stream

    fold = Stream.fold
    if getattr(fold, "slowed", False):
        return

    def slow(self: Stream, piece: object) -> object:
        time.sleep(0.5)
        return fold(self, piece)

    slow.slowed = True  # type: ignore[attr-defined]
    Stream.fold = slow  # type: ignore[method-assign]


def test_local_cluster_equals_sequential(tmp_path: Path) -> None:
    from finwait.analyze.dask import DaskRunner
    from finwait.analyze.jsonl import write_jsonl
    from finwait.analyze.summary import Summary
    from finwait.analyze.weave import Output
    from finwait.cli.analyze import _csv_lines

    from .test_weave import _shown

    path = tmp_path / "z.pcap"
    data = zoo(12, 400)
    path.write_bytes(data)
    size = path.stat().st_size
    cuts = [size * k // 7 for k in range(1, 7)]
    want = analyze_file(path)
    whole = Summary()
    whole.add(want)
    files = rotate_at(data, [0.3, 0.6], tmp_path)
    with DaskRunner("local:2") as runner:
        assert runner.workers == 2
        got = analyze_set([path], runner=runner, cuts={str(path): cuts}, as_set=False)
        assert runner.tasks >= 7 * 2  # the chunks really went to the cluster
        url = analyze_set([f"file://{path}"], runner=runner, cuts={f"file://{path}": cuts},
                          as_set=False)  # fmt: skip
        got_set = analyze_set(files, runner=runner, chunk_bytes=size // 9)
        probe = runner.client.run(_mmapped_alloc)  # (test_malloc_thresholds)
        assert not any(probe.values()), probe
        # The output made on the workers (analyze/weave.py), byte for byte
        # the sequential run's.
        for mode in ("json", "csv", "summary"):
            buf = io.StringIO()
            out = Output(mode, buf, lines=_csv_lines if mode == "csv" else None)
            spooled = runner.spooled
            pieces = sum(runner.client.run(_pieces_read).values())
            woven = analyze_set([path], runner=runner, cuts={str(path): cuts}, as_set=False,
                                output=out)  # fmt: skip
            assert out.done and woven.stats() == want.stats()
            # A LocalCluster's lines come through files, read back and removed.
            assert (runner.spooled > spooled) == (mode != "summary")
            # So do the pieces a worker splits for the other's fold.
            assert sum(runner.client.run(_pieces_read).values()) - pieces >= 3
            assert runner.spool_dir is not None and not Path(runner.spool_dir).exists()
            if mode == "json":
                seq = io.StringIO()
                write_jsonl(want, seq)
                assert buf.getvalue() == seq.getvalue()
            elif mode == "csv":
                assert buf.getvalue() == "".join(_csv_lines(want, 0, want.n))
            else:
                assert out.summary is not None and _shown(out.summary) == _shown(whole)
        buf = io.StringIO()
        out = Output("json", buf)
        woven = analyze_set(files, runner=runner, chunk_bytes=size // 9, output=out)
        seq = io.StringIO()
        write_jsonl(analyze_set(files), seq)
        assert buf.getvalue() == seq.getvalue()
        # (that the partitions stream, connections leaving the workers'
        # trackers before the end of the run, is test_partitions_stream's:
        # here it depends on how soon the ids come back, i.e. on the load)
    assert got.error is None and got.records_read == want.records_read
    assert list(got.records()) == list(want.records())
    assert list(url.records()) == list(want.records())
    assert list(got_set.records()) == list(analyze_set(files).records())


_FORKED = """
import gc, json, os, sys
from finwait.analyze import analyze_file
from finwait.analyze.dask import DaskRunner
from finwait.analyze.sets import analyze_set


def warm():
    # (before any task: what a worker would otherwise load on first use)
    from distributed.versions import _version_cached

    return ("distributed.protocol.numpy" in sys.modules,
            _version_cached.cache_info().hits > 0)


path = sys.argv[1]
size = os.path.getsize(path)
with DaskRunner("local:2") as runner:
    parents = runner.client.run(os.getppid)
    warmed = sorted(set(tuple(v) for v in runner.client.run(warm).values()))
    got = analyze_set([path], runner=runner, cuts={path: [size // 3, 2 * size // 3]},
                      as_set=False)
    tasks = runner.tasks
    frozen = gc.get_freeze_count()
print(json.dumps([runner.started, sorted(set(parents.values())) == [os.getpid()], tasks,
                  list(got.records()) == list(analyze_file(path).records()), warmed,
                  frozen > 0, gc.get_freeze_count()]))
"""


def test_local_workers_forked_before_any_thread(tmp_path: Path) -> None:
    """In a process where no thread runs yet (the ``finwait`` command),
    ``local:2``'s workers are forks of it (no fork server, no nanny: their
    parent is the process itself), and they give the sequential result.
    They start with what Dask loads lazily already loaded (numpy's
    serialisation; the package versions they report to the scheduler,
    found in the cache their parent filled).  What was alive when Dask
    was imported is out of the collector's passes while the runner is
    open (``gc.freeze``), and back in them after."""
    import json
    import subprocess
    import sys

    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(14, 300))
    out = subprocess.run([sys.executable, "-c", _FORKED, str(path)], capture_output=True,
                         text=True, timeout=300, check=True).stdout  # fmt: skip
    # 3 chunks: 3 splits (each keeping its own piece), 2 rounds of 2 folds
    # (one a partition: chunks 0 and 1, then chunk 2), 2 starts, 2 results,
    # 1 merge
    assert json.loads(out.splitlines()[-1]) == [
        "fork", True, 3 + 2 * 2 + 2 * 2 + 1, True, [[True, True]], True, 0]  # fmt: skip


def test_local_workers_from_a_fork_server_when_a_thread_runs(tmp_path: Path) -> None:
    """Where a thread already runs (a fork then could deadlock on a lock it
    holds), ``local:2``'s workers come from a fork server instead, and
    give the sequential result too."""
    import threading

    from finwait.analyze.dask import DaskRunner

    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(15, 200))
    size = path.stat().st_size
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with DaskRunner("local:2") as runner:
            assert runner.started == "forkserver"
            got = analyze_set([path], runner=runner, cuts={str(path): [size // 2]}, as_set=False)
    finally:
        stop.set()
        t.join()
    assert list(got.records()) == list(analyze_file(path).records())


def test_progress_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal, Dask's progress bar goes to stderr; stdout keeps only
    the JSON Lines; the cluster's shutdown leaves no traceback."""
    import json

    from tests.test_long_runs import _on_a_terminal

    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(15, 40))  # stdout is a pipe read at the end: under 64 KB
    code, out, err = _on_a_terminal(
        ["analyze", "--dask", "local:2", "--chunk-mb", "0.02", "--json", str(path)], tmp_path
    )
    assert code == 0, err
    assert "100% Completed" in err, err
    assert "Traceback" not in err and "Warning" not in err, err
    recs = [json.loads(x) for x in out.splitlines()]
    assert recs == list(analyze_file(path).records())


@pytest.mark.parametrize("spooled", [False, True])
def test_fold_run_again_is_a_no_op(tmp_path: Path, spooled: bool) -> None:
    """A fold task run a second time (Dask may re-run a task whose result
    was lost) leaves the partition's tracker as it was: the result is still
    the sequential one, and the task's result (the chunk's index) the same.
    With a spool (a LocalCluster's), the piece a split returns is a file's
    name, the file removed once its piece is folded, not before: a fold
    run again for it still works."""
    from finwait.analyze import dask as fd
    from finwait.analyze.chunks import plan
    from finwait.analyze.partition import decode_split, merge, tree

    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(13, 200))
    size = path.stat().st_size
    chunks = plan(path, cuts=[size // 3, 2 * size // 3])
    assert len(chunks) == 3
    spool = tmp_path / "spool"
    spool.mkdir()
    where = str(spool) if spooled else None
    file_of = [0] * len(chunks)
    last = [fd._start("r", p, file_of, False) for p in range(2)]
    for c in chunks:
        if c.index == 1:  # as the graph does: the split keeps worker w's piece
            w = 1
            other = fd._split_keep("r", 1, c, 2, w, where)
            assert isinstance(other, fd.Spooled) == spooled
            assert [f.name for f in spool.iterdir()] == (["r-1-0"] if spooled else [])
            last[w] = fd._fold_own("r", w, last[w], 1, other)
            assert fd._fold_own("r", w, last[w], 1, other) == last[w] == 1  # again
            last[0] = fd._fold("r", 0, last[0], other)
            assert not any(spool.iterdir())  # folded: its file removed
            assert fd._fold("r", 0, last[0], other) == last[0] == 1  # again
            continue
        if c.index == 2:  # a round's folds in one task (here the last round: chunk 2)
            other = fd._split_keep("r", 2, c, 2, 0, where)
            assert isinstance(other, fd.Spooled) == spooled
            for p in range(2):
                last[p] = fd._folds("r", p, 2, last[p], 2, other)
                assert fd._folds("r", p, 2, last[p], 2, other) == last[p] == 2  # again
            continue
        for p, piece in enumerate(decode_split(c, 2, pack=True)):
            last[p] = fd._fold("r", p, last[p], piece)
            assert fd._fold("r", p, last[p], piece) == last[p] == c.index  # again
    assert not any(spool.iterdir())
    got = tree([fd._result("r", p, last[p]) for p in range(2)], merge)
    assert not fd._FOLDERS and not fd._HELD
    from finwait.analyze.sets import _finish

    res = _finish(got.tracker, [str(path)], got.records, got.drops, got.stacks, got.seen, [],
                  False)  # fmt: skip
    assert list(res.records()) == list(analyze_file(path).records())


def test_spooled_pieces_of_three_partitions(tmp_path: Path) -> None:
    """With 3 partitions a split returns the other two pieces, each its
    own file, read back column for column as it was packed."""
    import numpy as np

    from finwait.analyze import dask as fd
    from finwait.analyze.chunks import plan
    from finwait.analyze.partition import _NAMES, decode_split

    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(16, 200))
    (chunk,) = plan(path, cuts=[])
    want = decode_split(chunk, 3, pack=True)
    others = fd._split_keep("s", 0, chunk, 3, 1, str(tmp_path))
    fd._HELD.clear()
    assert [type(o) for o in others] == [fd.Spooled, fd.Spooled]
    for p, ref in zip((0, 2), others, strict=True):
        got = fd._unspool(ref)
        assert (got.index, got.records, got.drops) == (0, want[p].records, want[p].drops)
        for name in _NAMES:
            a, b = got.packed[0][name], want[p].packed[0][name]
            assert a.dtype == b.dtype and np.array_equal(a, b), name


@pytest.mark.parametrize("spooled", [True, False])
def test_partitions_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spooled: bool) -> None:
    """The partitions stream: connections leave the workers' trackers, and
    their lines the workers, before the end of the run (the folds slowed
    down, so that the ids come back before the last folds whatever the
    machine's load).  With a LocalCluster's spool directory the lines come
    through files; without one (a cluster's workers may be on other
    machines: ``tcp://``) as the tasks' results.  The output is the
    sequential run's either way."""
    from finwait.analyze.dask import DaskRunner
    from finwait.analyze.jsonl import write_jsonl
    from finwait.analyze.weave import Output

    from .test_stream import _cuts, _short_lived

    if not spooled:
        monkeypatch.setattr(DaskRunner, "_spool", lambda self, run: None)
    path = _short_lived(tmp_path)
    with DaskRunner("local:2") as runner:
        # (in the workers themselves: forked from a fork server, or spawned,
        # when a thread runs here, they would not inherit a monkeypatch)
        runner.client.run(_slow_folds)
        before = sum(runner.client.run(_retired).values())
        buf = io.StringIO()
        out = Output("json", buf)
        analyze_set([path], runner=runner, cuts=_cuts(path, 8), as_set=False, output=out)
        assert out.done and (runner.spooled > 0) == spooled
        assert (runner.spool_dir is None) == (not spooled)
        assert sum(runner.client.run(_retired).values()) - before >= 10
    seq = io.StringIO()
    write_jsonl(analyze_file(path), seq)
    assert buf.getvalue() == seq.getvalue()


@pytest.mark.parametrize("spooled", [False, True])
def test_take_and_finish_run_again_give_the_same(tmp_path: Path, spooled: bool) -> None:
    """A streaming run's tasks called in this process as the graph runs
    them, each take and finish twice (Dask may re-run a task whose result
    was lost): the second call returns what the first did (the stream's
    counts not added twice, no lines lost), and the lines woven in
    ``finwait``'s way are the sequential run's.  Spooled, as on a
    LocalCluster, the fold writes what a take returns to a file of the
    spool (its result names it; run again, the same), and the ids go
    through files too (read by the next round's folds, the last ones by
    the finish)."""
    from finwait.analyze import dask as fd
    from finwait.analyze.chunks import plan
    from finwait.analyze.jsonl import write_jsonl
    from finwait.analyze.weave import Output, Weaver

    from .test_stream import _short_lived

    path = _short_lived(tmp_path)
    size = path.stat().st_size
    chunks = plan(path, cuts=[size * k // 6 for k in range(1, 6)])
    spool = None
    if spooled:
        spool = str(tmp_path / "spool")
        Path(spool).mkdir()
    buf = io.StringIO()
    out = Output("json", buf)
    weaver = Weaver(out, 2, spool)
    file_of = [0] * len(chunks)
    last = [fd._start("t", p, file_of, False, out.spec(), spool) for p in range(2)]

    def lines(got: list[tuple[object, object, object]]) -> None:
        for ids, text, ends in got:
            if isinstance(text, str):
                weaver.file_lines(ids, text, ends)  # type: ignore[arg-type]
            else:
                weaver.lines(ids, text, ends)  # type: ignore[arg-type]

    for i0 in range(0, len(chunks), 2):
        items = [fd._split_keep("t", i, chunks[i], 2, i % 2, spool)
                 for i in range(i0, min(i0 + 2, len(chunks)))]  # fmt: skip
        ranked = []
        for p in range(2):
            last[p] = fd._folds("t", p, 2, last[p], i0, *items)
            if spool is None:
                took = fd._take("t", p, i0, last[p])
                assert fd._take("t", p, i0, last[p]) is took  # again
            else:  # (the fold wrote the round to a file: no take task)
                assert fd._folds("t", p, 2, last[p], i0, *items) is last[p]  # again
                took = fd._round_read(last[p])
            _, firsts, got = took
            for k, frames in enumerate(firsts):
                ranked += weaver.first(p, i0 + k, frames)
            lines(got)
        for q in range(2):
            chunk_ids = ([i for i, _ in ranked], [x[q] for _, x in ranked])
            if spool is None:
                fd._ids("t", q, *chunk_ids)
            else:  # (a LocalCluster's: through a file the next folds read)
                fd._send_ids(spool, "t", q, *chunk_ids)
    if spool is None:
        assert not fd._TAKEN  # (each round's ids let its takes go)
    tails = []
    for p in range(2):
        end = fd._finish("t", p, spool)
        assert fd._finish("t", p, spool) is end  # again
        lines(end[0])
        tails.append(end[1])
    weaver.close()
    woven = weaver.result(tails)
    fd._forget("t")
    assert not fd._TAKEN and not fd._FINISHED and not fd._STREAMS
    want = analyze_file(path)
    assert woven.n == want.n and fd.RETIRED[0] > 0
    seq = io.StringIO()
    write_jsonl(want, seq)
    assert buf.getvalue() == seq.getvalue()
    assert spool is None or not any(Path(spool).iterdir())
