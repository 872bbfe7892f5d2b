"""What the text summary of ``finwait analyze`` shows, gathered piece by
piece: a streamed analysis hands its connections over in pieces as they are
done with (:func:`~finwait.analyze.run.analyze_file`'s ``emit``), so the
summary keeps counts and a few records, never every connection.

The longest connections are ordered by duration, longest first, then by id;
the unclosed ones (``open`` or ``half_closed``) are listed by id.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .classify import CLOSES, SIDES, Analysis, Close
from .tracker import ANOMALIES

LONGEST = 5
UNCLOSED = 10


@dataclass
class Summary:
    grid: Counter[tuple[str, str]] = field(default_factory=Counter)
    anomalies: dict[str, list[int]] = field(default_factory=dict)  # name -> [conns, segments]
    tunnelled: int = 0
    unclosed: int = 0
    # (duration, -id, record) of the longest, and (-id, record) of the
    # unclosed with the lowest ids: heaps whose root is the first to drop.
    _longest: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    _first_unclosed: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def add(self, res: Analysis) -> None:
        """Fold in ``res``: a whole analysis, or one piece of a streamed one."""
        if not res.n:
            return
        c = res.cols
        ids = np.arange(1, res.n + 1) if res.ids is None else res.ids
        self.grid.update(res.by_close_and_closer())
        for name, (nc, ns) in res.anomaly_counts().items():
            tot = self.anomalies.setdefault(name, [0, 0])
            tot[0] += nc
            tot[1] += ns
        self.tunnelled += int((c["tunnel"] > 0).sum())
        dur = c["end"] - c["start"]
        # Each piece's own longest (by duration, then id) are the only candidates.
        for row in np.lexsort((ids, -dur))[:LONGEST].tolist():
            item = (float(dur[row]), -int(ids[row]), res.record(row + 1))
            _keep(self._longest, item, LONGEST)
        rows = np.flatnonzero((c["close"] == Close.open) | (c["close"] == Close.half_closed))
        self.unclosed += rows.size
        for row in rows[np.argsort(ids[rows], kind="stable")][:UNCLOSED].tolist():
            _keep(self._first_unclosed, (-int(ids[row]), res.record(row + 1)), UNCLOSED)

    def merge(self, other: Summary) -> None:
        """Fold in another summary of other connections (another partition's)."""
        self.grid.update(other.grid)
        for name, (nc, ns) in other.anomalies.items():
            tot = self.anomalies.setdefault(name, [0, 0])
            tot[0] += nc
            tot[1] += ns
        self.tunnelled += other.tunnelled
        self.unclosed += other.unclosed
        for item in other._longest:
            _keep(self._longest, item, LONGEST)
        for unclosed in other._first_unclosed:
            _keep(self._first_unclosed, unclosed, UNCLOSED)

    def longest(self) -> list[dict[str, Any]]:
        return [rec for *_, rec in sorted(self._longest, key=lambda x: x[:2], reverse=True)]

    def first_unclosed(self) -> list[dict[str, Any]]:
        return [rec for _, rec in sorted(self._first_unclosed, key=lambda x: x[0], reverse=True)]

    def anomaly_counts(self) -> dict[str, tuple[int, int]]:
        """name -> (connections, segments), in the tracker's order of
        anomalies (not the order pieces brought them: the same whatever
        the pieces or partitions)."""
        return {k: (v[0], v[1]) for k in ANOMALIES if (v := self.anomalies.get(k)) is not None}

    def close_rows(self) -> list[tuple[str, list[int]]]:
        """Per close type seen: the count by first closer (client, server,
        both, none)."""
        out = []
        for close in CLOSES:
            row = [self.grid.get((close, s), 0) for s in (*SIDES, "-")]
            if sum(row):
                out.append((close, row))
        return out


def _keep(heap: list[Any], item: Any, size: int) -> None:
    """Push ``item``, keeping the ``size`` largest (heap order: records
    never compare, the keys before them are unique)."""
    if len(heap) < size:
        heapq.heappush(heap, item)
    elif item[:-1] > heap[0][:-1]:
        heapq.heapreplace(heap, item)
