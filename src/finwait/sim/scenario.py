"""Two-host scenarios: the applications on each side and the run that joins them.

A :class:`ScenarioSpec` says what a client (A) and a server (B) send, who
closes first (or both at once, RFC 9293 §3.6 Figure 13), whether somebody
aborts (RST, §3.10.5) and what the path between them does.  :func:`run_scenario`
builds two ``finwait.host.Host`` engines on a :class:`~finwait.sim.network.Network`,
plays the applications (send everything respecting the send buffer, read
everything, close; the passive side answers EOF with its half-close bytes,
§3.6's half-close, then closes) and runs the clock until every timer, the
closer's 2×MSL TIME-WAIT included, has expired.  The default release is the
seed's four-step form: the passive side waits ``close_delay`` after EOF, so
its delayed ACK of the FIN (Linux's "pingpong" delayed ACK) goes out alone;
``prompt_close`` closes at once and gives the three-segment close.  The result
is the Trace and a summary that says whether each stream arrived byte-exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..host import Host
from ..tcp.config import Config
from ..tcp.connection import Connection
from ..tcp.events import (
    Closed,
    Connected,
    DataReceived,
    EndOfStream,
    Event,
    Reset,
    SendAcknowledged,
    TimedOut,
)
from ..tcp.state import State
from ..trace import StateEvent, Trace
from ..wire.segment import FIN, Segment
from .link import LinkConfig
from .network import Network
from .rng import Rng

Role = Literal["client", "server"]
Hook = Callable[["_App", float], None]
CLOSERS = ("client", "server", "both")
# CLOSE is a half-close only where our direction is still open (§3.10.4).
_CAN_CLOSE = frozenset({State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT})
ABORTERS = ("client", "server")


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """One two-host exchange.  A is the client, B the server.

    ``half_close_bytes`` are sent by the passive closer after it sees the
    active closer's FIN.  ``request_response``: the server sends its bytes
    only once it has read all of the client's (a request and its response, as
    in the seed's exchange with a web server), and the closer closes once its
    data has been acknowledged, so its FIN travels alone.  ``half_close_delay`` is its think time before
    sending them, ``close_delay`` the time from having sent them to calling
    close().  ``bandwidth_mbps`` None means an infinitely fast link.
    """

    client_bytes: int = 247
    server_bytes: int = 49
    half_close_bytes: int = 0
    closer: str = "server"
    abort: str | None = None
    close_delay: float = 0.2
    half_close_delay: float = 0.0
    prompt_close: bool = False
    request_response: bool = False
    bare_fin: bool = False
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay_ms: float = 10.0
    bandwidth_mbps: float | None = None
    queue_bytes: int | None = None
    seed: int = 1
    client_addr: str = "198.18.0.1"
    server_addr: str = "198.18.0.2"
    client_port: int | None = None
    server_port: int = 80
    client_name: str = "A"
    server_name: str = "B"
    mss: int = 1460
    msl: float = 30.0
    sack: bool = True  # RFC 2018 SACK-permitted offered by both hosts
    timestamps: bool = True  # RFC 7323 §3
    window_scaling: bool = True  # RFC 7323 §2
    delayed_ack: bool = True  # RFC 1122 §4.2.3.2
    header_prediction: bool = True  # Config.header_prediction (the differential test turns it off)
    recv_buffer: int = 262_144  # each host's receive buffer (Config.recv_buffer)
    linux_profile: bool = False  # Config.linux(): quick ACKs, initial window of ten

    def __post_init__(self) -> None:
        for name in ("client_bytes", "server_bytes", "half_close_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.closer not in CLOSERS:
            raise ValueError(f"closer must be one of {', '.join(CLOSERS)}, not {self.closer!r}")
        if self.abort is not None and self.abort not in ABORTERS:
            raise ValueError(f"abort must be one of {', '.join(ABORTERS)}, not {self.abort!r}")
        if self.closer == "both" and self.half_close_bytes:
            raise ValueError("half_close_bytes needs a passive closer; closer 'both' has none")
        if self.close_delay < 0 or self.half_close_delay < 0:
            raise ValueError("close delays must not be negative")
        if self.delay_ms < 0:
            raise ValueError("delay_ms must not be negative")
        if not 1 <= self.server_port <= 65535:
            raise ValueError(f"server_port {self.server_port} is not a port")
        if self.client_port is not None and not 1 <= self.client_port <= 65535:
            raise ValueError(f"client_port {self.client_port} is not a port")
        if self.client_name == self.server_name:
            raise ValueError("the two hosts need different names")
        if self.mss < 64:
            raise ValueError(f"mss {self.mss} is too small (at least 64)")
        if self.msl <= 0:
            raise ValueError("msl must be positive")
        if self.recv_buffer < 1:
            raise ValueError("recv_buffer must be positive")
        # Probabilities, bandwidth and queue are checked by LinkConfig.
        self.link_config()

    def link_config(self) -> LinkConfig:
        bw = self.bandwidth_mbps
        return LinkConfig(
            delay=self.delay_ms / 1000.0,
            bandwidth=bw * 1e6 if bw is not None else None,
            queue_bytes=self.queue_bytes,
            loss=self.loss,
            dup=self.dup,
            reorder=self.reorder,
            corrupt=self.corrupt,
        )


@dataclass(slots=True)
class _App:
    """One side's application: sends its bytes, reads everything, closes."""

    role: Role
    name: str
    host: Host
    net: Network
    spec: ScenarioSpec
    data: bytes
    half: bytes
    peer_pre_close: int  # bytes the peer sends before the release starts
    conn: Connection | None = None
    started: bool = False
    outgoing: memoryview = field(default_factory=lambda: memoryview(b""))
    pos: int = 0
    sent: int = 0
    received: int = 0
    sent_hash: Any = field(default_factory=hashlib.sha256)
    received_hash: Any = field(default_factory=hashlib.sha256)
    phase: str = "data"  # data -> closing (closer waits) / half (passive) -> done
    peer_eof: bool = False
    outcome: str = "never connected"
    on_connected: list[Hook] = field(default_factory=list)
    on_progress: list[Hook] = field(default_factory=list)

    @property
    def is_closer(self) -> bool:
        return self.spec.closer in (self.role, "both")

    @property
    def satisfied(self) -> bool:
        """Sent everything before the release and read all the peer's bytes."""
        return (
            self.started
            and self.phase == "data"
            and not self.awaiting_request
            and self.pos == len(self.outgoing)
            and self.received >= self.peer_pre_close
            and not (self.spec.request_response and self.conn is not None and self.conn.unacked)
        )

    @property
    def awaiting_request(self) -> bool:
        """A request/response server that has not yet read the whole request."""
        return (
            self.spec.request_response
            and self.role == "server"
            and self.received < self.peer_pre_close
        )

    def handle(self, conn: Connection, ev: Event, now: float) -> None:
        if isinstance(ev, Connected):
            if not self.started:
                self.started = True
                self.outcome = "open"
                self.conn = conn
                if not self.awaiting_request:
                    self.outgoing = memoryview(self.data)
                for hook in self.on_connected:
                    hook(self, now)
            self.pump(now)
        elif conn is not self.conn:
            return
        elif isinstance(ev, DataReceived):
            chunk = conn.recv(-1, now)
            waiting = self.awaiting_request
            self.received += len(chunk)
            self.received_hash.update(chunk)
            if waiting and not self.awaiting_request:
                self.outgoing = memoryview(self.data)  # the request is in: respond
                self.pump(now)
        elif isinstance(ev, SendAcknowledged):
            self.pump(now)
        elif isinstance(ev, EndOfStream):
            self.peer_eof = True
            if not self.is_closer and self.phase == "data":
                self.phase = "half"
                self.net.call(self.name, now + self.spec.half_close_delay, self._start_half)
        elif isinstance(ev, Closed):
            self.outcome = "closed"
        elif isinstance(ev, Reset):
            self.outcome = "aborted" if ev.local else "reset"
        elif isinstance(ev, TimedOut):
            self.outcome = f"timed out in {ev.state}"
        for hook in self.on_progress:
            hook(self, now)

    def pump(self, now: float) -> None:
        """Hand TCP as much of the outgoing bytes as its send buffer takes."""
        conn = self.conn
        if conn is None or not conn.state.can_send:
            return
        while self.pos < len(self.outgoing):
            room = conn.send_space
            if room <= 0:
                break
            chunk = bytes(self.outgoing[self.pos : self.pos + room])
            n = conn.send(chunk, now)
            if n <= 0:
                break
            self.sent_hash.update(chunk[:n])
            self.sent += n
            self.pos += n
        if self.phase == "half" and self.pos == len(self.outgoing):
            self.phase = "done"
            delay = 0.0 if self.spec.prompt_close else self.spec.close_delay
            self.net.call(self.name, now + delay, self.finish)

    def _start_half(self, now: float) -> None:
        self.outgoing = memoryview(self.half)
        self.pos = 0
        self.pump(now)

    def finish(self, now: float) -> None:
        """close(), or abort() when this side is the scenario's aborter."""
        self.phase = "done"
        conn = self.conn
        # A reset may have ended the connection while this call was pending.
        if conn is None or conn.state is State.CLOSED:
            return
        if self.spec.abort == self.role:
            conn.abort(now)
        elif conn.state in _CAN_CLOSE:
            conn.close(now)

    def summary(self) -> dict[str, Any]:
        return {
            "planned_bytes": len(self.data) + len(self.half),
            "sent_bytes": self.sent,
            "received_bytes": self.received,
            "sent_sha256": self.sent_hash.hexdigest(),
            "received_sha256": self.received_hash.hexdigest(),
            "final_state": str(self.conn.state) if self.conn is not None else "CLOSED",
            "outcome": self.outcome,
        }


@dataclass(slots=True)
class ScenarioResult:
    spec: ScenarioSpec
    trace: Trace
    summary: dict[str, Any]
    network: Network
    hosts: dict[str, Host]
    end_time: float


def build_hosts(spec: ScenarioSpec, rng: Rng) -> tuple[Host, Host]:
    config = (Config.linux if spec.linux_profile else Config)(
        mss=spec.mss,
        msl=spec.msl,
        sack_permitted=spec.sack,
        timestamps=spec.timestamps,
        window_scaling=spec.window_scaling,
        delayed_ack=spec.delayed_ack,
        header_prediction=spec.header_prediction,
        recv_buffer=spec.recv_buffer,
    )
    # RFC 6528's secret comes from the run's seed: same seed, same ISNs.
    client = Host(
        [spec.client_addr],
        config,
        isn_key=rng.derive(f"isn {spec.client_name}").randbytes(16),
        name=spec.client_name,
    )
    server = Host(
        [spec.server_addr],
        config,
        isn_key=rng.derive(f"isn {spec.server_name}").randbytes(16),
        name=spec.server_name,
    )
    return client, server


def run_scenario(
    spec: ScenarioSpec,
    *,
    until: float | None = None,
    progress: Callable[[float, int, int], None] | None = None,
) -> ScenarioResult:
    """Play ``spec`` to the end (or to simulated time ``until``).

    ``progress(now, delivered, planned)`` is called now and then during the
    run: simulated seconds, bytes the applications have received so far, and
    the bytes the scenario means to deliver."""
    rng = Rng(spec.seed)
    trace = Trace()
    net = Network(rng.derive("network"), trace)
    client_host, server_host = build_hosts(spec, rng)
    a_name, b_name = spec.client_name, spec.server_name
    payload = rng.derive("payload")
    a = _App(
        "client", a_name, client_host, net, spec,
        data=payload.derive("client").randbytes(spec.client_bytes),
        half=payload.derive("client half").randbytes(
            spec.half_close_bytes if spec.closer == "server" else 0
        ),
        peer_pre_close=spec.server_bytes,
    )  # fmt: skip
    b = _App(
        "server", b_name, server_host, net, spec,
        data=payload.derive("server").randbytes(spec.server_bytes),
        half=payload.derive("server half").randbytes(
            spec.half_close_bytes if spec.closer == "client" else 0
        ),
        peer_pre_close=spec.client_bytes,
    )  # fmt: skip
    apps = {a_name: a, b_name: b}

    net.add_node(a_name, client_host, [spec.client_addr], a.handle)
    net.add_node(b_name, server_host, [spec.server_addr])
    net.connect(a_name, b_name, spec.link_config())
    trace.add_endpoint(b_name, spec.server_addr, spec.server_port)
    listener = server_host.listen(spec.server_port)
    # B listens from the start; the connection the SYN creates begins in
    # LISTEN too, but that is not B *entering* LISTEN (dropped below).
    trace.add_state(0.0, b_name, State.LISTEN)

    def server_event(conn: Connection, ev: Event, now: float) -> None:
        if isinstance(ev, Connected) and b.conn is None:
            accepted = listener.accept()
            conn = accepted if accepted is not None else conn
            trace.endpoints[b_name].isn = conn.iss
        b.handle(conn, ev, now)

    net.set_handler(b_name, server_event)

    def closer_ready(app: _App, now: float) -> None:
        if spec.closer == "both":
            if a.satisfied and b.satisfied:
                for side in (a, b):
                    side.phase = "closing"
                    net.call(side.name, now, side.finish)
        elif app.is_closer and app.satisfied:
            app.phase = "closing"
            net.call(app.name, now, app.finish)

    for app in apps.values():
        app.on_progress.append(closer_ready)

    if spec.bare_fin:
        a.on_connected.append(lambda app, now: _inject_bare_fin(net, spec, app, now))

    def open_connection(now: float) -> None:
        kwargs: dict[str, Any] = {}
        if spec.client_port is not None:
            kwargs["sport"] = spec.client_port
        conn = client_host.connect(spec.server_addr, spec.server_port, now, **kwargs)
        a.conn = conn
        trace.add_endpoint(a_name, spec.client_addr, conn.local[1], conn.iss)

    net.call(a_name, 0.0, open_connection)
    report = None
    if progress is not None:
        planned = spec.client_bytes + spec.server_bytes + spec.half_close_bytes
        sink = progress

        def report(now: float) -> None:
            sink(now, a.received + b.received, planned)

    end = net.run(until, progress=report)
    trace.events = [
        ev
        for ev in trace.events
        if not (isinstance(ev, StateEvent) and ev.state is State.LISTEN and ev.t > 0.0)
    ]
    summary: dict[str, Any] = {name: app.summary() for name, app in apps.items()}
    summary["counters"] = {
        a_name: dict(sorted(client_host.counters.items())),
        b_name: dict(sorted(server_host.counters.items())),
    }
    return ScenarioResult(
        spec, trace, summary, net, {a_name: client_host, b_name: server_host}, end
    )


def _inject_bare_fin(net: Network, spec: ScenarioSpec, victim: _App, now: float) -> None:
    """The seed's malicious packet: <SEQ=RCV.NXT><CTL=FIN>, no ACK, spoofed
    from the peer, injected right after the handshake (RFC 9293 §3.10.7.4
    fifth: dropped in a synchronized state; counted by the host)."""
    conn = victim.conn
    assert conn is not None
    rcv_nxt = (conn.irs + 1 + victim.received) & 0xFFFFFFFF
    local_addr, local_port = conn.local
    remote_addr, remote_port = conn.remote
    seg = Segment(remote_addr, local_addr, remote_port, local_port, rcv_nxt, 0, FIN, 65535)
    net.inject(seg, at=now)
