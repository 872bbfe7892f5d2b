"""``--dask``: the partitioned analysis as tasks on a LocalCluster of 2
worker processes (splits, folds pinned per partition, a tree of merges)
gives, record by record, what the sequential run gives; files are opened
through fsspec (a ``file://`` URL here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finwait.analyze import analyze_file
from finwait.analyze.sets import analyze_set

from .test_chunks import rotate_at
from .test_jsonl import zoo

pytest.importorskip("distributed")


def _mmapped_alloc() -> bool:
    """Whether a 1 MB numpy array is mmapped by glibc in this process
    (mallinfo2's count of mmapped blocks goes up while it lives)."""
    import ctypes

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]  # fmt: skip

    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    before = mallinfo2().hblks
    a = np.ones(1 << 17)  # 1 MB
    hit = bool(mallinfo2().hblks > before)
    del a
    return hit


def test_local_cluster_equals_sequential(tmp_path: Path) -> None:
    from finwait.analyze.dask import DaskRunner

    path = tmp_path / "z.pcap"
    data = zoo(12, 400)
    path.write_bytes(data)
    size = path.stat().st_size
    cuts = [size * k // 7 for k in range(1, 7)]
    want = analyze_file(path)
    files = rotate_at(data, [0.3, 0.6], tmp_path)
    with DaskRunner("local:2") as runner:
        assert runner.workers == 2
        # The nanny's MALLOC_TRIM_THRESHOLD_ mmaps every numpy temporary
        # (twice the CPU time); the tasks restore glibc's usual thresholds.
        probe = runner.client.run(_mmapped_alloc)
        assert all(probe.values()), probe
        got = analyze_set([path], runner=runner, cuts={str(path): cuts}, as_set=False)
        assert runner.tasks >= 7 * 7  # the chunks really went to the cluster
        url = analyze_set([f"file://{path}"], runner=runner, cuts={f"file://{path}": cuts},
                          as_set=False)  # fmt: skip
        got_set = analyze_set(files, runner=runner, chunk_bytes=size // 9)
        probe = runner.client.run(_mmapped_alloc)
        assert not any(probe.values()), probe
    assert got.error is None and got.records_read == want.records_read
    assert list(got.records()) == list(want.records())
    assert list(url.records()) == list(want.records())
    assert list(got_set.records()) == list(analyze_set(files).records())


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
