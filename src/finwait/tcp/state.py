"""TCP states and RFC 9293's state diagram as data (Figure 5, §3.3.2).

``TRANSITIONS`` is the one table of the diagram: the docs' state-machine SVG
is drawn from it and a test checks the engine against it (every transition
the engine makes must be in it, and every row is exercised by some test).
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __str__(self) -> str:
        return self.value

    @property
    def synchronized(self) -> bool:
        """SYN-RECEIVED and later: the states of RFC 9293 §3.10.7.4."""
        return self not in _UNSYNCHRONIZED

    @property
    def can_send(self) -> bool:
        """The user may still SEND (§3.10.2)."""
        return self in _CAN_SEND

    @property
    def can_receive_text(self) -> bool:
        """Segment text is processed (§3.10.7.4, seventh)."""
        return self in _RECEIVES_TEXT

    @classmethod
    def parse(cls, name: str) -> State:
        return cls(name.upper().replace("_", "-"))


_UNSYNCHRONIZED = frozenset({State.CLOSED, State.LISTEN, State.SYN_SENT})
_CAN_SEND = frozenset(
    {State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT}
)
_RECEIVES_TEXT = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})

S = State
# (from, to, event as RFC 9293 Figure 5 labels it, action).
# Two choices, pinned by tests: a FIN,ACK that acknowledges our FIN in
# FIN-WAIT-1 is processed in the RFC's step order, so the state passes through
# FIN-WAIT-2 (step 5, ACK) to TIME-WAIT (step 8, FIN) within one input and the
# trace records both; and LISTEN -> SYN-SENT on SEND is not offered.
TRANSITIONS: tuple[tuple[State, State, str, str], ...] = (
    (S.CLOSED, S.LISTEN, "passive OPEN", "create TCB"),
    (S.CLOSED, S.SYN_SENT, "active OPEN", "snd SYN"),
    (S.LISTEN, S.SYN_RECEIVED, "rcv SYN", "snd SYN,ACK"),
    (S.LISTEN, S.CLOSED, "CLOSE", "delete TCB"),
    (S.SYN_SENT, S.SYN_RECEIVED, "rcv SYN", "snd SYN,ACK"),
    (S.SYN_SENT, S.ESTABLISHED, "rcv SYN,ACK", "snd ACK"),
    (S.SYN_SENT, S.CLOSED, "CLOSE / rcv RST / timeout", "delete TCB"),
    (S.SYN_RECEIVED, S.ESTABLISHED, "rcv ACK of SYN", "x"),
    (S.SYN_RECEIVED, S.FIN_WAIT_1, "CLOSE", "snd FIN"),
    (S.SYN_RECEIVED, S.LISTEN, "rcv RST (passive)", "x"),
    (S.SYN_RECEIVED, S.CLOSED, "rcv RST (active) / timeout / ABORT", "delete TCB"),
    (S.ESTABLISHED, S.FIN_WAIT_1, "CLOSE", "snd FIN"),
    (S.ESTABLISHED, S.CLOSE_WAIT, "rcv FIN", "snd ACK"),
    (S.ESTABLISHED, S.CLOSED, "rcv RST / ABORT / timeout", "delete TCB"),
    (S.FIN_WAIT_1, S.FIN_WAIT_2, "rcv ACK of FIN", "x"),
    (S.FIN_WAIT_1, S.CLOSING, "rcv FIN", "snd ACK"),
    (S.FIN_WAIT_1, S.CLOSED, "rcv RST / ABORT / timeout", "delete TCB"),
    (S.FIN_WAIT_2, S.TIME_WAIT, "rcv FIN", "snd ACK"),
    (S.FIN_WAIT_2, S.CLOSED, "rcv RST / ABORT / FIN-WAIT-2 timeout", "delete TCB"),
    (S.CLOSE_WAIT, S.LAST_ACK, "CLOSE", "snd FIN"),
    (S.CLOSE_WAIT, S.CLOSED, "rcv RST / ABORT / timeout", "delete TCB"),
    (S.CLOSING, S.TIME_WAIT, "rcv ACK of FIN", "x"),
    (S.CLOSING, S.CLOSED, "rcv RST / ABORT / timeout", "delete TCB"),
    (S.LAST_ACK, S.CLOSED, "rcv ACK of FIN / rcv RST / ABORT / timeout", "delete TCB"),
    (S.TIME_WAIT, S.CLOSED, "timeout = 2MSL / ABORT", "delete TCB"),
)

ALLOWED: frozenset[tuple[State, State]] = frozenset((a, b) for a, b, _, _ in TRANSITIONS)
