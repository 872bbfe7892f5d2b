"""The one record of an exchange: endpoints and time-ordered events.

The simulator and the live stack record a Trace; the analyzer builds one per
connection from a capture; every renderer takes one.  Segments are stored
with raw sequence numbers; relative numbers (ISN = 0, first data byte = 1, as
Wireshark shows them) are derived here from each endpoint's ISN, never stored
twice.  ``to_json`` is the documented JSON form (docs/json.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .tcp.state import State
from .wire.segment import ACK, Segment, TcpOptions, flag_names, flags_from_names

DELIVERED = "delivered"
LOST = "lost"
DROPPED = "dropped"


@dataclass(slots=True)
class Endpoint:
    """One side: display name ("A"), address, port and ISN (None until known)."""

    name: str
    addr: str
    port: int
    isn: int | None = None


@dataclass(frozen=True, slots=True)
class SegmentEvent:
    """A segment sent by ``src`` to ``dst`` at ``t``.

    ``fate`` is delivered, lost (on the link) or dropped (by the receiver, with
    a ``reason`` such as "bad checksum" or "fin without ack").  ``arrive`` is
    the arrival time where known (simulation), for slanted ladder arrows.
    """

    t: float
    src: str
    dst: str
    segment: Segment
    fate: str = DELIVERED
    reason: str | None = None
    arrive: float | None = None


@dataclass(frozen=True, slots=True)
class StateEvent:
    t: float
    who: str
    state: State


TraceEvent = SegmentEvent | StateEvent


@dataclass(slots=True)
class Trace:
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    events: list[TraceEvent] = field(default_factory=list)

    # -- recording -------------------------------------------------------

    def add_endpoint(self, name: str, addr: str, port: int, isn: int | None = None) -> Endpoint:
        ep = Endpoint(name, addr, port, isn)
        self.endpoints[name] = ep
        return ep

    def endpoint_for(self, addr: str, port: int) -> str | None:
        for name, ep in self.endpoints.items():
            if ep.addr == addr and ep.port == port:
                return name
        return None

    def add_segment(
        self,
        t: float,
        segment: Segment,
        fate: str = DELIVERED,
        reason: str | None = None,
        arrive: float | None = None,
    ) -> SegmentEvent:
        """Record a segment; its endpoints are found by address and port."""
        src = self.endpoint_for(segment.src, segment.sport) or f"{segment.src}:{segment.sport}"
        dst = self.endpoint_for(segment.dst, segment.dport) or f"{segment.dst}:{segment.dport}"
        ev = SegmentEvent(t, src, dst, segment, fate, reason, arrive)
        self.events.append(ev)
        return ev

    def add_state(self, t: float, who: str, state: State) -> None:
        self.events.append(StateEvent(t, who, state))

    # -- reading ---------------------------------------------------------

    def segments(self) -> Iterator[SegmentEvent]:
        return (e for e in self.events if isinstance(e, SegmentEvent))

    def isn(self, name: str) -> int:
        """The endpoint's ISN, or the first sequence number it was seen to
        send minus one (a capture that missed the SYN), or 0."""
        ep = self.endpoints.get(name)
        if ep is not None and ep.isn is not None:
            return ep.isn
        for ev in self.segments():
            if ev.src == name:
                return (ev.segment.seq - 1) & 0xFFFFFFFF
        return 0

    def relative(self, ev: SegmentEvent) -> tuple[int, int]:
        """(seq, ack) relative to the sender's and the receiver's ISN.  The
        ack is 0 when the ACK flag is off, as Wireshark shows it."""
        seg = ev.segment
        seq = (seg.seq - self.isn(ev.src)) & 0xFFFFFFFF
        ack = (seg.ack - self.isn(ev.dst)) & 0xFFFFFFFF if seg.flags & ACK else 0
        return seq, ack

    def final_states(self) -> dict[str, State]:
        out: dict[str, State] = {}
        for ev in self.events:
            if isinstance(ev, StateEvent):
                out[ev.who] = ev.state
        return out

    # -- JSON ------------------------------------------------------------

    def to_json(self, relative: bool = True) -> dict[str, Any]:
        """The documented JSON form (docs/json.md)."""
        isns = {name: self.isn(name) for name in self.endpoints}
        events: list[dict[str, Any]] = []
        for ev in self.events:
            if isinstance(ev, StateEvent):
                events.append(
                    {"t": _t(ev.t), "kind": "state", "who": ev.who, "state": str(ev.state)}
                )
                continue
            seg = ev.segment
            if relative and ev.src in isns:
                seq, ack = self.relative(ev)
            else:
                seq, ack = seg.seq, (seg.ack if seg.flags & ACK else 0)
            item: dict[str, Any] = {
                "t": _t(ev.t),
                "kind": "segment",
                "from": ev.src,
                "to": ev.dst,
                "flags": flag_names(seg.flags),
                "seq": seq,
                "ack": ack,
                "len": len(seg.payload),
                "win": seg.window,
                "fate": ev.fate,
                "reason": ev.reason,
            }
            if ev.arrive is not None:
                item["arrive"] = _t(ev.arrive)
            events.append(item)
        return {
            "endpoints": {
                name: {"name": name, "addr": ep.addr, "port": ep.port, "isn": ep.isn}
                for name, ep in self.endpoints.items()
            },
            "relative": relative,
            "events": events,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trace:
        """Rebuild a Trace from ``to_json`` output (relative or absolute).
        Payload bytes are not kept in JSON; lengths are restored as zeros."""
        tr = cls()
        for name, ep in data["endpoints"].items():
            tr.add_endpoint(name, ep["addr"], ep["port"], ep["isn"])
        rel = data.get("relative", True)
        for item in data["events"]:
            if item["kind"] == "state":
                tr.add_state(item["t"], item["who"], State(item["state"]))
                continue
            src, dst = tr.endpoints[item["from"]], tr.endpoints[item["to"]]
            seq, ack = item["seq"], item["ack"]
            if rel:
                seq = (seq + (src.isn or 0)) & 0xFFFFFFFF
                ack = (ack + (dst.isn or 0)) & 0xFFFFFFFF if "ACK" in item["flags"] else 0
            seg = Segment(
                src.addr,
                dst.addr,
                src.port,
                dst.port,
                seq,
                ack,
                flags_from_names(item["flags"]),
                item["win"],
                bytes(item["len"]),
                TcpOptions(),
            )
            tr.events.append(
                SegmentEvent(
                    item["t"],
                    item["from"],
                    item["to"],
                    seg,
                    item["fate"],
                    item.get("reason"),
                    item.get("arrive"),
                )
            )
        return tr


def _t(t: float) -> float:
    return round(t, 9)
