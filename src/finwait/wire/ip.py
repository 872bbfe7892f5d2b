"""IPv4 and IPv6 packets carrying TCP: raw IP bytes <-> ``Segment``.

Read RFC 791 §3.1 (IPv4 header, fragmentation fields), RFC 1071 (header
checksum), RFC 8200 §4 (IPv6 extension headers, their order and lengths) and
§8.1 (the upper-layer checksum uses the *final* destination), RFC 4302 §2.2
(AH length in 4-byte units) and RFC 8754 §2 (SRH: Segment List[0] is the
final segment).

What is checked, in order, and the ``ParseError`` reason each gives (stable:
they become drop counters): version ("bad ip version"); header length
("truncated ip header", "bad ip header length"); IPv4 total length / IPv6
payload length against the buffer ("bad ip total length", "truncated ip
packet"; bytes past the stated length, e.g. Ethernet padding, are ignored);
the IPv4 header checksum ("bad ip checksum"); IPv6 extension headers
("bad extension header", "truncated extension header"); fragments of either
family ("fragment": finwait does not reassemble, and a TCP stack that keeps
DF set and sizes segments by MSS never sees them); any other upper layer
("not tcp"; also IPv6 No Next Header).  Then the TCP segment (tcp.py).
IPv4 options are skipped, not interpreted.  Offsets are from the start of the
buffer given.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import checksum, fold
from .errors import ParseError
from .segment import Segment
from .tcp import address_pair, decode_tcp_at, encode_tcp_raw, format_address

# version/IHL, TOS, total length, ident, flags/fragment offset, TTL, protocol,
# header checksum, source, destination
_IP4 = struct.Struct("!BBHHHBBH4s4s")
# version/traffic class/flow label, payload length, next header, hop limit, src, dst
_IP6 = struct.Struct("!IHBB16s16s")

IPPROTO_TCP = 6
IPV4_DF = 0x4000
_IPV4_MF_OFFSET = 0x3FFF  # MF flag and the 13-bit fragment offset
_HOP_BY_HOP, _ROUTING, _FRAGMENT, _AH, _NO_NEXT, _DEST_OPTS = 0, 43, 44, 51, 59, 60


class IPv4Header(NamedTuple):
    """An IPv4 header; ``payload_offset``/``payload_end`` bound the upper layer."""

    src: str
    dst: str
    tos: int
    total_length: int
    ident: int
    dont_fragment: bool
    more_fragments: bool
    fragment_offset: int  # in 8-byte units
    ttl: int
    protocol: int
    checksum: int
    payload_offset: int
    payload_end: int


class IPv6Header(NamedTuple):
    """An IPv6 header after the extension-header walk: ``protocol`` is the
    upper-layer protocol (or 44 for a fragment, 59 for none) and ``dst`` the
    final destination when a routing header names one (RFC 8200 §8.1)."""

    src: str
    dst: str
    traffic_class: int
    flow_label: int
    payload_length: int
    hop_limit: int
    protocol: int
    payload_offset: int
    payload_end: int


def _v4(buf: bytes, verify: bool) -> tuple[int, int, int, int, int, int, int, int, bytes, bytes]:
    if len(buf) < 20:
        raise ParseError("truncated ip header", 0)
    vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = _IP4.unpack_from(buf)
    ihl = (vihl & 15) << 2
    if ihl < 20:
        raise ParseError("bad ip header length", 0)
    if total < ihl:
        raise ParseError("bad ip total length", 2)
    if total > len(buf):
        raise ParseError("truncated ip packet", 2)
    if verify and checksum(buf[:ihl]) != 0:
        raise ParseError("bad ip checksum", 10)
    return ihl, total, tos, ident, frag, ttl, proto, csum, src, dst


def _v6(buf: bytes) -> tuple[int, int, int, int, int, int, bytes, bytes]:
    """Returns (upper protocol, its offset, end, first word, payload length,
    hop limit, src, final dst)."""
    if len(buf) < 40:
        raise ParseError("truncated ip header", 0)
    word, plen, nh, hlim, src, dst = _IP6.unpack_from(buf)
    end = 40 + plen
    if end > len(buf):
        raise ParseError("truncated ip packet", 4)
    off = 40
    # Each extension header is at least 8 bytes, so the walk ends.
    while nh in (_HOP_BY_HOP, _ROUTING, _DEST_OPTS, _AH):
        if nh == _HOP_BY_HOP and off != 40:
            # RFC 8200 §4.1: only immediately after the IPv6 header.
            raise ParseError("bad extension header", off)
        if off + 8 > end:
            raise ParseError("truncated extension header", off)
        size = (buf[off + 1] + 2) << 2 if nh == _AH else (buf[off + 1] + 1) << 3
        if off + size > end:
            raise ParseError("truncated extension header", off)
        if nh == _ROUTING and buf[off + 3]:  # segments left: dst is not final
            dst = _final_destination(buf, off, dst)
        nh = buf[off]
        off += size
    return nh, off, end, word, plen, hlim, src, dst


def _final_destination(buf: bytes, off: int, dst: bytes) -> bytes:
    """The final destination named by a routing header with segments left."""
    rtype = buf[off + 2]
    count = buf[off + 1] >> 1  # 16-byte addresses that fit the header
    if count == 0:
        return dst
    if rtype in (0, 2):  # RFC 2460 type 0, RFC 6275 type 2: the last address
        at = off + 8 + 16 * (count - 1)
        return buf[at : at + 16]
    if rtype == 4:  # RFC 8754 SRH: Segment List[0] is the final segment
        return buf[off + 8 : off + 24]
    return dst  # other types (e.g. RPL's compressed form): left as is


def decode_packet(data: bytes | bytearray | memoryview, *, verify_checksum: bool = True) -> Segment:
    """Parse an IPv4 or IPv6 packet carrying one unfragmented TCP segment.

    Verifies the IPv4 header checksum and the TCP checksum unless
    ``verify_checksum`` is false; raises ``ParseError`` and nothing else.
    """
    buf = data if type(data) is bytes else bytes(data)
    if not buf:
        raise ParseError("truncated ip header", 0)
    version = buf[0] >> 4
    if version == 4:
        ihl, total, _, _, frag, _, proto, _, src, dst = _v4(buf, verify_checksum)
        if frag & _IPV4_MF_OFFSET:
            raise ParseError("fragment", 6)
        if proto != IPPROTO_TCP:
            raise ParseError("not tcp", 9)
        off, end = ihl, total
    elif version == 6:
        proto, off, end, _, _, _, src, dst = _v6(buf)
        if proto == _FRAGMENT:
            raise ParseError("fragment", off)
        if proto != IPPROTO_TCP:
            raise ParseError("not tcp", off)
    else:
        raise ParseError("bad ip version", 0)
    pseudo = None
    if verify_checksum:
        pseudo = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + IPPROTO_TCP
    return decode_tcp_at(buf, off, end, format_address(src), format_address(dst), pseudo)


def decode_ip_header(
    data: bytes | bytearray | memoryview, *, verify_checksum: bool = True
) -> IPv4Header | IPv6Header:
    """The IP header of any packet, TCP or not, fragment or not, with the same
    structural checks as :func:`decode_packet`; for the analyzer's counts."""
    buf = data if type(data) is bytes else bytes(data)
    if not buf:
        raise ParseError("truncated ip header", 0)
    version = buf[0] >> 4
    if version == 4:
        ihl, total, tos, ident, frag, ttl, proto, csum, src, dst = _v4(buf, verify_checksum)
        return IPv4Header(
            format_address(src), format_address(dst), tos, total, ident,
            bool(frag & 0x4000), bool(frag & 0x2000), frag & 0x1FFF,
            ttl, proto, csum, ihl, total,
        )  # fmt: skip
    if version == 6:
        proto, off, end, word, plen, hlim, src, dst = _v6(buf)
        return IPv6Header(
            format_address(src), format_address(dst), (word >> 20) & 0xFF, word & 0xFFFFF,
            plen, hlim, proto, off, end,
        )  # fmt: skip
    raise ParseError("bad ip version", 0)


def encode_packet(
    seg: Segment,
    *,
    ttl: int = 64,
    ident: int = 0,
    partial_checksum: bool = False,
    headers_only: bool = False,
) -> bytes:
    """``seg`` as an IPv4 packet with DF set (RFC 9293 §3.7.1 sizes segments so
    they need no fragmenting) or an IPv6 packet, chosen by address form.
    ``partial_checksum``: the TCP checksum is left for a device to complete
    (:func:`finwait.wire.tcp.encode_tcp_raw`'s ``partial``).
    ``headers_only``: the IP and TCP headers alone — the packet's bytes up to
    the payload, lengths and checksums counting it — for a writer that
    gathers them with ``seg.payload`` (``os.writev``) instead of copying it.

    Raises ``ValueError`` on an unusable address, a field out of range, or a
    packet over 65535 bytes.
    """
    src, dst = address_pair(seg.src, seg.dst)
    addr_sum = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    tcp = encode_tcp_raw(
        seg, addr_sum + IPPROTO_TCP, partial=partial_checksum, header_only=headers_only
    )
    tcp_len = len(tcp) + len(seg.payload) if headers_only else len(tcp)
    try:
        if len(src) == 4:
            total = 20 + tcp_len
            if total > 0xFFFF:
                raise ValueError(f"ipv4 packet of {total} bytes exceeds 65535")
            if not (0 <= ttl <= 0xFF and 0 <= ident <= 0xFFFF):
                raise ValueError(f"ttl {ttl} or ident {ident} out of range")
            # The header's words, summed without building it twice: version/IHL
            # and TOS, total length, ident, DF, TTL and protocol, addresses.
            words = 0x4500 + total + ident + IPV4_DF + (ttl << 8) + IPPROTO_TCP + addr_sum
            csum = 0xFFFF ^ fold(words)
            hdr = _IP4.pack(0x45, 0, total, ident, IPV4_DF, ttl, IPPROTO_TCP, csum, src, dst)
            return hdr + tcp
        if tcp_len > 0xFFFF:
            raise ValueError(f"ipv6 payload of {tcp_len} bytes exceeds 65535 (no jumbograms)")
        return _IP6.pack(0x60000000, tcp_len, IPPROTO_TCP, ttl, src, dst) + tcp
    except struct.error as exc:
        raise ValueError(f"ip header field out of range: {exc}") from None
