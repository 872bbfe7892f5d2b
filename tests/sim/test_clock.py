"""The virtual clock: time order, insertion order on ties, cancellation."""

from __future__ import annotations

from collections.abc import Callable

from finwait.sim.clock import EventQueue


def test_events_run_in_time_order_and_ties_in_insertion_order() -> None:
    q = EventQueue()
    seen: list[tuple[str, float]] = []

    def record(label: str) -> Callable[[float], None]:
        return lambda now: seen.append((label, now))

    for label, at in [("c", 2.0), ("a", 1.0), ("b1", 1.5), ("b2", 1.5), ("b3", 1.5)]:
        q.schedule(at, record(label))
    while q.step():
        pass
    assert seen == [("a", 1.0), ("b1", 1.5), ("b2", 1.5), ("b3", 1.5), ("c", 2.0)]
    assert q.now == 2.0


def test_cancelled_events_do_not_run_and_the_past_means_now() -> None:
    q = EventQueue()
    seen: list[float] = []
    h = q.schedule(1.0, seen.append)
    q.schedule(2.0, lambda now: q.schedule(0.5, seen.append))
    h.cancel()
    assert len(q) == 1
    assert q.next_time() == 2.0
    while q.step():
        pass
    assert seen == [2.0]  # scheduled "at 0.5" from t=2: runs at 2, never back in time
