"""Bytes <-> values: TCP header and options, IPv4/IPv6, checksums.

Imports nothing of finwait.  Malformed input raises ``ParseError`` (offset,
reason) and nothing else.
"""

from .checksum import checksum, pseudo_header_v4, pseudo_header_v6
from .errors import ParseError
from .ip import IPv4Header, IPv6Header, decode_ip_header, decode_packet, encode_packet
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
from .tcp import (
    decode_options,
    decode_tcp,
    encode_options,
    encode_tcp,
    format_address,
    pack_address,
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
