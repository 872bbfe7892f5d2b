"""Helpers that read a Trace as (who, flags, seq, ack) and state-change rows."""

from __future__ import annotations

from finwait.tcp.state import State
from finwait.trace import DELIVERED, SegmentEvent, StateEvent, Trace
from finwait.wire.segment import FIN, format_flags

Row = tuple[str, ...]


def seg_row(trace: Trace, ev: SegmentEvent) -> Row:
    seq, ack = trace.relative(ev)
    return (f"{ev.src}>{ev.dst}", format_flags(ev.segment.flags), str(seq), str(ack))


def release_rows(trace: Trace) -> list[Row]:
    """Delivered segments and state changes from the first FIN's sender
    leaving ESTABLISHED (or the first FIN) to the end."""
    events = trace.events
    first_fin = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, SegmentEvent) and e.segment.flags & FIN and e.fate == DELIVERED
    )
    start = first_fin
    while start > 0 and isinstance(events[start - 1], StateEvent):
        start -= 1
    rows: list[Row] = []
    for e in events[start:]:
        if isinstance(e, StateEvent):
            rows.append((e.who, str(e.state)))
        elif e.fate == DELIVERED:
            rows.append(seg_row(trace, e))
    return rows


def states_of(trace: Trace, who: str) -> list[State]:
    return [e.state for e in trace.events if isinstance(e, StateEvent) and e.who == who]
