"""Bytes <-> values: TCP header and options, IPv4/IPv6, checksums.

Imports nothing of finwait.  Malformed input raises ``ParseError`` (offset,
reason) and nothing else.
"""

from .errors import ParseError
from .segment import (
    ACK,
    CWR,
    ECE,
    FIN,
    NO_OPTIONS,
    PSH,
    RST,
    SYN,
    URG,
    Segment,
    TcpOptions,
    flag_names,
    flags_from_names,
    format_flags,
)

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "NO_OPTIONS",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "ParseError",
    "Segment",
    "TcpOptions",
    "flag_names",
    "flags_from_names",
    "format_flags",
]
