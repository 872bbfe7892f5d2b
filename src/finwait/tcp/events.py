"""What the engine tells its user: plain values, drained with
``Connection.take_events()`` after every input.

Treat them as immutable.  They are slotted dataclasses but not frozen: a
frozen dataclass's ``__init__`` sets each field through
``object.__setattr__``, which doubles the cost of making one, and a short
connection makes two dozen (a ``StateChanged`` per transition on each side,
a ``DataReceived`` per in-order segment).  The events without fields are
made once (``CONNECTED``, ``END_OF_STREAM``, ``CLOSE_ACKNOWLEDGED``,
``CLOSED``): any two are equal anyway.  ``unsafe_hash`` keeps them
hashable by value, as frozen ones were."""

from __future__ import annotations

from dataclasses import dataclass

from .state import State


@dataclass(slots=True, unsafe_hash=True)
class Event:
    pass


@dataclass(slots=True, unsafe_hash=True)
class Connected(Event):
    """The handshake completed: ESTABLISHED."""


@dataclass(slots=True, unsafe_hash=True)
class DataReceived(Event):
    """``length`` new in-order bytes are ready for ``Connection.recv()``."""

    length: int


@dataclass(slots=True, unsafe_hash=True)
class EndOfStream(Event):
    """The peer's FIN: it will send nothing more (after all data before it)."""


@dataclass(slots=True, unsafe_hash=True)
class SendAcknowledged(Event):
    """The peer acknowledged ``length`` more bytes of our stream (§3.10.7.4 fifth)."""

    length: int


@dataclass(slots=True, unsafe_hash=True)
class CloseAcknowledged(Event):
    """Our FIN was acknowledged: the user's CLOSE completed ("ok", SA-4.7)."""


@dataclass(slots=True, unsafe_hash=True)
class Closed(Event):
    """An orderly release finished; the TCB is gone (CLOSED)."""


@dataclass(slots=True, unsafe_hash=True)
class Reset(Event):
    """The connection was reset.  ``refused``: a RST answered our SYN."""

    refused: bool = False
    local: bool = False  # we aborted (ABORT or close with unread data)


@dataclass(slots=True, unsafe_hash=True)
class TimedOut(Event):
    """Retransmissions (or a user timeout) gave up; the TCB is gone."""

    state: State


@dataclass(slots=True, unsafe_hash=True)
class StateChanged(Event):
    old: State
    new: State
    time: float


CONNECTED = Connected()
END_OF_STREAM = EndOfStream()
CLOSE_ACKNOWLEDGED = CloseAcknowledged()
CLOSED = Closed()
