"""The parsed form of a packetdrill-dialect script: plain frozen values.

A script is a list of options (``--name=value`` lines), an optional init and
cleanup shell command, and a list of events; each event has the line it was
written on, a time specification and one action: a TCP segment to inject
(``<``) or to expect (``>``), a socket call with its expected result, a shell
command, or a ``%{ }%`` code block (tcp_info assertions, ``tcpinfo.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


class ScriptError(Exception):
    """A script that cannot be parsed or run as written: one line, with the
    file and the script line (``file:line: message``)."""

    def __init__(self, message: str, line: int, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.path = path

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.path else f"line {self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """When an event happens.  ``kind``: ``abs`` (``0.1``), ``rel`` (``+0.1``,
    after the previous event) or ``any`` (``*``).  ``until`` is the upper
    bound of a range (``a~b``); ``block_end`` is when a blocking call must
    return (``a...b``: ``b`` counts from the same base as ``a``)."""

    kind: str
    start: float = 0.0
    until: float | None = None
    until_rel: bool = False
    block_end: float | None = None
    block_end_rel: bool = False


@dataclass(frozen=True, slots=True)
class Symbol:
    """A name in a socket call: ``SOCK_STREAM``, ``O_NONBLOCK``, ``POLLIN``."""

    name: str


@dataclass(frozen=True, slots=True)
class Ellipsis_:
    """``...``: an argument the script does not care about."""


@dataclass(frozen=True, slots=True)
class Array:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Struct:
    fields: tuple[tuple[str, Expr], ...]

    def get(self, name: str) -> Expr | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class BitOr:
    """``A|B``."""

    items: tuple[Expr, ...]


Expr = Union[int, str, Symbol, Ellipsis_, Array, Struct, BitOr, None]  # noqa: UP007


# TCP option as written: ("mss", 1460), ("wscale", 7), ("sackOK",), ("nop",),
# ("eol",), ("sack", ((left, right), ...)), ("TS", val, ecr).
Option = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Packet:
    """``<`` (inbound, injected) or ``>`` (outbound, expected) TCP segment."""

    direction: str
    flags: int
    flags_text: str
    start: int
    end: int
    ack: int | None = None
    win: int | None = None
    urg: int | None = None
    options: tuple[Option, ...] | None = ()  # None: "<...>", not checked

    @property
    def length(self) -> int:
        return (self.end - self.start) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str
    args: tuple[Expr, ...]
    ret: Expr
    errno: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A backquoted shell command (run only on the kernel target)."""

    text: str


@dataclass(frozen=True, slots=True)
class Code:
    """A ``%{ }%`` block: assertions on tcp_info (``tcpinfo.py``)."""

    text: str


Action = Union[Packet, Syscall, Command, Code]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class Event:
    line: int
    time: TimeSpec
    action: Action
    text: str  # the event as written, for reports


@dataclass(frozen=True, slots=True)
class Script:
    path: str
    options: tuple[tuple[str, str, int], ...]
    events: tuple[Event, ...]
    init_command: Command | None = None
    cleanup_command: Command | None = None
    init_line: int = 0

    def option(self, name: str, default: str | None = None) -> str | None:
        value = default
        for key, val, _ in self.options:
            if key == name:
                value = val
        return value
