"""``--dask``: chunk decodings as tasks on a LocalCluster of 2 worker
processes give, record by record, what the sequential run gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from finwait.analyze import analyze_file
from finwait.analyze.sets import analyze_set

from .test_jsonl import zoo

pytest.importorskip("distributed")


def test_local_cluster_equals_sequential(tmp_path: Path) -> None:
    from finwait.analyze.dask import DaskMapper

    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(12, 400))
    size = path.stat().st_size
    cuts = [size * k // 7 for k in range(1, 7)]
    want = analyze_file(path)
    with DaskMapper("local:2") as mapper:
        assert mapper.workers == 2
        got = analyze_set([path], mapper=mapper, cuts={str(path): cuts}, as_set=False)
        calls = []

        def counting(fn, chunks):  # type: ignore[no-untyped-def]
            calls.append(len(chunks))
            yield from mapper(fn, chunks)

        again = analyze_set([path], mapper=counting, cuts={str(path): cuts}, as_set=False)
    assert calls and calls[0] >= 6  # the chunks really went to the cluster
    assert got.error is None and got.records_read == want.records_read
    assert list(got.records()) == list(want.records())
    assert list(again.records()) == list(want.records())
