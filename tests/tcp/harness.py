"""Packet-exchange harness: a scripted peer facing one engine Host.

Tests read as the packets on the wire: ``x.deliver(seq=50, ack=248,
flags=FIN | ACK)`` is the peer sending, ``x.expect(ACK, seq=248, ack=51)`` is
the engine's answer, ``x.expect_nothing()`` asserts silence, and
``x.advance(0.5)`` moves the manual clock and fires the engine's timers.
ISNs are pinned (engine ISS and peer ISS default to 0) so sequence numbers
read as relative numbers, like the seed.  Fixtures reach each state by
driving real packets, never by poking fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finwait.drive import Events, drain
from finwait.host import Host, Listener
from finwait.tcp import seqnum
from finwait.tcp.config import Config
from finwait.tcp.connection import Connection
from finwait.tcp.events import Event, StateChanged
from finwait.tcp.state import State
from finwait.wire.segment import ACK, FIN, NO_OPTIONS, PSH, SYN, Segment, TcpOptions, format_flags

E_ADDR, E_PORT = "198.18.0.2", 80
P_ADDR, P_PORT = "198.18.0.1", 40000

# When a list, every state transition any Exchange sees is appended to it
# (test_statemachine checks them against the RFC diagram).
RECORDER: list[tuple[State, State]] | None = None

# The peer offers no options by default: MSS falls back to 536 (RFC 9293
# §3.7.1), no window scaling, no timestamps — numbers stay readable.
TEST_CONFIG = Config(delayed_ack=False)


@dataclass
class Exchange:
    config: Config = TEST_CONFIG
    engine_iss: int = 0
    peer_iss: int = 0
    now: float = 0.0
    host: Host = field(init=False)
    conn: Connection | None = None
    listener: Listener | None = None
    events: list[Event] = field(default_factory=list)
    sent: list[Segment] = field(default_factory=list)

    def __post_init__(self) -> None:
        iss = self.engine_iss
        self.host = Host([E_ADDR], self.config, isn_source=lambda *a: iss)

    # -- the peer's side -------------------------------------------------

    def seg(
        self,
        seq: int,
        ack: int = 0,
        flags: int = ACK,
        payload: bytes = b"",
        window: int = 65535,
        options: TcpOptions = NO_OPTIONS,
        sport: int = P_PORT,
        dport: int = E_PORT,
    ) -> Segment:
        return Segment(
            P_ADDR,
            E_ADDR,
            sport,
            dport,
            seq & seqnum.MASK,
            ack & seqnum.MASK,
            flags,
            window,
            payload,
            options,
        )

    def deliver(self, seg: Segment | None = None, **kw: object) -> None:
        if seg is None:
            seg = self.seg(**kw)  # type: ignore[arg-type]
        self.host.receive(seg, self.now)
        self._collect()

    def advance(self, dt: float) -> None:
        """Move the clock by ``dt``, firing every deadline on the way in order."""
        end = self.now + dt
        while True:
            d = self.host.next_deadline()
            if d is None or d > end:
                break
            self.now = max(self.now, d)
            self.host.on_timer(self.now)
            self._collect()
        self.now = end

    def _collect(self) -> None:
        """Drain the Host (finwait.drive), as every driver does."""

        def record(conn: Connection, ev: StateChanged) -> None:
            if RECORDER is not None:
                RECORDER.append((ev.old, ev.new))

        def dispatch(events: Events) -> None:
            for conn, ev in events:
                if self.conn is None or conn is self.conn:
                    self.events.append(ev)

        drain(self.host, self.sent.extend, dispatch, record)

    # -- assertions on what the engine sent -----------------------------

    def expect(
        self, flags: int, seq: int, ack: int | None = None, length: int = 0, **kw: object
    ) -> Segment:
        self._collect()
        assert self.sent, f"expected {format_flags(flags)} seq={seq}, engine sent nothing"
        s = self.sent.pop(0)
        got = (format_flags(s.flags), s.seq, s.ack if ack is not None else None, len(s.payload))
        want = (
            format_flags(flags),
            seq & seqnum.MASK,
            None if ack is None else ack & seqnum.MASK,
            length,
        )
        assert got == want, f"expected {want}, engine sent {got}: {s.describe()}"
        for name, value in kw.items():
            assert getattr(s, name) == value, f"{name}: {getattr(s, name)!r} != {value!r}"
        return s

    def take_segments_sent(self) -> list[Segment]:
        self._collect()
        out, self.sent = self.sent, []
        return out

    def expect_nothing(self) -> None:
        self._collect()
        assert not self.sent, "engine sent: " + "; ".join(s.describe() for s in self.sent)

    def take_events(self) -> list[Event]:
        self._collect()
        evs, self.events = self.events, []
        return evs

    def event_types(self) -> list[str]:
        return [type(e).__name__ for e in self.take_events() if type(e).__name__ != "StateChanged"]

    @property
    def state(self) -> State:
        assert self.conn is not None
        return self.conn.state

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.host.counters)

    # -- fixtures, driven by real packets --------------------------------

    def listen(self) -> None:
        self.listener = self.host.listen(E_PORT)

    def passive_open(self, peer_syn_options: TcpOptions = NO_OPTIONS, rtt: float = 0.0) -> None:
        """LISTEN, peer SYN, our SYN,ACK, peer ACK ``rtt`` later (the
        handshake's RTT sample): ESTABLISHED (passive)."""
        self.listen()
        p = self.peer_iss
        self.deliver(seq=p, flags=SYN, options=peer_syn_options)
        self.expect(SYN | ACK, seq=self.engine_iss, ack=p + 1)
        if rtt:
            self.advance(rtt)
        self.deliver(seq=p + 1, ack=self.engine_iss + 1)
        assert self.listener is not None
        self.conn = self.listener.accept()
        assert self.conn is not None and self.conn.state is State.ESTABLISHED
        self.take_events()

    def active_open(self) -> None:
        """Our SYN, peer SYN,ACK, our ACK: ESTABLISHED (active)."""
        self.conn = self.host.connect(P_ADDR, P_PORT, self.now, src=E_ADDR, sport=E_PORT)
        self.expect(SYN, seq=self.engine_iss)
        p = self.peer_iss
        self.deliver(seq=p, ack=self.engine_iss + 1, flags=SYN | ACK)
        self.expect(ACK, seq=self.engine_iss + 1, ack=p + 1)
        assert self.conn.state is State.ESTABLISHED
        self.take_events()

    def established(
        self, snd_nxt: int, rcv_nxt: int, peer_syn_options: TcpOptions = NO_OPTIONS
    ) -> None:
        """ESTABLISHED (passive) with SND.NXT and RCV.NXT reached by data:
        the engine sends ``snd_nxt - 1`` bytes and the peer ``rcv_nxt - 1``,
        all acknowledged (numbers relative to ISS = IRS = 0)."""
        self.passive_open(peer_syn_options)
        assert self.conn is not None
        e0, p0 = self.engine_iss, self.peer_iss
        n_in = rcv_nxt - 1
        if n_in:
            self.deliver(seq=p0 + 1, ack=e0 + 1, flags=PSH | ACK, payload=bytes(n_in))
            if self.config.delayed_ack:
                self.advance(self.config.delayed_ack_timeout)
            self.expect(ACK, seq=e0 + 1, ack=p0 + 1 + n_in)
            assert self.conn.recv() == bytes(n_in)
        n_out = snd_nxt - 1
        sent = 0
        while sent < n_out:
            if sent == 0:
                self.conn.send(bytes(n_out), self.now)
            self._collect()
            for s in list(self.sent):
                sent += len(s.payload)
            self.sent.clear()
            self.deliver(seq=p0 + rcv_nxt, ack=e0 + 1 + sent)
        self.expect_nothing()
        self.take_events()

    def close_first(self) -> None:
        """From ESTABLISHED: our CLOSE sends FIN,ACK; FIN-WAIT-1."""
        assert self.conn is not None
        c = self.conn
        self.conn.close(self.now)
        self.expect(FIN | ACK, seq=c.snd_max - 1, ack=c.rcv_nxt)
        assert self.state is State.FIN_WAIT_1
