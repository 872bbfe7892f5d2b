"""The one value type for a TCP segment, shared by engine, analyzer and renderers.

A ``Segment`` is a plain immutable record: addresses, ports, the TCP header
fields, parsed options and payload.  Flags are a plain ``int`` bit set (the
constants below) rather than an ``enum.IntFlag``: bit tests on the engine's hot
path must cost one machine operation, not an enum construction.  Likewise the
record is a ``NamedTuple`` rather than a frozen dataclass, whose ``__init__``
costs a ``object.__setattr__`` per field (see docs/design.md).  Vary a template
with ``seg._replace(seq=...)``.

Sequence and acknowledgment numbers are raw 32-bit values; use
``finwait.tcp.seqnum`` to compare them.
"""

from __future__ import annotations

from typing import NamedTuple

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# Display order: the order Wireshark and the seed write them ("FIN, ACK").
_FLAG_ORDER: tuple[tuple[int, str], ...] = (
    (SYN, "SYN"),
    (FIN, "FIN"),
    (RST, "RST"),
    (PSH, "PSH"),
    (ACK, "ACK"),
    (URG, "URG"),
    (ECE, "ECE"),
    (CWR, "CWR"),
)
FLAG_BITS: dict[str, int] = {name: bit for bit, name in _FLAG_ORDER}


def flag_names(flags: int) -> list[str]:
    """``FIN|ACK`` -> ``["FIN", "ACK"]`` in display order."""
    return [name for bit, name in _FLAG_ORDER if flags & bit]


def flags_from_names(names: list[str] | tuple[str, ...]) -> int:
    """Inverse of :func:`flag_names`; raises ``KeyError`` on an unknown name."""
    bits = 0
    for name in names:
        bits |= FLAG_BITS[name.upper()]
    return bits


def format_flags(flags: int) -> str:
    """``FIN|ACK`` -> ``"FIN,ACK"``; no flags -> ``"none"``."""
    return ",".join(flag_names(flags)) or "none"


class TcpOptions(NamedTuple):
    """Parsed TCP options (RFC 9293 §3.2, RFC 7323, RFC 2018).

    ``None``/empty means absent.  ``timestamps`` is ``(TSval, TSecr)``.
    ``sack_blocks`` are ``(left, right)`` edges, raw 32-bit.  ``unknown`` keeps
    options of kinds finwait does not interpret, as ``(kind, data)``, in order.
    """

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    timestamps: tuple[int, int] | None = None
    sack_blocks: tuple[tuple[int, int], ...] = ()
    unknown: tuple[tuple[int, bytes], ...] = ()


NO_OPTIONS = TcpOptions()


class Segment(NamedTuple):
    """A TCP segment with its IP addresses (text form, IPv4 or IPv6)."""

    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    payload: bytes = b""
    options: TcpOptions = NO_OPTIONS
    urgent: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload length plus one for SYN and one for FIN (RFC 9293 §3.4)."""
        return len(self.payload) + (self.flags & SYN) // SYN + (self.flags & FIN)

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    def describe(self) -> str:
        """One line, RFC style: ``<SEQ=50><ACK=248><CTL=FIN,ACK> len=0``."""
        ack = f"<ACK={self.ack}>" if self.flags & ACK else ""
        return (
            f"{self.src}:{self.sport} > {self.dst}:{self.dport} "
            f"<SEQ={self.seq}>{ack}<CTL={format_flags(self.flags)}> "
            f"win={self.window} len={len(self.payload)}"
        )


# The engine builds segments on its hot path with ``new_segment(Segment,
# (src, dst, sport, dport, seq, ack, flags, window, payload, options,
# urgent))``: all eleven fields in order, the same value as ``Segment(...)``
# without the keyword handling of the generated ``__new__`` (half the cost).
new_segment = tuple.__new__
new_options = tuple.__new__  # likewise ``new_options(TcpOptions, (six fields))``
