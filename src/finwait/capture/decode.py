"""Bulk link/IP/TCP header decoding: one :class:`RawBatch` in, columns of
TCP segments out, with numpy gathers over the record offsets (no per-packet
Python).

Link types (tcpdump.org link-layer header types): NULL (0, host byte order
AF value) and LOOP (108, network order); Ethernet (1) with up to two
802.1Q/802.1ad tags (QinQ); RAW (101, and the historical DLT values 12 and 14
that the BSDs and libpcap still write); Linux cooked SLL (113) and SLL2
(276); IPV4 (228) and IPV6 (229).  IPv4 (RFC 791) with options; fragments
(MF set or a non-zero offset) are counted and skipped.  IPv6 (RFC 8200) with
hop-by-hop, routing, destination-options, fragment (RFC 8200 §4.5) and AH
(RFC 4302) extension headers.  TCP per RFC 9293 §3.1.  Payload lengths come
from the IP length fields, so a short snaplen still counts the right bytes.

Addresses are four 32-bit words; IPv4 is mapped into ``::ffff:a.b.c.d`` so
one key type serves both families.

Everything else — other link types, other EtherTypes (MPLS, PPPoE, PBB,
VN-Tag, FabricPath, LLC/SNAP, a third VLAN tag) and IP packets whose
protocol is a tunnel (IP-in-IP, GRE, UDP to a tunnel port) — is handed to
:mod:`finwait.capture.decap`, which walks it layer by layer in Python and
returns the inner IP packet and its tunnels; the inner packets then go
through the same bulk IP/TCP decoding.  Plain captures never leave the bulk
path.

Packets not decoded are counted as ``"<reason>: <detail>"`` (see
:data:`REASONS`); ``tcp`` counts the segments decoded, and
``ipv4_length_from_capture``/``ipv6_length_from_capture``/``decapsulated``
are notes, not skips.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import decap
from .reader import RawBatch, at_every_byte

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_BSD = 12
LINKTYPE_RAW_OPENBSD = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = (0x8100, 0x88A8, 0x9100)

_IPV6_EXT_6LEN = (0, 43, 60)  # hop-by-hop, routing, destination options: (len + 1) * 8
_IPV6_FRAG = 44
_IPV6_AH = 51  # (len + 2) * 4
_V4_MAPPED = 0xFFFF
_TUNNEL_PROTOS = (4, 41, 47)
_UDP_TUNNEL_PORTS = np.array(sorted(decap.UDP_TUNNELS), dtype=np.int64)

# Why a packet was not analysed: the first word of every skip counter.
REASONS = (
    "unsupported link type",
    "unsupported encapsulation",
    "truncated",
    "not ip",
    "not tcp",
    "bad header",
    "fragment",
    "tunnel depth exceeded",
    "bad checksum",
)
NOTES = ("ipv4_length_from_capture", "ipv6_length_from_capture", "decapsulated")
FAST_LINKTYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 276)


def member(x: npt.NDArray[Any], values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """``member(x, values)`` for a small set of integers: a comparison per
    value for up to 16 (contiguous passes, cheaper than a binary search per
    element), else by binary search (np.isin imports numpy.ma, a tenth of the
    start-up budget)."""
    v = np.sort(np.asarray(values, dtype=np.int64))
    if v.size == 0:
        return np.zeros(np.shape(x), dtype=bool)
    if v.size <= 16:
        hit: npt.NDArray[np.bool_] = np.asarray(x) == v[0]
        for value in v[1:].tolist():
            hit |= x == value
        return hit
    pos = np.minimum(np.searchsorted(v, x), v.size - 1)
    out: npt.NDArray[np.bool_] = v[pos] == x
    return out


class Tunnels:
    """Tunnel stacks seen in a capture, numbered: 0 is "no tunnel"; each
    stack is a tuple of (type, outer source, outer destination) layers,
    outermost first."""

    def __init__(self) -> None:
        self.stacks: list[tuple[tuple[str, str, str], ...]] = [()]
        self._ids: dict[tuple[tuple[str, str, str], ...], int] = {(): 0}

    def id(self, stack: tuple[tuple[str, str, str], ...]) -> int:
        got = self._ids.get(stack)
        if got is None:
            got = self._ids[stack] = len(self.stacks)
            self.stacks.append(stack)
        return got


# Fixed header fields in network byte order (RFC 791 §3.1, RFC 9293 §3.1).
_IPV4_HDR = np.dtype(
    [("vihl", "u1"), ("tos", "u1"), ("total", ">u2"), ("id", ">u2"), ("frag", ">u2"),
     ("ttl", "u1"), ("proto", "u1"), ("csum", ">u2"), ("src", ">u4"), ("dst", ">u4")]
)  # fmt: skip
_TCP_HDR = np.dtype(
    [("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"), ("off", "u1"),
     ("flags", "u1"), ("window", ">u2")]
)  # fmt: skip


@dataclass(slots=True, eq=False, repr=False)
class TcpColumns:
    """TCP segments of one batch, in capture order, one array per field."""

    frame: I64
    ts: npt.NDArray[np.float64]
    src: I64  # (n, 4) address words
    dst: I64
    sport: I64
    dport: I64
    seq: I64
    ack: I64
    flags: I64
    window: I64
    plen: I64
    tunnel: I64  # id in the decoder's :class:`Tunnels` (0: none)

    def __len__(self) -> int:
        return int(self.frame.size)

    def take(self, idx: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> TcpColumns:
        return TcpColumns(
            self.frame[idx], self.ts[idx], _rows(self.src, idx), _rows(self.dst, idx), self.sport[idx],
            self.dport[idx], self.seq[idx], self.ack[idx], self.flags[idx], self.window[idx],
            self.plen[idx], self.tunnel[idx],
        )  # fmt: skip


def _rows(table: I64, idx: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> I64:
    """Rows ``idx`` of a 2-D table (positions taken whole by ``np.take``:
    numpy's fancy indexing copies a row of 4 words several times slower)."""
    out: I64 = table[idx] if idx.dtype == np.bool_ else np.take(table, idx, axis=0)
    return out


def _at(a: npt.NDArray[Any], idx: I64, n: int) -> npt.NDArray[Any]:
    """``a[idx]`` for ``idx`` ascending positions below ``n`` without
    repeats; ``a`` itself when those are all ``n`` of them (most batches: every
    packet is IPv4 TCP), without the copy."""
    return a if idx.size == n else a[idx]


class _Bytes:
    """Bounds-safe big-endian gathers from one chunk: an index past the end
    reads zeros (the caller has already masked such packets out)."""

    def __init__(self, buf: U8, padded: U8 | None = None) -> None:
        # Pad so any gather up to 64 bytes past a valid offset stays in bounds
        # (the reader's chunks come padded: no copy).
        if padded is None or padded.size < buf.size + 64:
            padded = np.concatenate([buf, np.zeros(64, dtype=np.uint8)])
        self.b = padded
        self.limit = buf.size

    def rows(self, off: I64, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        """The ``dtype.itemsize`` bytes at each offset, as one structured
        record each: one gather for a whole header instead of one per byte
        (taken as opaque records, then viewed as ``dtype``: numpy copies a
        structured record field by field)."""
        records = at_every_byte(self.b, np.dtype((np.void, dtype.itemsize)))
        out: npt.NDArray[Any] = records[np.minimum(off, self.limit)].view(dtype)
        return out

    def u8(self, off: I64) -> I64:
        return self.b[np.minimum(off, self.limit)].astype(np.int64)

    def u16(self, off: I64) -> I64:
        """Big-endian 16-bit values (each one record: :meth:`rows`)."""
        r: I64 = self.rows(off, _BE16).astype(np.int64)
        return r

    def u32(self, off: I64) -> I64:
        r: I64 = self.rows(off, _BE32).astype(np.int64)
        return r


_BE16, _BE32 = np.dtype(">u2"), np.dtype(">u4")


def _count_values(
    counts: Counter[str],
    prefix: str,
    values: I64,
    fmt: str = "{}",
    names: dict[int, str] | None = None,
) -> None:
    """Count ``values`` under ``prefix: <value>``, one key per distinct value."""
    if values.size:
        u, c = np.unique(values, return_counts=True)
        for v, k in zip(u.tolist(), c.tolist(), strict=True):
            text = names.get(v) if names else None
            counts[f"{prefix}: {text or fmt.format(v)}"] += k


def _link(
    by: _Bytes, linktype: int, off: I64, end: I64, counts: Counter[str]
) -> tuple[I64, I64, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Network-layer offset, IP version (4/6/0), validity, and which packets
    the general path (:mod:`decap`) must walk, for one link type."""
    n = off.size
    slow = np.zeros(n, dtype=bool)
    if linktype == LINKTYPE_ETHERNET:
        net = off + 14
        et = by.u16(off + 12)
        for _ in range(2):  # 802.1Q, then QinQ's inner tag
            tagged = member(et, ETH_VLAN)
            if not tagged.any():
                break
            et = np.where(tagged, by.u16(net + 2), et)
            net = np.where(tagged, net + 4, net)
        ver = np.where(et == ETH_IPV4, 4, np.where(et == ETH_IPV6, 6, 0))
        # Other EtherTypes the general path decodes (MPLS, PPPoE, PBB, VN-Tag,
        # FabricPath, a third tag) and 802.3 frames with LLC/SNAP.
        other = ver == 0
        if other.any():
            slow = other & (member(et, _SLOW_ETHERTYPES) | (et <= 1500))
    elif linktype == LINKTYPE_LINUX_SLL:
        net = off + 16
        et = by.u16(off + 14)
        ver = np.where(et == ETH_IPV4, 4, np.where(et == ETH_IPV6, 6, 0))
        slow = (ver == 0) & (member(et, _SLOW_ETHERTYPES) | (et == 4))
    elif linktype == LINKTYPE_LINUX_SLL2:
        net = off + 20
        et = by.u16(off)
        ver = np.where(et == ETH_IPV4, 4, np.where(et == ETH_IPV6, 6, 0))
        slow = (ver == 0) & (member(et, _SLOW_ETHERTYPES) | (et == 4))
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        net = off + 4
        et = np.zeros(n, dtype=np.int64)
        # NULL: AF_ value in the capturing host's byte order; LOOP: network order.
        # AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30 (BSDs).
        w = by.u32(off)
        swapped = ((w & 0xFF) << 24) | ((w & 0xFF00) << 8) | ((w >> 8) & 0xFF00) | (w >> 24)
        af = np.where(w <= 0xFFFF, w, swapped) if linktype == LINKTYPE_NULL else w
        ver = np.where(af == 2, 4, np.where(member(af, (10, 24, 28, 30)), 6, 0))
    elif linktype in (
        LINKTYPE_RAW,
        LINKTYPE_RAW_BSD,
        LINKTYPE_RAW_OPENBSD,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
    ):
        net = off.copy()
        et = np.zeros(n, dtype=np.int64)
        ver = by.u8(off) >> 4
        ver = np.where((ver == 4) | (ver == 6), ver, 0)
    elif linktype in decap.LINKTYPES:
        return off, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    else:
        counts[f"unsupported link type: {linktype}"] += n
        z = np.zeros(n, dtype=bool)
        return off, np.zeros(n, dtype=np.int64), z, z
    ok = net < end
    short = int((~ok & ~slow).sum())
    if short:
        counts["truncated: link header"] += short
    other = ok & (ver == 0) & ~slow
    if other.any():
        if linktype in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
            _count_values(counts, "not ip", et[other], "ethertype 0x{:04x}")
        else:
            counts["not ip: link header"] += int(other.sum())
    return net, ver, ok & (ver != 0) & ~slow, slow


_SLOW_ETHERTYPES = np.array(
    sorted({*decap.ETHERTYPES, 0x8903} - {ETH_IPV4, ETH_IPV6}), dtype=np.int64
)


def decode(
    batch: RawBatch,
    counts: Counter[str],
    tunnels: Tunnels | None = None,
    verify_checksums: bool = False,
) -> TcpColumns:
    """TCP segments of ``batch``; every packet not decoded is counted by
    reason.  ``tunnels`` numbers the tunnel stacks (pass the same one for
    every batch of a capture).  With ``verify_checksums``, a segment whose
    TCP checksum is wrong (RFC 9293 §3.1, over the pseudo-header) is marked
    with :data:`BAD_CHECKSUM` in its flags and counted as ``bad checksum:
    tcp``, not as analysed (Zeek drops it and writes ``C`` in the history);
    a segment not captured whole cannot be checked and counts as good."""
    if tunnels is None:
        tunnels = Tunnels()
    by = _Bytes(batch.buf, batch.padded)
    off = batch.data_off
    end = off + batch.caplen
    n = off.size
    net = np.zeros(n, dtype=np.int64)
    ver = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    slow = np.zeros(n, dtype=bool)
    lt0 = int(batch.linktype[0]) if n else 0
    one = bool((batch.linktype == lt0).all())
    # (np.unique is avoided on the common one-link-type path: it imports numpy.ma.)
    for lt in [lt0] if one else sorted(set(batch.linktype.tolist())):
        m = slice(None) if one else batch.linktype == lt
        net[m], ver[m], ok[m], slow[m] = _link(by, int(lt), off[m], end[m], counts)
    idx4 = np.flatnonzero(ok & (ver == 4))
    idx6 = np.flatnonzero(ok & (ver == 6))
    wire = end if batch.wirelen is None else off + batch.wirelen
    zero = np.zeros(0, dtype=np.int64)
    p4, s4 = _ipv4(by, _at(net, idx4, n), _at(end, idx4, n), _at(wire, idx4, n), idx4, counts, True)
    p6, s6 = _ipv6(by, _at(net, idx6, n), _at(end, idx6, n), _at(wire, idx6, n), idx6, counts, True)
    parts = [p4, p6]
    more = np.flatnonzero(slow)
    if s4.size:
        # The common tunnels over IPv4 in bulk; the rest (and anything nested
        # deeper) from the record's first byte, one packet at a time.
        bulk, s4 = _bulk_tunnels(by, net, end, wire, s4, counts, tunnels)
        parts += bulk
    if more.size or s4.size or s6.size:
        parts += _general(batch, by, np.concatenate([more, s4, s6]), wire, counts, tunnels)
    parts = [p for p in parts if p[0].size]
    if not parts:
        e = zero
        return TcpColumns(e, np.zeros(0), np.zeros((0, 4), np.int64), np.zeros((0, 4), np.int64),
                          e, e, e, e, e, e, e, e)  # fmt: skip
    rows, tcp, tcplen, src, dst, tun = (
        np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in range(6)
    )
    if len(parts) > 1:  # keep capture order across families and paths
        o = np.argsort(rows, kind="stable")
        rows, tcp, tcplen, tun = rows[o], tcp[o], tcplen[o], tun[o]
        src, dst = np.take(src, o, axis=0), np.take(dst, o, axis=0)
    # TCP header (RFC 9293 §3.1): 20 bytes captured at least, data offset sane.
    have = _at(end, rows, n) - tcp
    hdr_ok = have >= 20
    th = by.rows(tcp, _TCP_HDR)
    doff = (th["off"] >> 4).astype(np.int64) * 4
    hdr_ok &= (doff >= 20) & (doff <= tcplen)
    bad = int((~hdr_ok).sum())
    if bad:
        short = int((have < 20).sum())
        if short:
            counts["truncated: tcp header"] += short
        if bad - short:
            counts["bad header: tcp data offset"] += bad - short
        keep = np.flatnonzero(hdr_ok)
        rows, th, tcplen, src, dst, doff, tun, tcp = (
            rows[keep], th[keep], tcplen[keep], np.take(src, keep, axis=0),
            np.take(dst, keep, axis=0), doff[keep], tun[keep],
            tcp[keep],
        )  # fmt: skip
    flags = th["flags"].astype(np.int64)
    if verify_checksums and rows.size:
        bad_sum = _bad_checksums(by, tcp, tcplen, end[rows], src, dst)
        nbad = int(bad_sum.sum())
        if nbad:
            counts["bad checksum: tcp"] += nbad
            flags = np.where(bad_sum, flags | BAD_CHECKSUM, flags)
        counts["tcp"] += rows.size - nbad
    else:
        counts["tcp"] += rows.size
    return TcpColumns(
        frame=_at(batch.frame, rows, n),
        ts=_at(batch.ts, rows, n),
        src=src,
        dst=dst,
        sport=th["sport"].astype(np.int64),
        dport=th["dport"].astype(np.int64),
        seq=th["seq"].astype(np.int64),
        ack=th["ack"].astype(np.int64),
        flags=flags,
        window=th["window"].astype(np.int64),
        plen=tcplen - doff,
        tunnel=tun,
    )


_Part = tuple[I64, I64, I64, I64, I64, I64]

# Not a TCP flag (those are the low 8 bits): the mark decode puts on a segment
# whose checksum failed (``verify_checksums``); the tracker drops the segment
# and writes Zeek's ``C``/``c``.
BAD_CHECKSUM = 0x200


def _bad_checksums(by: _Bytes, tcp: I64, tcplen: I64, end: I64, src: I64, dst: I64) -> Mask:
    """Segments captured whole whose checksum is wrong: the one's-complement
    sum of the pseudo-header (addresses, protocol 6, TCP length) and of the
    segment's 16-bit words must be 0xFFFF.  The segment's words are summed
    from prefix sums over the chunk, one per byte parity."""
    whole = tcp + tcplen <= end
    b = by.b.astype(np.int64)
    word = (b[:-1] << 8) | b[1:]  # the 16-bit word starting at each byte
    pos = np.arange(word.size)
    prefix = []
    for parity in (0, 1):
        w = np.where(pos % 2 == parity, word, 0)
        prefix.append(np.concatenate([[0], np.cumsum(w)]))
    t = np.where(whole, tcp, 0)
    n = np.where(whole, tcplen, 0)
    full = n & ~1
    par = t % 2
    pe, po = prefix
    total = np.where(par == 0, pe[t + full] - pe[t], po[t + full] - po[t])
    odd = (n & 1) == 1
    total += np.where(odd, b[np.minimum(t + n - 1, b.size - 1)] << 8, 0)
    # Pseudo-header: IPv4 (mapped ::ffff:a.b.c.d) or IPv6 addresses.
    v4 = (src[:, 0] == 0) & (src[:, 1] == 0) & (src[:, 2] == 0xFFFF)
    words = np.where(v4[:, None], np.c_[src[:, 3:], dst[:, 3:]], 0)
    six = np.c_[src, dst]
    addr = np.where(v4[:, None], np.pad(words, ((0, 0), (0, 6))), six)
    total += ((addr >> 16) + (addr & 0xFFFF)).sum(axis=1) + 6 + n
    for _ in range(4):
        total = (total & 0xFFFF) + (total >> 16)
    bad: Mask = whole & (total != 0xFFFF)
    return bad


def _general(
    batch: RawBatch, by: _Bytes, rows: I64, wire: I64, counts: Counter[str], tunnels: Tunnels
) -> list[_Part]:
    """The packets the bulk path could not finish, walked one at a time by
    :func:`decap.walk`; their inner IP packets decoded in bulk."""
    buf = memoryview(by.b.data)
    off, cap, lts = batch.data_off, batch.caplen, batch.linktype
    r_out: list[int] = []
    ip_out: list[int] = []
    t_out: list[int] = []
    for r in np.sort(rows).tolist():
        o = int(off[r])
        found, why = decap.walk(buf, o, o + int(cap[r]), int(lts[r]))
        if why is not None:
            counts[why] += 1
        for inner in found:
            r_out.append(r)
            ip_out.append(inner.ip)
            t_out.append(tunnels.id(inner.tunnels))
    if not r_out:
        return []
    rr = np.array(r_out, dtype=np.int64)
    ip = np.array(ip_out, dtype=np.int64)
    tid = np.array(t_out, dtype=np.int64)
    ndec = int((tid > 0).sum())
    if ndec:
        counts["decapsulated"] += ndec
    end = off[rr] + cap[rr]
    v = by.u8(ip) >> 4
    parts: list[_Part] = []
    for want, fn in ((4, _ipv4), (6, _ipv6)):
        sel = np.flatnonzero((v == want) & (ip < end))
        if sel.size:
            p, _ = fn(by, ip[sel], end[sel], wire[rr[sel]], sel, counts, False)
            parts.append((rr[p[0]], *p[1:5], tid[p[0]]))
    bad = int(((v != 4) & (v != 6) | (ip >= end)).sum())
    if bad:
        counts["not ip: inner ip version"] += bad
    return parts


_VXLAN, _GRE_TEB = 4789, 0x6558


def _bulk_tunnels(
    by: _Bytes, net: I64, end: I64, wire: I64, rows: I64, counts: Counter[str], tunnels: Tunnels
) -> tuple[list[_Part], I64]:
    """IPv4 carriers of the common tunnels decoded in bulk: IP-in-IP
    (protocol 4/41), plain GRE (no flags, version 0) carrying IP or Ethernet,
    and VXLAN (UDP 4789) carrying Ethernet with IPv4/IPv6.  Returns the
    inner packets' parts and the rows left for the general path (other
    tunnels, options, tags, outer fragments, and inner packets that are
    tunnels again)."""
    ip = net[rows]
    h = by.rows(ip, _IPV4_HDR)
    ihl = (h["vihl"] & 0x0F).astype(np.int64) * 4
    proto = h["proto"].astype(np.int64)
    l4 = ip + ihl
    frag = (h["frag"] & 0x3FFF) != 0
    inner = np.full(rows.size, -1, dtype=np.int64)  # inner IP offset
    kind = np.zeros(rows.size, dtype=np.int64)  # 1 ip, 2 gre, 3 vxlan
    sport = np.zeros(rows.size, dtype=np.int64)
    dport = np.zeros(rows.size, dtype=np.int64)
    ipip = ~frag & ((proto == 4) | (proto == 41))
    inner[ipip], kind[ipip] = l4[ipip], 1
    eth = np.full(rows.size, -1, dtype=np.int64)  # inner Ethernet offset
    gre = ~frag & (proto == 47) & (l4 + 4 <= end[rows])
    gflags, gproto = by.u16(l4), by.u16(l4 + 2)
    gre &= gflags == 0
    g_ip = gre & ((gproto == ETH_IPV4) | (gproto == ETH_IPV6))
    inner[g_ip], kind[g_ip] = l4[g_ip] + 4, 2
    g_eth = gre & (gproto == _GRE_TEB)
    eth[g_eth], kind[g_eth] = l4[g_eth] + 4, 2
    udp = ~frag & (proto == 17) & (l4 + 8 <= end[rows])
    sp, dp = by.u16(l4), by.u16(l4 + 2)
    vx = udp & ((dp == _VXLAN) | (sp == _VXLAN))
    eth[vx], kind[vx] = l4[vx] + 16, 3
    sport[vx], dport[vx] = sp[vx], dp[vx]
    has_eth = eth >= 0
    et = by.u16(eth + 12)
    e_ip = has_eth & (eth + 14 < end[rows]) & ((et == ETH_IPV4) | (et == ETH_IPV6))
    inner[e_ip] = eth[e_ip] + 14
    ok = (inner >= 0) & (inner < end[rows])
    ver = by.u8(inner) >> 4
    ok &= (ver == 4) | (ver == 6)
    left = rows[~ok]
    q = np.flatnonzero(ok)
    if not q.size:
        return [], left
    # Tunnel ids: one per distinct (kind, outer addresses, ports).
    src, dst = h["src"].astype(np.int64)[q], h["dst"].astype(np.int64)[q]
    key = np.stack([kind[q], src, dst, sport[q], dport[q]], axis=1)
    order = np.lexsort(key.T[::-1])
    sk = key[order]
    brk = np.r_[True, (sk[1:] != sk[:-1]).any(axis=1)]
    grp = np.empty(q.size, dtype=np.int64)
    grp[order] = np.cumsum(brk) - 1
    names = {1: "ip", 2: "gre", 3: "vxlan"}
    ids = []
    for k, a, b, x, y in sk[brk].tolist():
        ta, tb = _v4_text(a), _v4_text(b)
        if k == 3:
            ta, tb = f"{ta}:{x}", f"{tb}:{y}"
        ids.append(tunnels.id(((names[k], ta, tb),)))
    tid = np.array(ids, dtype=np.int64)[grp]
    counts["decapsulated"] += int(q.size)
    r, ip2, v2 = rows[q], inner[q], ver[q]
    parts: list[_Part] = []
    again: list[I64] = [left]
    for want, fn in ((4, _ipv4), (6, _ipv6)):
        sel = np.flatnonzero(v2 == want)
        if sel.size:
            p, nested = fn(by, ip2[sel], end[r[sel]], wire[r[sel]], sel, counts, True)
            parts.append((r[p[0]], *p[1:5], tid[p[0]]))
            again.append(r[nested])
            counts["decapsulated"] -= int(nested.size)  # the general path counts them
    return parts, np.concatenate(again)


def _v4_text(word: int) -> str:
    return f"{word >> 24}.{(word >> 16) & 255}.{(word >> 8) & 255}.{word & 255}"


def _tunnel_carriers(by: _Bytes, proto: I64, l4: I64, end: I64) -> npt.NDArray[np.bool_]:
    """IP packets whose payload is a tunnel: IP-in-IP, GRE, UDP to or
    from a tunnel port, or other UDP whose content may be a tunnel (the
    general path decides)."""
    carrier = member(proto, _TUNNEL_PROTOS)
    udp = (proto == 17) & (l4 + 4 <= end)
    if udp.any():
        ports = member(by.u16(l4), _UDP_TUNNEL_PORTS) | member(by.u16(l4 + 2), _UDP_TUNNEL_PORTS)
        carrier |= udp & ports
        other = np.flatnonzero(udp & ~ports)
        if other.size:
            carrier[other] = _maybe_detected(by, l4[other] + 8, end[other])
    return carrier


_TEREDO_PREFIX = int.from_bytes(decap.TEREDO_PREFIX, "big")


def _maybe_detected(by: _Bytes, pay: I64, end: I64) -> npt.NDArray[np.bool_]:
    """UDP payloads at ``pay`` that may carry a tunnel found by its content
    (:func:`finwait.capture.decap.detect_udp`, which decides): a superset,
    narrow enough that other UDP (QUIC's short headers begin with 0x40–0x7f)
    rarely takes the slow path."""
    n = end - pay
    b0, b1, b2 = by.u8(pay), by.u8(pay + 1), by.u8(pay + 2)
    ayiya = (n >= 3) & (b1 == 0x52) & (b2 == 0x11)
    v6 = (b0 >> 4 == 6) & (
        (by.u32(pay + 8) == _TEREDO_PREFIX) | (by.u32(pay + 24) == _TEREDO_PREFIX) | (b1 <= 1)
    )
    teredo = (n >= 40) & (v6 | ((b0 == 0) & (b1 <= 1)))
    out: npt.NDArray[np.bool_] = ayiya | teredo
    return out


def _ipv4(
    by: _Bytes, ip: I64, end: I64, wire: I64, rows: I64, counts: Counter[str], handoff: bool
) -> tuple[_Part, I64]:
    """(rows, tcp offset, tcp length, src, dst, 0) for the IPv4 packets
    carrying TCP, and (with ``handoff``) the rows that carry a tunnel.

    A total length of 0 is what a host doing TCP segmentation offload (or
    Linux's BIG TCP, over 64 KiB) hands to the capture before the length is
    filled in: the length is then taken from the packet's length on the wire
    (the record's original length), as Zeek and Wireshark take it from the
    capture, and counted as ``ipv4_length_from_capture``."""
    ok = end - ip >= 20
    short = int((~ok).sum())
    if short:
        counts["truncated: ipv4 header"] += short
    h = by.rows(ip, _IPV4_HDR)
    ihl = (h["vihl"] & 0x0F).astype(np.int64) * 4
    total = h["total"].astype(np.int64)
    zero = ok & (total == 0)
    if zero.any():
        total = np.where(zero, wire - ip, total)
        counts["ipv4_length_from_capture"] += int((zero & (total >= ihl) & (ihl >= 20)).sum())
    ok &= (ihl >= 20) & (total >= ihl)
    bad = int((~ok).sum()) - short
    if bad:
        counts["bad header: ipv4"] += bad
    frag = (h["frag"] & 0x3FFF) != 0  # MF or fragment offset (RFC 791)
    proto = h["proto"].astype(np.int64)
    tcp = proto == 6
    slow = np.zeros(0, dtype=np.int64)
    if handoff:
        carrier = ok & ~tcp & _tunnel_carriers(by, proto, ip + ihl, end)
        if carrier.any():
            slow = rows[carrier]
            ok &= ~carrier
    nfrag = int((ok & frag & tcp).sum())
    if nfrag:
        counts["fragment: ipv4"] += nfrag
    nontcp = ok & ~tcp
    if nontcp.any():
        _count_values(counts, "not tcp", proto[nontcp], "protocol {}", decap.IPPROTO_NAMES)
    keep = np.flatnonzero(ok & ~frag & tcp)
    # (the header fields taken one by one: gathering whole structured
    # records is a slow per-element copy)
    n = ip.size
    ip, ihl, total, rows = (
        _at(ip, keep, n),
        _at(ihl, keep, n),
        _at(total, keep, n),
        _at(rows, keep, n),
    )
    words = np.zeros((keep.size, 4), dtype=np.int64)
    words[:, 2] = _V4_MAPPED
    src = words.copy()
    src[:, 3] = _at(h["src"], keep, n)
    words[:, 3] = _at(h["dst"], keep, n)
    return (rows, ip + ihl, total - ihl, src, words, np.zeros(keep.size, np.int64)), slow


def _ipv6(
    by: _Bytes, ip: I64, end: I64, wire: I64, rows: I64, counts: Counter[str], handoff: bool
) -> tuple[_Part, I64]:
    """As :func:`_ipv4`; a payload length of 0 (a jumbogram, RFC 2675, or
    Linux's BIG TCP) is taken from the packet's length on the wire, counted
    as ``ipv6_length_from_capture``."""
    ok = end - ip >= 40
    short = int((~ok).sum())
    if short:
        counts["truncated: ipv6 header"] += short
    plen = by.u16(ip + 4)
    zero = ok & (plen == 0) & (wire - ip > 40)
    if zero.any():
        plen = np.where(zero, wire - ip - 40, plen)
        counts["ipv6_length_from_capture"] += int(zero.sum())
    nh = by.u8(ip + 6)
    cur = ip + 40
    frag = np.zeros(ip.size, dtype=bool)
    # Walk extension headers (RFC 8200 §4); eight is more than any real chain.
    for _ in range(8):
        ext = ok & member(nh, (*_IPV6_EXT_6LEN, _IPV6_FRAG, _IPV6_AH))
        if not ext.any():
            break
        ok &= ~ext | (cur + 8 <= end)
        hlen = np.where(
            nh == _IPV6_FRAG,
            8,
            np.where(nh == _IPV6_AH, (by.u8(cur + 1) + 2) * 4, (by.u8(cur + 1) + 1) * 8),
        )
        # A fragment header with offset 0 and M clear is an atomic fragment (RFC 6946).
        frag |= ext & (nh == _IPV6_FRAG) & (by.u16(cur + 2) & 0xFFF9 != 0)
        nh = np.where(ext, by.u8(cur), nh)
        cur = np.where(ext, cur + hlen, cur)
    tcplen = plen - (cur - ip - 40)
    ok &= tcplen >= 0
    bad = int((~ok).sum()) - short
    if bad:
        counts["bad header: ipv6"] += bad
    tcp = nh == 6
    slow = np.zeros(0, dtype=np.int64)
    if handoff:
        carrier = ok & ~frag & ~tcp & _tunnel_carriers(by, nh, cur, end)
        if carrier.any():
            slow = rows[carrier]
            ok &= ~carrier
    nfrag = int((ok & frag).sum())
    if nfrag:
        counts["fragment: ipv6"] += nfrag
    nontcp = ok & ~frag & ~tcp
    if nontcp.any():
        _count_values(counts, "not tcp", nh[nontcp], "protocol {}", decap.IPPROTO_NAMES)
    keep = np.flatnonzero(ok & ~frag & tcp)
    ip = ip[keep]
    src = np.stack([by.u32(ip + 8 + 4 * k) for k in range(4)], axis=1)
    dst = np.stack([by.u32(ip + 24 + 4 * k) for k in range(4)], axis=1)
    return (
        rows[keep], cur[keep], tcplen[keep], src.reshape(-1, 4), dst.reshape(-1, 4),
        np.zeros(keep.size, np.int64),
    ), slow  # fmt: skip
