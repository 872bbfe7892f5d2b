"""finwait.drive.drain: the one drain loop and its order rule."""

from __future__ import annotations

from typing import Any

from finwait.drive import Events, drain
from finwait.host import Host
from finwait.tcp.events import Connected, Event, StateChanged
from finwait.tcp.state import State
from finwait.wire.segment import SYN, Segment


class Queue:
    """Two rounds of output, the second produced by the first's handler."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.events: list[tuple[Any, Event]] = []

    def take_segments(self) -> list[Segment]:
        out, self.segments = self.segments, []
        return out

    def take_events(self) -> list[tuple[Any, Event]]:
        out, self.events = self.events, []
        return out


def test_state_changes_then_segments_then_events_round_after_round() -> None:
    q = Queue()
    syn = Segment("198.18.0.1", "198.18.0.2", 1, 2, 0, 0, SYN, 0)
    q.segments.append(syn)
    q.events += [(None, StateChanged(State.CLOSED, State.SYN_SENT, 0.0)), (None, Connected())]
    log: list[str] = []

    def dispatch(events: Events) -> None:
        log.append(f"dispatch {len(events)}")
        if any(isinstance(ev, Connected) for _, ev in events):
            q.segments.append(syn)  # the handler makes the engine send again

    assert drain(
        q,
        lambda segs: log.append(f"transmit {len(segs)}"),
        dispatch,
        lambda conn, ev: log.append(f"record {ev.new}"),
    )
    assert log == [
        "record SYN-SENT", "transmit 1", "dispatch 2",  # round one
        "transmit 1", "dispatch 0",  # round two: what the handler produced
    ]  # fmt: skip


def test_a_bounded_drain_says_it_stopped_early() -> None:
    q = Queue()

    def again(events: Events) -> None:
        q.events.append((None, Connected()))

    q.events.append((None, Connected()))
    assert drain(q, None, again, max_rounds=5) is False


def test_a_host_drained_leaves_nothing_queued() -> None:
    h = Host(["198.18.0.2"])
    h.connect("198.18.0.1", 80, 0.0)
    sent: list[Segment] = []
    assert drain(h, sent.extend)
    assert [s.flags for s in sent] == [SYN] and not h.take_segments()
