"""TCP header and options: ``Segment`` <-> bytes, with the pseudo-header checksum.

Read RFC 9293 §3.1 (header format, checksum) and §3.2 (options: MUST-4..7,
MUST-64, MUST-68), RFC 7323 (window scale, timestamps; Appendix A's aligned
timestamp layout), RFC 2018 (SACK) and, for the option-parsing choices,
Linux ``tcp_parse_options()`` in net/ipv4/tcp_input.c.

Options are parsed the way Linux parses them, so a hostile list never crashes
and never drops the segment: EOL ends the list; a NOP is skipped; an option
whose length byte is missing, below 2, or runs past the header ends parsing
silently (Linux: "silly options" / "don't parse partial options") and the
options read so far are kept.  A known kind with the wrong length is not
interpreted; Linux skips it, here it is kept in ``TcpOptions.unknown`` as
``(kind, data)`` so an analyzer can see it, and an engine that ignores
``unknown`` behaves as Linux does.  A repeated option overwrites the earlier
one (Linux: the last one wins).  Values are recorded as they are on the wire:
clamping a window scale above 14 (RFC 7323 §2.3) and honouring MSS/WS/SACK-
permitted only on a SYN are the engine's business.  The header itself is
checked: a data offset below 5 words or beyond the segment, or a bad checksum,
is a ``ParseError``.  The reserved bits (and the AE bit of RFC 3540/AccECN)
are ignored on receipt and sent as zero (RFC 9293 §3.1).

Hot path: the live stack decodes and encodes every segment, so the fixed
header is one precompiled ``struct.Struct``, there is no option parsing for
the two common layouts (no options; NOP NOP TS), and address text <-> bytes
conversions are memoised (bounded).
"""

from __future__ import annotations

import ipaddress
import struct
from functools import lru_cache

from .checksum import fold
from .errors import ParseError
from .segment import NO_OPTIONS, Segment, TcpOptions

# sport, dport, seq, ack, data offset (high nibble), flags, window, checksum, urgent
_HDR = struct.Struct("!HHIIBBHHH")
_II = struct.Struct("!II")
_H = struct.Struct("!H")
_NOP_NOP_TS = struct.Struct("!BBBBII")

TCP_HEADER_LEN = 20
MAX_OPTIONS_LEN = 40  # data offset is 4 bits: at most 15 words of header
IPPROTO_TCP = 6

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERM = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

# RFC 7323 Appendix A: NOP, NOP, TS kind, TS length; what Linux sends on every
# segment of a connection that negotiated timestamps.
_ALIGNED_TS = b"\x01\x01\x08\x0a"


# -- addresses (the pseudo-header needs them; ip.py reuses these) ------------


@lru_cache(maxsize=4096)
def pack_address(addr: str) -> bytes:
    """``"198.18.0.1"`` -> 4 bytes, ``"2001:db8::1"`` -> 16 bytes.

    Raises ``ValueError`` on text that is not an address.
    """
    return ipaddress.ip_address(addr).packed


@lru_cache(maxsize=4096)
def format_address(raw: bytes) -> str:
    """4 or 16 address bytes -> text; IPv6 in RFC 5952 compressed form."""
    if len(raw) == 4:
        # By hand: ipaddress costs ~1 µs per IPv4 address.
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    if len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    raise ValueError(f"address must be 4 or 16 bytes, not {len(raw)}")


def address_pair(src: str, dst: str) -> tuple[bytes, bytes]:
    """Both addresses packed; ``ValueError`` if either is not an address or
    they are of different families."""
    s = pack_address(src)
    d = pack_address(dst)
    if len(s) != len(d):
        raise ValueError(f"mixed address families: {src} -> {dst}")
    return s, d


# -- options ---------------------------------------------------------------


def encode_options(opts: TcpOptions) -> bytes:
    """Options in Linux's layout (``tcp_options_write()``): MSS; SACK-permitted
    sharing a word with timestamps (else NOP NOP TS); NOP NOP SACK-permitted
    when there are no timestamps; NOP WS; NOP NOP SACK blocks; then unknown
    options as given, and NOPs up to a 32-bit boundary.  A SYN with everything
    is MSS, SACK_PERM, TS, NOP, WS: 20 bytes.

    When the aligning NOPs would push the list past 40 bytes, the same options
    are packed without them (RFC 9293 §3.2 requires no alignment), so options
    decoded from any valid header always re-encode.  Raises ``ValueError``
    when a value does not fit its field or the options exceed 40 bytes anyway.
    """
    if opts == NO_OPTIONS:
        return b""
    try:
        out = _options(opts, aligned=True)
        if len(out) > MAX_OPTIONS_LEN:
            out = _options(opts, aligned=False)
    except struct.error as exc:
        raise ValueError(f"tcp option value out of range: {exc}") from None
    if len(out) > MAX_OPTIONS_LEN:
        raise ValueError(f"tcp options take {len(out)} bytes, more than {MAX_OPTIONS_LEN}")
    return out


def _options(opts: TcpOptions, *, aligned: bool) -> bytes:
    mss, wscale, sack_perm, ts, blocks, unknown = opts
    nop2 = b"\x01\x01" if aligned else b""
    out = bytearray()
    if mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, mss)
    if ts is not None:
        out += b"\x04\x02" if sack_perm else nop2
        out += struct.pack("!BBII", OPT_TIMESTAMP, 10, ts[0], ts[1])
    elif sack_perm:
        out += nop2 + b"\x04\x02"
    if wscale is not None:
        out += nop2[:1] + struct.pack("!BBB", OPT_WSCALE, 3, wscale)
    if blocks:
        out += nop2 + struct.pack("!BB", OPT_SACK, 2 + 8 * len(blocks))
        for left, right in blocks:
            out += _II.pack(left, right)
    for kind, data in unknown:
        if kind in (OPT_EOL, OPT_NOP):
            raise ValueError(f"option kind {kind} has no length field")
        out += struct.pack("!BB", kind, 2 + len(data))
        out += data
    if len(out) & 3:
        out += b"\x01" * (4 - (len(out) & 3))
    return bytes(out)


def decode_options(raw: bytes | bytearray | memoryview) -> TcpOptions:
    """Parse an option list; never raises (see the module docstring)."""
    buf = bytes(raw)
    n = len(buf)
    mss: int | None = None
    wscale: int | None = None
    sack_perm = False
    ts: tuple[int, int] | None = None
    blocks: tuple[tuple[int, int], ...] = ()
    unknown: list[tuple[int, bytes]] = []
    i = 0
    while i < n:
        kind = buf[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            break  # no room for the length byte
        size = buf[i + 1]
        if size < 2 or i + size > n:
            break  # Linux: silly or partial option, stop parsing
        if kind == OPT_TIMESTAMP and size == 10:
            tsval, tsecr = _II.unpack_from(buf, i + 2)
            ts = (tsval, tsecr)
        elif kind == OPT_MSS and size == 4:
            mss = _H.unpack_from(buf, i + 2)[0]
        elif kind == OPT_WSCALE and size == 3:
            wscale = buf[i + 2]
        elif kind == OPT_SACK_PERM and size == 2:
            sack_perm = True
        elif kind == OPT_SACK and size >= 10 and (size - 2) % 8 == 0:
            edges = struct.unpack_from(f"!{(size - 2) // 4}I", buf, i + 2)
            blocks = tuple(zip(edges[0::2], edges[1::2], strict=True))
        else:
            unknown.append((kind, buf[i + 2 : i + size]))
        i += size
    if not (sack_perm or blocks or unknown) and mss is None and wscale is None and ts is None:
        return NO_OPTIONS
    return TcpOptions(mss, wscale, sack_perm, ts, blocks, tuple(unknown))


# -- header ----------------------------------------------------------------


def encode_tcp(seg: Segment, *, checksum: bool = True) -> bytes:
    """Header, options and payload of ``seg``; the checksum covers the IPv4 or
    IPv6 pseudo-header built from ``seg.src``/``seg.dst`` (by address form).

    With ``checksum=False`` the field is left 0 (for a NIC that offloads it).
    Raises ``ValueError`` on a field out of range or an unusable address.
    """
    if not checksum:
        return encode_tcp_raw(seg, None)
    src, dst = address_pair(seg.src, seg.dst)
    return encode_tcp_raw(
        seg, int.from_bytes(src, "big") + int.from_bytes(dst, "big") + IPPROTO_TCP
    )


def encode_tcp_raw(
    seg: Segment, pseudo: int | None, *, partial: bool = False, header_only: bool = False
) -> bytes:
    """:func:`encode_tcp` with the pseudo-header partial sum already computed
    (without the TCP length, which is added here), or None for no checksum.
    ``partial``: the checksum field holds only the pseudo-header's sum,
    folded, not complemented — what a device that computes the checksum
    (checksum offload, Linux CHECKSUM_PARTIAL) completes over the segment.
    ``header_only``: the header (with options) alone, exactly as it starts
    the whole encoding; the caller sends the payload beside it."""
    _, _, sport, dport, seq, ack, flags, window, payload, opts, urgent = seg
    if opts is NO_OPTIONS:
        raw_opts = b""
    elif opts[0] is None and opts[1] is None and opts[3] is not None and opts[2:] == (
        False, opts[3], (), ()
    ):  # fmt: skip
        # Timestamps only: every segment after a SYN that negotiated them.
        try:
            raw_opts = _NOP_NOP_TS.pack(1, 1, OPT_TIMESTAMP, 10, *opts[3])
        except struct.error as exc:
            raise ValueError(f"tcp option value out of range: {exc}") from None
    else:
        raw_opts = encode_options(opts)
    hlen = TCP_HEADER_LEN + len(raw_opts)
    try:
        hdr = _HDR.pack(sport, dport, seq, ack, hlen << 2, flags, window, 0, urgent)
        if pseudo is not None and partial:
            csum = fold(pseudo + hlen + len(payload))
            hdr = _HDR.pack(sport, dport, seq, ack, hlen << 2, flags, window, csum, urgent)
        elif pseudo is not None:
            # The payload's sum is reduced before the adds, so they stay small
            # ints; that is safe because the pseudo-header (protocol 6) keeps
            # the total from being +0 (see checksum.py on the two zeros).
            body = int.from_bytes(payload, "big") % 0xFFFF
            if len(payload) & 1:
                body <<= 8
            total = pseudo + hlen + len(payload) + int.from_bytes(hdr + raw_opts, "big")
            csum = 0xFFFF ^ fold(total + body)
            hdr = _HDR.pack(sport, dport, seq, ack, hlen << 2, flags, window, csum, urgent)
    except struct.error as exc:
        raise ValueError(f"tcp header field out of range: {exc}") from None
    if header_only:
        return hdr + raw_opts
    return hdr + raw_opts + payload


def decode_tcp(
    data: bytes | bytearray | memoryview,
    src: str,
    dst: str,
    *,
    verify_checksum: bool = True,
) -> Segment:
    """Parse a TCP segment carried between the addresses ``src`` and ``dst``.

    Raises ``ParseError`` (offsets from the start of ``data``) for a truncated
    header, a bad data offset or a bad checksum; ``ValueError`` only when the
    caller's addresses are not addresses.
    """
    buf = data if type(data) is bytes else bytes(data)
    pseudo: int | None = None
    if verify_checksum:
        s, d = address_pair(src, dst)
        pseudo = int.from_bytes(s, "big") + int.from_bytes(d, "big") + IPPROTO_TCP
    return decode_tcp_at(buf, 0, len(buf), src, dst, pseudo)


def decode_tcp_at(
    buf: bytes, off: int, end: int, src: str, dst: str, pseudo: int | None
) -> Segment:
    """Parse the TCP segment ``buf[off:end]``; ParseError offsets are into ``buf``.

    ``pseudo`` is the pseudo-header partial sum *without* the TCP length (it
    is added here), or None to skip the checksum.  For ip.py.
    """
    length = end - off
    if length < TCP_HEADER_LEN:
        raise ParseError("truncated tcp header", off)
    sport, dport, seq, ack, doff, flags, window, _, urgent = _HDR.unpack_from(buf, off)
    hlen = (doff >> 4) << 2
    if hlen < TCP_HEADER_LEN:
        raise ParseError("bad data offset", off + 12)
    if hlen > length:
        raise ParseError("data offset beyond segment", off + 12)
    if pseudo is not None:
        n = int.from_bytes(buf[off:end], "big") % 0xFFFF
        if length & 1:
            n <<= 8
        # Sum over a correct segment folds to 0xFFFF (RFC 1071 §1(2)); the
        # pseudo-header's protocol word keeps the total from being +0, so the
        # segment's sum may be reduced first (one big-int op, not two).
        if fold(n + pseudo + length) != 0xFFFF:
            raise ParseError("bad checksum", off + 16)
    if hlen == TCP_HEADER_LEN:
        opts = NO_OPTIONS
    elif hlen == 32 and buf[off + 20 : off + 24] == _ALIGNED_TS:
        tsval, tsecr = _II.unpack_from(buf, off + 24)
        opts = TcpOptions(None, None, False, (tsval, tsecr), (), ())
    else:
        opts = decode_options(buf[off + TCP_HEADER_LEN : off + hlen])
    return Segment(
        src, dst, sport, dport, seq, ack, flags, window, buf[off + hlen : end], opts, urgent
    )
