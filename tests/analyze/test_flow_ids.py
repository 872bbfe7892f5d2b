"""Flow ids: the hashed fast path must give exactly what the exact path
gives, and a hash collision (here forced by a degenerate hash) must fall
back to the exact path instead of merging two 4-tuples."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import finwait.analyze.tracker as tracker
from analyze.test_jsonl import zoo
from finwait.analyze import analyze_file
from finwait.analyze.classify import classify
from finwait.analyze.jsonl import iter_jsonl
from finwait.capture.decode import decode
from finwait.capture.reader import iter_batches


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in "".join(iter_jsonl(analyze_file(path))).splitlines()]


def _port_only(words: npt.NDArray[np.int64], port: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    # Ignores the address: IPv4 and IPv6 endpoints with the same port collide.
    return port.astype(np.uint64)


def _constant(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    return np.zeros_like(h)  # every flow has the same hash


@pytest.mark.parametrize(
    "patch", [("_endpoint_hash", _port_only), ("_mix", _constant)], ids=["port-only", "constant"]
)
def test_collisions_fall_back_to_the_exact_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patch: tuple[str, object]
) -> None:
    path = tmp_path / "zoo.pcap"
    path.write_bytes(zoo(11))
    want = _records(path)
    used: list[bool] = []
    exact = tracker.Tracker._flows_exact

    def spy(self: tracker.Tracker, cols: object) -> object:
        used.append(True)
        return exact(self, cols)  # type: ignore[arg-type]

    monkeypatch.setattr(tracker, patch[0], patch[1])
    monkeypatch.setattr(tracker.Tracker, "_flows_exact", spy)
    assert _records(path) == want
    assert used  # the degenerate hash did collide, and was caught


def _in_pieces(path: Path, size: int) -> list[dict[str, object]]:
    """Records of ``path`` with the tracker fed ``size`` packets at a time."""
    tr = tracker.Tracker()
    for batch in iter_batches(path):
        cols = decode(batch, Counter())
        for lo in range(0, len(cols), size):
            tr.add(cols.take(np.arange(lo, min(lo + size, len(cols)))))
    res = classify(tr, str(path))
    return [json.loads(x) for x in "".join(iter_jsonl(res)).splitlines()]


def test_exact_path_continues_flows_from_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: the first ones go the fast way, then a collision in a
    # later batch switches to the exact path, which must find the flows the
    # fast path already numbered (stored in either endpoint order).
    path = tmp_path / "zoo.pcap"
    path.write_bytes(zoo(12))
    want = _records(path)
    assert _in_pieces(path, 40) == want
    calls = {"n": 0}
    real = tracker._mix

    def late_collision(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        calls["n"] += 1
        return real(h) if calls["n"] <= 30 else np.zeros_like(h)  # 3 calls a batch

    monkeypatch.setattr(tracker, "_mix", late_collision)
    assert _in_pieces(path, 40) == want
    assert calls["n"] > 30


def test_grouping_order_is_the_stable_sort_by_hash() -> None:
    # Tracker._flows groups a batch's packets by flow hash, capture order
    # within (_grouped: an unstable sort of hash-top-bits | position), and
    # must give exactly the stable sort's order, also when two hashes share
    # the top bits (then the positions of both flows interleave: fallback).
    from finwait.analyze.tracker import _grouped

    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 1000, 50_000):
        flows = rng.integers(0, 1 << 63, max(n // 7, 1), dtype=np.uint64)
        h = flows[rng.integers(0, flows.size, n)]
        order, sh = _grouped(h)
        assert np.array_equal(order, np.argsort(h, kind="stable"))
        assert np.array_equal(sh, h[order])
    same_top = np.array([5 << 20 | 1, 5 << 20 | 2, 5 << 20 | 1, 3], dtype=np.uint64)
    order, sh = _grouped(same_top)
    assert order.tolist() == [3, 0, 2, 1]
    assert np.array_equal(sh, same_top[order])
