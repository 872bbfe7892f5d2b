"""The simulated network: nodes, links, the virtual clock and the one drive loop.

Nodes are sans-IO TCP hosts (``finwait.host.Host``, or anything with the same
six methods, see :class:`Node`), attached by their addresses; between two nodes
there is one :class:`~finwait.sim.link.Link` per direction.  After every input
to a node (a segment or damaged packet arriving, a timer, a user call) the
network drains the node's segments and events and re-arms its timer from
``next_deadline()`` (the one drain loop, ``finwait.drive``), so nothing queued
is ever left unsent.  Every segment put on a link is recorded in a
:class:`~finwait.trace.Trace` with its fate (delivered, lost on the link, or
dropped by the receiver with a reason), and every ``StateChanged`` event as a
state change.  Corrupted segments travel as IP bytes and are delivered through
``receive_packet``, where the receiver's checksum (RFC 9293 §3.1, RFC 1071)
rejects them.  Everything random comes from one seed, so a run is repeatable
byte for byte.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from ..drive import Events, drain
from ..tcp.events import Event, StateChanged
from ..tcp.verdict import Verdict
from ..trace import DELIVERED, DROPPED, LOST, SegmentEvent, Trace
from ..wire.errors import ParseError
from ..wire.segment import Segment
from .clock import EventQueue, Handle
from .link import Delivery, Link, LinkConfig
from .rng import Rng

NO_ROUTE = "no route"


class Node(Protocol):
    """What the network needs of a node: the sans-IO ``Host`` interface."""

    @property
    def counters(self) -> Counter[str]: ...

    def receive(self, segment: Segment, now: float) -> Verdict | None: ...

    def receive_packet(self, packet: bytes, now: float) -> Any: ...

    def on_timer(self, now: float) -> Any: ...

    def next_deadline(self) -> float | None: ...

    def take_segments(self) -> list[Segment]: ...

    def take_events(self) -> list[tuple[Any, Event]]: ...


EventHandler = Callable[[Any, Event, float], None]
"""Called with ``(connection, event, now)`` for every event a node emits."""


class SimulationError(RuntimeError):
    """The run exceeded its event budget: some node keeps rescheduling itself."""


@dataclass(slots=True)
class _Attached:
    name: str
    node: Node
    on_event: EventHandler | None
    timer: Handle | None = None
    timer_at: float | None = None


class Network:
    """Nodes joined by links on one virtual clock; see the module docstring."""

    def __init__(
        self, rng: Rng, trace: Trace | None = None, *, max_events: int = 5_000_000
    ) -> None:
        self.rng = rng
        self.trace = trace if trace is not None else Trace()
        self.queue = EventQueue()
        self.max_events = max_events
        self._nodes: dict[str, _Attached] = {}
        self._owner: dict[str, str] = {}  # address -> node name
        self._links: dict[tuple[str, str], Link] = {}

    # -- building ---------------------------------------------------------

    @property
    def now(self) -> float:
        return self.queue.now

    def add_node(
        self,
        name: str,
        node: Node,
        addresses: list[str] | tuple[str, ...],
        on_event: EventHandler | None = None,
    ) -> None:
        if name in self._nodes:
            raise ValueError(f"node {name!r} already attached")
        for addr in addresses:
            if addr in self._owner:
                raise ValueError(f"address {addr} already belongs to {self._owner[addr]!r}")
            self._owner[addr] = name
        self._nodes[name] = _Attached(name, node, on_event)

    def set_handler(self, name: str, on_event: EventHandler | None) -> None:
        self._nodes[name].on_event = on_event

    def connect(self, a: str, b: str, ab: LinkConfig, ba: LinkConfig | None = None) -> None:
        """A link each way between nodes ``a`` and ``b`` (``ba`` defaults to ``ab``)."""
        for x in (a, b):
            if x not in self._nodes:
                raise ValueError(f"unknown node {x!r}")
        self._links[(a, b)] = Link(ab, self.rng.derive(f"link {a}>{b}"))
        self._links[(b, a)] = Link(ba if ba is not None else ab, self.rng.derive(f"link {b}>{a}"))

    def link(self, a: str, b: str) -> Link:
        return self._links[(a, b)]

    # -- inputs -----------------------------------------------------------

    def call(self, name: str, at: float, action: Callable[[float], object]) -> Handle:
        """Run a user action on node ``name`` at ``at`` (e.g. ``close``), then drive it."""
        st = self._nodes[name]

        def run(now: float) -> None:
            action(now)
            self._drive(st, now)

        return self.queue.schedule(at, run)

    def inject(self, segment: Segment, at: float) -> None:
        """A third party (an attacker next to the receiver) puts ``segment``
        straight onto the receiver's wire at ``at``; no link, no loss."""
        dst = self._owner.get(segment.dst)

        def run(now: float) -> None:
            if dst is None:
                self.trace.add_segment(now, segment, LOST, NO_ROUTE)
                return
            index = len(self.trace.events)
            self.trace.add_segment(now, segment, DELIVERED, None, now)
            self._deliver(self._nodes[dst], segment, index, now)

        self.queue.schedule(at, run)

    def run(
        self,
        until: float | None = None,
        *,
        progress: Callable[[float], None] | None = None,
        every: int = 2048,
    ) -> float:
        """Run until no event remains (every timer, TIME-WAIT included, has
        expired) or until simulated time ``until``; returns the time reached.
        ``progress(now)`` is called every ``every`` events (a display's hook:
        the simulation itself reads no clock)."""
        q = self.queue
        budget = q.processed + self.max_events
        next_report = q.processed + every
        while True:
            if progress is not None and q.processed >= next_report:
                next_report = q.processed + every
                progress(q.now)
            t = q.next_time()
            if t is None or (until is not None and t > until):
                break
            if q.processed >= budget:
                raise SimulationError(
                    f"more than {self.max_events} events by t={t:.6f}s: a node keeps "
                    "rescheduling itself without progress"
                )
            q.step()
        return q.now

    def kick(self, name: str) -> None:
        """Drive node ``name`` now: after the caller gave it input directly."""
        self._drive(self._nodes[name], self.now)

    # -- the drive loop ---------------------------------------------------

    def _drive(self, st: _Attached, now: float) -> None:
        """Drain the node (finwait.drive: state changes recorded, then the
        segments on the links, then the events to the application), then
        re-arm its timer."""
        name = st.name
        trace = self.trace

        def record(conn: Any, ev: StateChanged) -> None:
            trace.add_state(ev.time, name, ev.new)

        def transmit(segments: list[Segment]) -> None:
            for seg in segments:
                self._transmit(name, seg, now)

        def dispatch(events: Events) -> None:
            on_event = st.on_event
            if on_event is not None:
                for conn, ev in events:
                    on_event(conn, ev, now)

        drain(st.node, transmit, dispatch, record)
        self._arm(st)

    def _arm(self, st: _Attached) -> None:
        deadline = st.node.next_deadline()
        if deadline == st.timer_at:
            return
        if st.timer is not None:
            st.timer.cancel()
        st.timer_at = deadline
        st.timer = None
        if deadline is not None:
            st.timer = self.queue.schedule(deadline, lambda now: self._fire(st, now))

    def _fire(self, st: _Attached, now: float) -> None:
        st.timer = None
        st.timer_at = None
        st.node.on_timer(now)
        self._drive(st, now)

    # -- links ------------------------------------------------------------

    def _transmit(self, src: str, seg: Segment, now: float) -> None:
        dst = self._owner.get(seg.dst)
        link = self._links.get((src, dst)) if dst is not None else None
        if dst is None or link is None:
            self.trace.add_segment(now, seg, LOST, NO_ROUTE)
            return
        target = self._nodes[dst]
        for d in link.transmit(seg, now):
            if d.arrive is None:
                self.trace.add_segment(now, seg, LOST, d.reason)
            elif d.corrupt:
                self._transmit_damaged(link, target, seg, d, now)
            else:
                index = len(self.trace.events)
                self.trace.add_segment(now, seg, DELIVERED, None, d.arrive)
                self.queue.schedule(d.arrive, partial(self._deliver, target, seg, index))

    def _transmit_damaged(
        self, link: Link, target: _Attached, seg: Segment, d: Delivery, now: float
    ) -> None:
        # Imported here: only corruption needs the IP codec.
        from ..wire.ip import decode_packet, encode_packet

        packet = encode_packet(seg)
        # Flip a bit past the IP header, so never in the addresses: the packet
        # still reaches its host, whose TCP checksum must catch it.
        ip_header = 40 if packet[0] >> 4 == 6 else (packet[0] & 0x0F) * 4
        damaged = link.flip_bit(packet, ip_header)
        fate, reason = DELIVERED, None
        try:
            decode_packet(damaged)
        except ParseError as err:
            fate, reason = DROPPED, err.reason
        assert d.arrive is not None
        self.trace.add_segment(now, seg, fate, reason, d.arrive)
        self.queue.schedule(d.arrive, lambda t: self._deliver_packet(target, damaged, t))

    def _deliver(self, st: _Attached, seg: Segment, index: int, now: float) -> None:
        # The receiver's verdict (tcp/verdict.py) gives the segment's fate: a
        # discarded segment is re-recorded as dropped, with the reason.
        verdict = st.node.receive(seg, now)
        if verdict is not None and verdict.dropped:
            ev = self.trace.events[index]
            if isinstance(ev, SegmentEvent):
                self.trace.events[index] = replace(ev, fate=DROPPED, reason=verdict.reason)
        self._drive(st, now)

    def _deliver_packet(self, st: _Attached, packet: bytes, now: float) -> None:
        st.node.receive_packet(packet, now)
        self._drive(st, now)
