"""Hand-built Traces for the renderer tests: the seed's exchange and variants.

A (192.168.1.100:51234, ISN 1000) talks to B (119.75.218.70:80, ISN 5000):
handshake, A sends 247 bytes, B sends 49, then a release.  Relative numbers
therefore reproduce the seed's figure: B's FIN at 50 acknowledging 248, and
so on.  Every link takes ``RTT2`` seconds one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finwait.tcp.state import State
from finwait.trace import DELIVERED, LOST, Trace
from finwait.wire.segment import ACK, FIN, PSH, RST, SYN, Segment

A_ADDR, A_PORT, A_ISN = "192.168.1.100", 51234, 1000
B_ADDR, B_PORT, B_ISN = "119.75.218.70", 80, 5000
RTT2 = 0.010  # one-way delay, seconds


@dataclass
class Script:
    """Records segments and state changes with the sequence state of both
    sides, so each scenario reads as the exchange it is."""

    trace: Trace = field(default_factory=Trace)
    nxt: dict[str, int] = field(default_factory=lambda: {"A": A_ISN, "B": B_ISN})
    t: float = 0.0

    def __post_init__(self) -> None:
        self.trace.add_endpoint("A", A_ADDR, A_PORT, A_ISN)
        self.trace.add_endpoint("B", B_ADDR, B_PORT, B_ISN)

    def send(
        self,
        src: str,
        flags: int,
        data: bytes = b"",
        *,
        ack: int | None = None,
        seq: int | None = None,
        fate: str = DELIVERED,
        reason: str | None = None,
        at: float | None = None,
        advance: bool = True,
    ) -> None:
        """``src`` sends; seq defaults to its SND.NXT, ack to the peer's."""
        dst = "B" if src == "A" else "A"
        t = self.t if at is None else at
        s = self.nxt[src] if seq is None else seq
        a = (self.nxt[dst] if ack is None else ack) if flags & ACK else 0
        (sa, sp), (da, dp) = _addr(src), _addr(dst)
        seg = Segment(sa, da, sp, dp, s, a, flags, 64240, data)
        arrive = None if fate == LOST else t + RTT2
        self.trace.add_segment(t, seg, fate, reason, arrive)
        if seq is None:
            self.nxt[src] = (s + seg.seg_len) & 0xFFFFFFFF
        if advance:
            self.t = t + RTT2

    def state(self, who: str, state: State, at: float | None = None) -> None:
        self.trace.add_state(self.t if at is None else at, who, state)


def _addr(name: str) -> tuple[str, int]:
    return (A_ADDR, A_PORT) if name == "A" else (B_ADDR, B_PORT)


def opened() -> Script:
    """Handshake, then A sends 247 bytes and B answers with 49."""
    s = Script()
    s.state("A", State.SYN_SENT)
    s.send("A", SYN)
    s.state("B", State.SYN_RECEIVED)
    s.send("B", SYN | ACK)
    s.state("A", State.ESTABLISHED)
    s.send("A", ACK)
    s.state("B", State.ESTABLISHED)
    s.send("A", PSH | ACK, b"G" * 247)
    s.send("B", PSH | ACK, b"H" * 49)
    s.send("A", ACK)
    return s


def seed_release(half_close: int = 0) -> Script:
    """The seed's four-step release; A may send ``half_close`` bytes between
    its ACK and its FIN."""
    s = opened()
    s.state("B", State.FIN_WAIT_1)
    s.send("B", FIN | ACK)  # 50 / 248
    s.state("A", State.CLOSE_WAIT)
    s.send("A", ACK)  # 248 / 51
    s.state("B", State.FIN_WAIT_2)
    if half_close:
        s.send("A", PSH | ACK, b"D" * half_close)
        s.send("B", ACK)
    s.state("A", State.LAST_ACK)
    s.send("A", FIN | ACK)  # 248+N / 51
    s.state("B", State.TIME_WAIT)
    s.send("B", ACK)  # 51 / 249+N
    s.state("A", State.CLOSED)
    s.state("B", State.CLOSED, at=s.t + 60.0)
    return s


def three_way() -> Script:
    """Linux's three-segment close: A's FIN carries the ACK of B's FIN."""
    s = opened()
    s.state("B", State.FIN_WAIT_1)
    s.send("B", FIN | ACK)
    s.state("A", State.CLOSE_WAIT)
    s.state("A", State.LAST_ACK)
    s.send("A", FIN | ACK)
    s.state("B", State.TIME_WAIT)
    s.send("B", ACK)
    s.state("A", State.CLOSED)
    return s


def simultaneous() -> Script:
    """Both close at once; the FINs cross and both pass through CLOSING."""
    s = opened()
    t = s.t
    s.state("A", State.FIN_WAIT_1, at=t)
    s.state("B", State.FIN_WAIT_1, at=t)
    s.send("B", FIN | ACK, at=t, advance=False)  # 50 / 248
    s.send("A", FIN | ACK, at=t, ack=B_ISN + 50)  # 248 / 50: B's FIN not yet here
    s.state("A", State.CLOSING)
    s.state("B", State.CLOSING)
    s.send("A", ACK, advance=False)  # 249 / 51
    s.send("B", ACK)  # 51 / 249
    s.state("A", State.TIME_WAIT)
    s.state("B", State.TIME_WAIT)
    return s


def reset() -> Script:
    """A aborts with RST instead of closing."""
    s = opened()
    s.send("A", RST | ACK)
    s.state("A", State.CLOSED, at=s.t - RTT2)
    s.state("B", State.CLOSED)
    return s


def bare_fin() -> Script:
    """A sends FIN without ACK (ignored), later closes properly."""
    s = opened()
    s.send("A", FIN, fate="dropped", reason="fin without ack", seq=A_ISN + 248)
    return s


def lost_fin() -> Script:
    """B's FIN is lost and retransmitted; the rest as the seed."""
    s = opened()
    s.state("B", State.FIN_WAIT_1)
    s.send("B", FIN | ACK, fate=LOST)
    s.t += 0.2
    s.send("B", FIN | ACK, seq=B_ISN + 50)  # retransmission: same seq
    s.state("A", State.CLOSE_WAIT)
    s.send("A", ACK)
    s.state("B", State.FIN_WAIT_2)
    return s


def long_trace(n: int = 400, mss: int = 1000) -> Script:
    """A uploads ``n`` segments of ``mss`` bytes, then the seed's release."""
    s = Script()
    s.state("A", State.SYN_SENT)
    s.send("A", SYN)
    s.state("B", State.SYN_RECEIVED)
    s.send("B", SYN | ACK)
    s.state("A", State.ESTABLISHED)
    s.send("A", ACK)
    s.state("B", State.ESTABLISHED)
    for i in range(n):
        s.send("A", ACK, b"x" * mss, advance=False)
        s.t += 0.0001
        if i % 2:
            s.send("B", ACK, advance=False)
    s.t += RTT2
    s.state("B", State.FIN_WAIT_1)
    s.send("B", FIN | ACK)
    s.state("A", State.CLOSE_WAIT)
    s.send("A", ACK)
    s.state("A", State.LAST_ACK)
    s.send("A", FIN | ACK)
    s.state("B", State.TIME_WAIT)
    s.send("B", ACK)
    s.state("A", State.CLOSED)
    return s
