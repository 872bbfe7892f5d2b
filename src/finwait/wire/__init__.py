"""Bytes <-> values: TCP header and options, IPv4/IPv6, checksums.

Imports nothing of finwait.  Malformed input raises ``ParseError`` (offset,
reason) and nothing else.

The IP and TCP codecs (and ``ipaddress`` with them) load on first use
(:func:`__getattr__`): the capture analyzer needs only the flag constants,
and its start-up is counted in milliseconds.
"""

from typing import TYPE_CHECKING, Any

from .checksum import checksum, pseudo_header_v4, pseudo_header_v6
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

if TYPE_CHECKING:
    from .ip import IPv4Header, IPv6Header, decode_ip_header, decode_packet, encode_packet
    from .tcp import (
        decode_options,
        decode_tcp,
        encode_options,
        encode_tcp,
        format_address,
        pack_address,
    )

_LAZY = {
    **dict.fromkeys(
        ("IPv4Header", "IPv6Header", "decode_ip_header", "decode_packet", "encode_packet"), "ip"
    ),
    **dict.fromkeys(
        ("decode_options", "decode_tcp", "encode_options", "encode_tcp", "format_address",
         "pack_address"),
        "tcp",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """A name of the IP or TCP codec, loaded on first use (PEP 562)."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


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
    "IPv4Header",
    "IPv6Header",
    "ParseError",
    "Segment",
    "TcpOptions",
    "checksum",
    "decode_ip_header",
    "decode_options",
    "decode_packet",
    "decode_tcp",
    "encode_options",
    "encode_packet",
    "encode_tcp",
    "flag_names",
    "flags_from_names",
    "format_address",
    "format_flags",
    "pack_address",
    "pseudo_header_v4",
    "pseudo_header_v6",
]
