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
from .segment import NO_OPTIONS, Segment, TcpOptions
from .tcp import address_pair, decode_tcp_at, encode_tcp_raw, format_address

# version/IHL, TOS, total length, ident, flags/fragment offset, TTL, protocol,
# header checksum, source, destination
_IP4 = struct.Struct("!BBHHHBBH4s4s")
# version/traffic class/flow label, payload length, next header, hop limit, src, dst
_IP6 = struct.Struct("!IHBB16s16s")

# The two IPv4 packets the live stack writes most, headers in one pack: no
# IP options, and no TCP options or Linux's NOP NOP TS (RFC 7323 Appendix A).
_IP4_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")
_IP4_TCP_TS = struct.Struct("!BBHHHBBH4s4sHHIIBBHHHBBBBII")

IPPROTO_TCP = 6
IPV4_DF = 0x4000
# Sum of the NOP NOP TS option's two fixed words (0x0101, 0x080A).
_TS_WORDS = 0x0101 + 0x080A
_ALIGNED_TS = b"\x01\x01\x08\x0a"
_II = struct.Struct("!II")
_new = tuple.__new__  # a NamedTuple from a tuple, without its keyword handling
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


def _encode_v4(
    seg: Segment,
    src: bytes,
    dst: bytes,
    addr_sum: int,
    ttl: int,
    ident: int,
    partial: bool,
    headers_only: bool,
) -> bytes | None:
    """:func:`encode_packet` of an IPv4 segment without options or with
    timestamps only, both headers in one ``struct`` pack and both checksums
    summed from the fields (mod 0xFFFF, as :func:`fold` does; 2^16 = 1, so a
    32-bit field adds as its two words).  The same bytes as the general path
    (a property test compares them); None when a field is out of range, for
    the general path to raise the usual error."""
    _, _, sport, dport, seq, ack, flags, window, payload, opts, urgent = seg
    ts = opts[3]
    hlen = 20 if ts is None else 32
    tcp_len = hlen + len(payload)
    total = 20 + tcp_len
    if total > 0xFFFF or not (0 <= ttl <= 0xFF and 0 <= ident <= 0xFFFF):
        return None
    ip_csum = 0xFFFF ^ fold(0x4500 + total + ident + IPV4_DF + (ttl << 8) + IPPROTO_TCP + addr_sum)
    doff_flags = (hlen << 10) | flags
    pseudo = addr_sum + IPPROTO_TCP + tcp_len
    if partial:
        csum = fold(pseudo)
    else:
        words = sport + dport + seq + ack + doff_flags + window + urgent
        if ts is not None:
            words += _TS_WORDS + ts[0] + ts[1]
        body = int.from_bytes(payload, "big") % 0xFFFF
        if len(payload) & 1:
            body <<= 8
        csum = 0xFFFF ^ fold(pseudo + words + body)
    try:
        if ts is None:
            hdrs = _IP4_TCP.pack(
                0x45, 0, total, ident, IPV4_DF, ttl, IPPROTO_TCP, ip_csum, src, dst,
                sport, dport, seq, ack, hlen << 2, flags, window, csum, urgent,
            )  # fmt: skip
        else:
            hdrs = _IP4_TCP_TS.pack(
                0x45, 0, total, ident, IPV4_DF, ttl, IPPROTO_TCP, ip_csum, src, dst,
                sport, dport, seq, ack, hlen << 2, flags, window, csum, urgent,
                1, 1, 8, 10, ts[0], ts[1],
            )  # fmt: skip
    except struct.error:
        return None
    return hdrs if headers_only or not payload else hdrs + payload


def decode_packet(data: bytes | bytearray | memoryview, *, verify_checksum: bool = True) -> Segment:
    """Parse an IPv4 or IPv6 packet carrying one unfragmented TCP segment.

    Verifies the IPv4 header checksum and the TCP checksum unless
    ``verify_checksum`` is false; raises ``ParseError`` and nothing else.
    """
    buf = data if type(data) is bytes else bytes(data)
    if not buf:
        raise ParseError("truncated ip header", 0)
    if buf[0] == 0x45 and len(buf) >= 40:
        seg = _decode_v4(buf, verify_checksum)
        if seg is not None:
            return seg
    return _decode_any(buf, verify_checksum)


def _decode_any(buf: bytes, verify_checksum: bool) -> Segment:
    """:func:`decode_packet`'s general path: any layout, every error."""
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


def _decode_v4(buf: bytes, verify: bool) -> Segment | None:
    """:func:`decode_packet` of the common IPv4 packet — no IP options, not a
    fragment, TCP without options or with NOP NOP TS — from one ``struct``
    unpack of both headers.  None for anything else, or anything wrong: the
    general path then decodes it or names the error, in its order."""
    (
        _, _, total, _, frag, _, proto, _, src, dst,
        sport, dport, seq, ack, doff, flags, window, _, urgent,
    ) = _IP4_TCP.unpack_from(buf)  # fmt: skip
    hlen = (doff >> 4) << 2
    if (
        proto != IPPROTO_TCP
        or frag & _IPV4_MF_OFFSET
        or not 40 <= total <= len(buf)
        or not (hlen == 20 or (hlen == 32 and buf[40:44] == _ALIGNED_TS))
        or 20 + hlen > total
    ):
        return None
    if verify:
        if checksum(buf[:20]) != 0:
            return None
        length = total - 20
        n = int.from_bytes(buf[20:total], "big") % 0xFFFF
        if length & 1:
            n <<= 8
        pseudo = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + IPPROTO_TCP
        if fold(n + pseudo + length) != 0xFFFF:
            return None
    if hlen == 20:
        opts = NO_OPTIONS
    else:
        opts = _new(TcpOptions, (None, None, False, _II.unpack_from(buf, 44), (), ()))
    return _new(
        Segment,
        (
            format_address(src), format_address(dst), sport, dport, seq, ack, flags, window,
            buf[20 + hlen : total], opts, urgent,
        ),
    )  # fmt: skip


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
    if len(src) == 4:
        opts = seg[9]
        ts = opts[3]
        # No options, or timestamps only (every segment after a SYN that
        # negotiated them).
        if opts is NO_OPTIONS or (ts is not None and opts == (None, None, False, ts, (), ())):
            fast = _encode_v4(seg, src, dst, addr_sum, ttl, ident, partial_checksum, headers_only)
            if fast is not None:
                return fast
    return _encode_any(seg, src, dst, addr_sum, ttl, ident, partial_checksum, headers_only)


def _encode_any(
    seg: Segment,
    src: bytes,
    dst: bytes,
    addr_sum: int,
    ttl: int,
    ident: int,
    partial_checksum: bool,
    headers_only: bool,
) -> bytes:
    """:func:`encode_packet`'s general path: any options, both families."""
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
