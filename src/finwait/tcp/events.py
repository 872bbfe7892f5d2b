"""What the engine tells its user.  Plain frozen values; drained with
``Connection.take_events()`` after every input."""

from __future__ import annotations

from dataclasses import dataclass

from .state import State


@dataclass(frozen=True, slots=True)
class Event:
    pass


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The handshake completed: ESTABLISHED."""


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """``length`` new in-order bytes are ready for ``Connection.recv()``."""

    length: int


@dataclass(frozen=True, slots=True)
class EndOfStream(Event):
    """The peer's FIN: it will send nothing more (after all data before it)."""


@dataclass(frozen=True, slots=True)
class SendAcknowledged(Event):
    """The peer acknowledged ``length`` more bytes of our stream (§3.10.7.4 fifth)."""

    length: int


@dataclass(frozen=True, slots=True)
class CloseAcknowledged(Event):
    """Our FIN was acknowledged: the user's CLOSE completed ("ok", SA-4.7)."""


@dataclass(frozen=True, slots=True)
class Closed(Event):
    """An orderly release finished; the TCB is gone (CLOSED)."""


@dataclass(frozen=True, slots=True)
class Reset(Event):
    """The connection was reset.  ``refused``: a RST answered our SYN."""

    refused: bool = False
    local: bool = False  # we aborted (ABORT or close with unread data)


@dataclass(frozen=True, slots=True)
class TimedOut(Event):
    """Retransmissions (or a user timeout) gave up; the TCB is gone."""

    state: State


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    old: State
    new: State
    time: float
