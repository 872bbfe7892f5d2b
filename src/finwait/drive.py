"""The one drain loop: what every driver of a Host does after each input.

A Host (or anything with ``take_segments``/``take_events``) queues what its
connections produce; after every input — a segment, a timer, a user call —
the driver must take all of it, or a segment sits unsent.  Event handlers
may call the engine again (a read opens the window, EOF is answered with a
close), so the loop repeats until a round finds nothing.  Used by the
simulator (``sim.network``), the attack lab (``sim.attacks``), the live
driver (``live.driver``) and the packet-exchange test harness.

The order rule, the same everywhere: in each round, the state changes are
recorded first (``record``), then the segments go out (``transmit``), then
the events reach the application (``dispatch``).  A state change is thus
recorded before the segment its input produced (CLOSE: FIN-WAIT-1, then the
FIN; a SYN,ACK received: ESTABLISHED, then the ACK), in the simulator's
trace and the live one alike, and the application sees an event only once
the segments that go with it are on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .tcp.events import Event, StateChanged
from .wire.segment import Segment

Events = Sequence[tuple[Any, Event]]


class Drainable(Protocol):
    def take_segments(self) -> list[Segment]: ...

    def take_events(self) -> Sequence[tuple[Any, Event]]: ...


def drain(
    host: Drainable,
    transmit: Callable[[list[Segment]], object] | None = None,
    dispatch: Callable[[Events], object] | None = None,
    record: Callable[[Any, StateChanged], object] | None = None,
    *,
    max_rounds: int | None = None,
) -> bool:
    """Take everything ``host`` queued, round after round, until a round
    finds nothing (True) or ``max_rounds`` rounds ran (False: a bounded
    driver comes back later).  Per round that found something:
    ``record(conn, ev)`` for every StateChanged, ``transmit(segments)``
    when there are segments, ``dispatch(events)`` (events may be empty)."""
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        segments = host.take_segments()
        events = host.take_events()
        if not segments and not events:
            return True
        if record is not None:
            for conn, ev in events:
                if type(ev) is StateChanged:
                    record(conn, ev)
        if segments and transmit is not None:
            transmit(segments)
        if dispatch is not None:
            dispatch(events)
    return False
