"""TCP states and RFC 9293's state diagram as data (Figure 5, §3.3.2).

``TRANSITIONS`` is the one table of the diagram: the docs' state-machine SVG
is drawn from it and a test checks the engine against it (every transition
the engine makes must be in it, and every row is exercised by some test).
"""

from __future__ import annotations

import enum


# On Python 3.11 the enum metaclass has a ``__getattr__``, which makes every
# ``State.X`` on a class a slow lookup (~0.2 µs, ten times a global's cost,
# and the interpreter cannot specialise it); the engine's modules bind the
# members they use per segment to module names (``_ESTABLISHED = State.ESTABLISHED``).
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

    # Per-state facts, plain attributes set below: read on every segment, so
    # no property call and no frozenset lookup (Enum.__hash__ is Python code).
    synchronized: bool  # SYN-RECEIVED and later: the states of §3.10.7.4
    can_send: bool  # the user may still SEND (§3.10.2)
    can_receive_text: bool  # segment text is processed (§3.10.7.4, seventh)
    sending: bool  # queued data and our FIN are (re)transmitted

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls, name: str) -> State:
        return cls(name.upper().replace("_", "-"))


_UNSYNCHRONIZED = (State.CLOSED, State.LISTEN, State.SYN_SENT)
_CAN_SEND = (State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT)
_RECEIVES_TEXT = (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2)
_SENDING = (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)
for _s in State:
    _s.synchronized = _s not in _UNSYNCHRONIZED
    _s.can_send = _s in _CAN_SEND
    _s.can_receive_text = _s in _RECEIVES_TEXT
    _s.sending = _s in _SENDING

S = State
# (from, to, event as RFC 9293 Figure 5 labels it, action).
# Two choices, pinned by tests: a FIN,ACK that acknowledges our FIN in
# FIN-WAIT-1 is processed in the RFC's step order, so the state passes through
# FIN-WAIT-2 (step 5, ACK) to TIME-WAIT (step 8, FIN) within one input and the
# trace records both; and LISTEN -> SYN-SENT on SEND is not offered.  A
# listener is a Host object; each SYN gets its own TCB, which starts in
# LISTEN, and which returns to LISTEN and is deleted where the RFC sends a
# connection "back to LISTEN" (the listener itself carries on).
TRANSITIONS: tuple[tuple[State, State, str, str], ...] = (
    (S.CLOSED, S.LISTEN, "passive OPEN", "create TCB"),
    (S.CLOSED, S.SYN_SENT, "active OPEN", "snd SYN"),
    (S.LISTEN, S.SYN_RECEIVED, "rcv SYN", "snd SYN,ACK"),
    (S.LISTEN, S.CLOSED, "CLOSE / the clone returns to its listener", "delete TCB"),
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
