"""A fake node for link and network tests: records what arrives, sends what it is told."""

from __future__ import annotations

from collections import Counter
from typing import Any

from finwait.tcp.events import Event, StateChanged
from finwait.tcp.state import State
from finwait.tcp.verdict import Verdict
from finwait.wire.segment import ACK, FIN, Segment


class FakeNode:
    """Speaks just enough of the Host interface: ``send(seg)`` queues a segment,
    ``wake_at(t, segs)`` makes the node send ``segs`` from its timer at ``t``."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.arrivals: list[tuple[float, Segment]] = []
        self.packets: list[tuple[float, bytes]] = []
        self._out: list[Segment] = []
        self._events: list[tuple[Any, Event]] = []
        self._timers: list[tuple[float, list[Segment]]] = []

    def send(self, *segs: Segment) -> None:
        self._out.extend(segs)

    def wake_at(self, t: float, segs: list[Segment]) -> None:
        self._timers.append((t, segs))
        self._timers.sort(key=lambda x: x[0])

    def announce(self, old: State, new: State, now: float) -> None:
        self._events.append((None, StateChanged(old, new, now)))

    # -- the Host interface ----------------------------------------------

    def receive(self, segment: Segment, now: float) -> Verdict:
        if segment.flags & FIN and not segment.flags & ACK:
            self.counters["fin_without_ack"] += 1
            return Verdict.FIN_WITHOUT_ACK
        self.arrivals.append((now, segment))
        return Verdict.ACCEPTED

    def receive_packet(self, packet: bytes, now: float) -> None:
        self.packets.append((now, packet))
        self.counters["bad_packets"] += 1

    def on_timer(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, segs = self._timers.pop(0)
            self._out.extend(segs)

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def take_segments(self) -> list[Segment]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[tuple[Any, Event]]:
        out, self._events = self._events, []
        return out
