"""Virtual time: the simulator's clock and its event queue.

Simulated time is a float in seconds that only moves when the queue pops an
event, so waiting out TIME-WAIT's 2×MSL (RFC 9293 §3.6.1) costs nothing.
Events due at the same instant run in the order they were scheduled: the heap
key is ``(time, insertion number)``, which makes a run independent of how
``heapq`` would otherwise compare equal keys and so reproducible for a seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

Action = Callable[[float], object]


class _Entry:
    __slots__ = ("action", "at", "cancelled")

    def __init__(self, at: float, action: Action) -> None:
        self.at = at
        self.action = action
        self.cancelled = False


class Handle:
    """Returned by :meth:`EventQueue.schedule`; ``cancel()`` it to skip the event."""

    __slots__ = ("_entry",)

    def __init__(self, entry: _Entry) -> None:
        self._entry = entry

    @property
    def at(self) -> float:
        return self._entry.at

    def cancel(self) -> None:
        self._entry.cancelled = True


class EventQueue:
    """A virtual clock and the actions scheduled on it."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        # (time, insertion number, entry): tuples compare in C, and the unique
        # insertion number means the entry itself is never compared.
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = 0
        self.processed = 0

    @property
    def now(self) -> float:
        return self._now

    def schedule(self, at: float, action: Action) -> Handle:
        """Run ``action(at)`` at time ``at``; a time in the past means now."""
        entry = _Entry(max(at, self._now), action)
        heapq.heappush(self._heap, (entry.at, self._order, entry))
        self._order += 1
        return Handle(entry)

    def next_time(self) -> float | None:
        """When the next live event is due, or None when nothing is left."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def step(self) -> bool:
        """Advance the clock to the next live event and run it; False if none."""
        while self._heap:
            entry = heapq.heappop(self._heap)[2]
            if entry.cancelled:
                continue
            self._now = entry.at
            self.processed += 1
            entry.action(entry.at)
            return True
        return False

    def __len__(self) -> int:
        return sum(1 for _, _, e in self._heap if not e.cancelled)
