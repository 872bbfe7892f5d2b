"""Decapsulation: the general path from a record's first byte to the IP
packet that carries TCP, through any stack of link layers, tags, labels and
tunnels, one packet at a time in Python.

The fast path (:mod:`finwait.capture.decode`) decodes plain Ethernet (with up
to two VLAN tags), Linux SLL/SLL2, NULL/LOOP and raw IP in bulk; every packet
it cannot finish (an unknown link type, an EtherType it does not decode, an
IP packet whose protocol is a tunnel) comes here.  Each layer is one entry
of a table: a function that reads its header at ``off`` and says what comes
next (the next layer's name and offset), and, for a tunnel, what to record
about it (type and outer endpoints, like Zeek's ``tunnel_parents``).  A
packet stops at an IP packet that is not a tunnel (the fast path decodes it
and its TCP header), or at a layer that cannot go on, with a reason:

* ``unsupported encapsulation: <what>`` — a header this table does not know,
* ``truncated: <layer>`` — the capture ends inside a header,
* ``not ip: <what>`` — a frame that carries no IP (ARP, management frames),
* ``not tcp: <what>`` — an IP packet that is not TCP and not a tunnel,
* ``fragment: <layer>`` — an outer IP fragment (not reassembled),
* ``tunnel depth exceeded`` — more than :data:`MAX_DEPTH` nested layers.

Formats: Ethernet II, IEEE 802.3 with 802.2 LLC/SNAP, Cisco FabricPath
(EtherType 0x8903, 16-byte outer header); 802.1Q/802.1ad tags (0x8100,
0x88A8, 0x9100, 0x9200); MPLS label stacks (RFC 3032) ending in IPv4, IPv6
or, after a zero control word (RFC 4385), Ethernet; PBB (802.1ah I-tag);
VN-Tag (0x8926); PPPoE sessions (RFC 2516) and PPP (RFC 1661, HDLC-like
framing RFC 1662); FDDI; Linux SLL/SLL2; NFLOG; 802.11 data frames (QoS,
four-address, A-MSDU) with radiotap; IP-in-IP (RFC 2003, 4213, 2473); GRE
(RFC 2784/2890: checksum, key, sequence; PPTP's enhanced GRE, RFC 2637;
transparent Ethernet bridging 0x6558; ERSPAN I/II (0x88BE) and III (0x22EB);
Aruba's 802.11-in-GRE); GRE over UDP (RFC 8086, port 4754); VXLAN (RFC 7348,
4789); Geneve (RFC 8926, 6081, options skipped); GTP-U (3GPP TS 29.281,
2152, G-PDUs with extension headers); Teredo (RFC 4380, 3544, with
authentication and origin-indication headers); AYIYA (5072).  Teredo and
AYIYA are also found on other ports by their content, as Zeek finds them
(:func:`detect_udp`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_DEPTH = 16  # layers walked per packet; tunnels nest at most this deep
Buf = bytes | memoryview

ETHERTYPES: dict[int, str] = {
    0x0800: "ip4",
    0x86DD: "ip6",
    0x8100: "vlan",
    0x88A8: "vlan",
    0x9100: "vlan",
    0x9200: "vlan",
    0x8847: "mpls",
    0x8848: "mpls",
    0x8864: "pppoe",
    0x88E7: "pbb",
    0x8926: "vntag",
    0x6558: "eth",  # transparent Ethernet bridging (in GRE, Geneve)
}
NOT_IP_ETHERTYPES = {0x0806: "arp", 0x8035: "rarp", 0x88CC: "lldp", 0x8863: "pppoe discovery"}
PPP_PROTOCOLS = {0x0021: "ip4", 0x0057: "ip6", 0x0281: "mpls"}
UDP_TUNNELS: dict[int, str] = {
    4789: "vxlan",
    6081: "geneve",
    2152: "gtpu",
    3544: "teredo",
    5072: "ayiya",
    4754: "gre",
}
IP_TUNNEL_PROTOS = {4: "ip4", 41: "ip6", 47: "gre", 17: "udp"}
IPPROTO_NAMES = {
    1: "icmp", 2: "igmp", 17: "udp", 50: "esp", 58: "icmpv6", 59: "no next header", 132: "sctp",
}  # fmt: skip

# Link types handled here (tcpdump.org LINKTYPE_* values).
LINKTYPES: dict[int, str] = {
    0: "null",
    1: "eth",
    9: "ppp",
    10: "fddi",
    12: "raw",
    14: "raw",
    50: "ppp",  # PPP in HDLC-like framing
    51: "pppoe",  # PPPoE session header, no Ethernet
    101: "raw",
    105: "wlan",
    108: "loop",
    113: "sll",
    127: "radiotap",
    204: "ppp_dir",
    228: "ip4",
    229: "ip6",
    239: "nflog",
    276: "sll2",
}


@dataclass(slots=True)
class Step:
    """What one layer found: the next layer and where it starts, or why the
    walk stops; and the tunnel it opened, if any."""

    next: str | None
    off: int
    tunnel: tuple[str, str, str] | None = None
    reason: str | None = None
    more: list[int] = field(default_factory=list)  # further inner frames (A-MSDU)


def _stop(reason: str) -> Step:
    return Step(None, 0, reason=reason)


Layer = Callable[[Buf, int, int, "Ctx"], Step]  # (buffer, offset, end, context)


@dataclass(slots=True)
class Ctx:
    """What a tunnel layer needs from the layers above it: the outer IP
    endpoints and the UDP ports."""

    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0


def _ethertype(et: int, off: int) -> Step:
    nxt = ETHERTYPES.get(et)
    if nxt is not None:
        return Step(nxt, off)
    what = NOT_IP_ETHERTYPES.get(et)
    if what is not None:
        return _stop(f"not ip: {what}")
    return _stop(f"unsupported encapsulation: ethertype 0x{et:04x}")


def _eth(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 14 > end:
        return _stop("truncated: ethernet")
    et = b[off + 12] << 8 | b[off + 13]
    if et == 0x8903:  # Cisco FabricPath: a 16-byte outer header, then Ethernet
        return Step("eth", off + 16)
    if et <= 1500:  # IEEE 802.3 length: 802.2 LLC follows
        return Step("llc", off + 14)
    if et < 1536:
        return _stop(f"unsupported encapsulation: ethertype 0x{et:04x}")
    return _ethertype(et, off + 14)


def _llc(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 3 > end:
        return _stop("truncated: llc")
    dsap, ssap = b[off], b[off + 1]
    if dsap == 0xAA and ssap == 0xAA:  # SNAP: OUI, then an EtherType
        if off + 8 > end:
            return _stop("truncated: snap")
        return _ethertype(b[off + 6] << 8 | b[off + 7], off + 8)
    if dsap == 0xFF and ssap == 0xFF:
        return _stop("not ip: novell raw 802.3")
    if dsap == 0x06 and ssap == 0x06:  # IP directly over LLC (RFC 1042 allows it)
        return Step("ip4", off + 3)
    return _stop(f"not ip: llc sap 0x{dsap:02x}")


def _vlan(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 4 > end:
        return _stop("truncated: vlan tag")
    et = b[off + 2] << 8 | b[off + 3]
    if et <= 1500:
        return Step("llc", off + 4)
    return _ethertype(et, off + 4)


def _mpls(b: Buf, off: int, end: int, c: Ctx) -> Step:
    for _ in range(MAX_DEPTH):
        if off + 4 > end:
            return _stop("truncated: mpls")
        bos = b[off + 2] & 1
        off += 4
        if bos:
            break
    else:
        return _stop("unsupported encapsulation: mpls stack deeper than 16")
    if off >= end:
        return _stop("truncated: mpls")
    nib = b[off] >> 4
    if nib == 4:
        return Step("ip4", off)
    if nib == 6:
        return Step("ip6", off)
    if nib == 0:  # pseudowire control word (RFC 4385), then Ethernet
        return Step("eth", off + 4)
    return _stop("unsupported encapsulation: mpls payload")


def _pbb(b: Buf, off: int, end: int, c: Ctx) -> Step:
    # 802.1ah I-tag (4 bytes), then the customer's Ethernet frame.
    return Step("eth", off + 4)


def _vntag(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 6 > end:
        return _stop("truncated: vn-tag")
    return _ethertype(b[off + 4] << 8 | b[off + 5], off + 6)


def _pppoe(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 8 > end:
        return _stop("truncated: pppoe")
    if b[off + 1] != 0:  # code 0: session data
        return _stop("not ip: pppoe control")
    return _ppp_proto(b[off + 6] << 8 | b[off + 7], off + 8)


def _ppp_proto(proto: int, off: int) -> Step:
    nxt = PPP_PROTOCOLS.get(proto)
    if nxt is None:
        return _stop(f"not ip: ppp protocol 0x{proto:04x}")
    return Step(nxt, off)


def _ppp(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 2 > end:
        return _stop("truncated: ppp")
    if b[off] == 0xFF and b[off + 1] == 0x03:  # HDLC address and control
        off += 2
    if off + 1 > end:
        return _stop("truncated: ppp")
    if b[off] & 1:  # protocol field compressed to one byte (RFC 1661 §6.5)
        return _ppp_proto(b[off], off + 1)
    if off + 2 > end:
        return _stop("truncated: ppp")
    return _ppp_proto(b[off] << 8 | b[off + 1], off + 2)


def _ppp_dir(b: Buf, off: int, end: int, c: Ctx) -> Step:
    return _ppp(b, off + 1, end, c)  # one direction byte first


def _fddi(b: Buf, off: int, end: int, c: Ctx) -> Step:
    return Step("llc", off + 13)  # frame control, two addresses


def _null(b: Buf, off: int, end: int, c: Ctx, big: bool = False) -> Step:
    if off + 4 > end:
        return _stop("truncated: loopback header")
    af = struct.unpack_from(">I" if big else "<I", b, off)[0]
    if not big and af > 0xFFFF:
        af = struct.unpack_from(">I", b, off)[0]
    if af == 2:
        return Step("ip4", off + 4)
    if af in (10, 24, 28, 30):
        return Step("ip6", off + 4)
    return _stop(f"not ip: address family {af}")


def _loop(b: Buf, off: int, end: int, c: Ctx) -> Step:
    return _null(b, off, end, c, big=True)


def _raw(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off >= end:
        return _stop("truncated: ip")
    v = b[off] >> 4
    if v == 4:
        return Step("ip4", off)
    if v == 6:
        return Step("ip6", off)
    return _stop("not ip: raw ip version")


def _sll(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 16 > end:
        return _stop("truncated: sll")
    return _sll_proto(b[off + 14] << 8 | b[off + 15], off + 16)


def _sll2(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 20 > end:
        return _stop("truncated: sll2")
    return _sll_proto(b[off] << 8 | b[off + 1], off + 20)


def _sll_proto(proto: int, off: int) -> Step:
    if proto == 0x0004:  # 802.2 LLC frames
        return Step("llc", off)
    return _ethertype(proto, off)


def _nflog(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 4 > end:
        return _stop("truncated: nflog")
    family = b[off]
    pos = off + 4
    while pos + 4 <= end:  # TLVs in host byte order (little-endian captures)
        tlen, ttype = struct.unpack_from("<HH", b, pos)
        if tlen < 4:
            return _stop("truncated: nflog tlv")
        if ttype == 9:  # NFULA_PAYLOAD
            return Step("ip4" if family == 2 else "ip6", pos + 4)
        pos += (tlen + 3) & ~3
    return _stop("not ip: nflog without payload")


def _radiotap(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 4 > end:
        return _stop("truncated: radiotap")
    return Step("wlan", off + (b[off + 2] | b[off + 3] << 8))


def _wlan(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 24 >= end:
        return _stop("truncated: 802.11")
    fc, flags = b[off], b[off + 1]
    if (fc >> 2) & 3 != 2:
        return _stop("not ip: 802.11 management or control frame")
    if (fc >> 4) & 4:
        return _stop("not ip: 802.11 null data frame")
    hlen = 24 + (6 if flags & 3 == 3 else 0)
    amsdu = False
    if (fc >> 4) & 8:  # QoS data
        if off + hlen + 2 > end:
            return _stop("truncated: 802.11")
        amsdu = bool(b[off + hlen] & 0x80)
        hlen += 2
        if flags & 0x80:  # +HTC: HT control field
            hlen += 4
    if flags & 0x40:
        return _stop("unsupported encapsulation: 802.11 protected (encrypted) frame")
    pos = off + hlen
    if not amsdu:
        return Step("snap80211", pos)
    # A-MSDU: subframes of DA, SA, length, then LLC/SNAP; each padded to 4.
    frames: list[int] = []
    while pos + 14 <= end:
        n = b[pos + 12] << 8 | b[pos + 13]
        frames.append(pos + 14)
        pos += 14 + n
        pos += (-(14 + n)) % 4
    if not frames:
        return _stop("truncated: 802.11 a-msdu")
    return Step("snap80211", frames[0], more=frames[1:])


def _snap80211(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 8 > end:
        return _stop("truncated: 802.11 llc")
    if b[off] != 0xAA or b[off + 1] != 0xAA or b[off + 2] != 3:
        return _stop("not ip: 802.11 llc")
    return _ethertype(b[off + 6] << 8 | b[off + 7], off + 8)


_ADDR_TEXT: dict[bytes, str] = {}  # tunnel endpoints repeat: format each once


def _addr(b: Buf, off: int, n: int) -> str:
    raw = bytes(b[off : off + n])
    text = _ADDR_TEXT.get(raw)
    if text is None:
        if len(_ADDR_TEXT) > 65536:
            _ADDR_TEXT.clear()
        import ipaddress  # (on use: start-up)

        text = _ADDR_TEXT[raw] = str(ipaddress.ip_address(raw))
    return text


def _ip4(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 20 > end:
        return _stop("truncated: ipv4 header")
    ihl = (b[off] & 0x0F) * 4
    proto = b[off + 9]
    nxt = IP_TUNNEL_PROTOS.get(proto)
    if nxt is None or ihl < 20:
        return Step("inner", off)  # the fast path decodes it (TCP or not)
    if b[off + 6] & 0x3F or b[off + 7]:
        return _stop("fragment: outer ipv4")
    c.src, c.dst = _addr(b, off + 12, 4), _addr(b, off + 16, 4)
    return _ip_payload(b, off, off + ihl, end, nxt, c, ip_end(b, off, end))


def ip_end(b: Buf, off: int, end: int) -> int:
    total = b[off + 2] << 8 | b[off + 3]
    return min(end, off + total) if total else end


def _ip6(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 40 > end:
        return _stop("truncated: ipv6 header")
    nh = b[off + 6]
    pos = off + 40
    for _ in range(8):  # extension headers (RFC 8200 §4)
        if nh in (0, 43, 60, 51):
            if pos + 2 > end:
                return _stop("truncated: ipv6 extension header")
            hl = (b[pos + 1] + 2) * 4 if nh == 51 else (b[pos + 1] + 1) * 8
            nh, pos = b[pos], pos + hl
        elif nh == 44:
            if pos + 8 > end:
                return _stop("truncated: ipv6 fragment header")
            if (b[pos + 2] << 8 | b[pos + 3]) & 0xFFF9:
                return (
                    _stop("fragment: outer ipv6") if nh in IP_TUNNEL_PROTOS else Step("inner", off)
                )
            nh, pos = b[pos], pos + 8
        else:
            break
    nxt = IP_TUNNEL_PROTOS.get(nh)
    if nxt is None:
        return Step("inner", off)
    c.src, c.dst = _addr(b, off + 8, 16), _addr(b, off + 24, 16)
    plen = b[off + 4] << 8 | b[off + 5]
    return _ip_payload(b, off, pos, end, nxt, c, min(end, off + 40 + plen) if plen else end)


def _ip_payload(b: Buf, ip: int, pos: int, end: int, nxt: str, c: Ctx, iend: int) -> Step:
    if nxt == "udp":
        if pos + 8 > end:
            return _stop("truncated: udp header")
        sport, dport = b[pos] << 8 | b[pos + 1], b[pos + 2] << 8 | b[pos + 3]
        kind = UDP_TUNNELS.get(dport) or UDP_TUNNELS.get(sport) or detect_udp(b, pos + 8, iend)
        if kind is None:
            return _stop("not tcp: udp")
        c.sport, c.dport = sport, dport
        return Step(kind, pos + 8, (kind, f"{c.src}:{sport}", f"{c.dst}:{dport}"))
    kind = "gre" if nxt == "gre" else "ip"
    return Step(nxt, pos, (kind, c.src, c.dst))


TEREDO_PREFIX = b"\x20\x01\x00\x00"  # 2001:0::/32 (RFC 4380 §2.6)


def detect_udp(b: Buf, pos: int, end: int) -> str | None:
    """The tunnel a UDP payload at ``pos`` (to ``end``, the IP packet's
    captured end) carries on a port no tunnel is registered for, found by
    its content as Zeek finds it (its UDP analyzer's protocol detection,
    tried in Zeek's order): AYIYA by bytes 1–2 of its header, ``52 11``;
    Teredo by an IPv6 header whose source or destination is a Teredo
    address (2001:0::/32), or by an authentication or origin-indication
    header followed by an IPv6 header."""
    n = end - pos
    if n >= 3 and b[pos + 1] == 0x52 and b[pos + 2] == 0x11:
        return "ayiya"
    return "teredo" if n >= 40 and _looks_teredo(bytes(b[pos:end])) else None


def _looks_teredo(p: bytes) -> bool:
    """Zeek's Teredo detection (``TeredoAnalyzer::DetectProtocol``) on a
    UDP payload of at least 40 bytes, quirks included: its pattern's ``.``
    does not match a newline byte, and the header tests read byte 1 whatever
    byte 0 is."""
    v6 = p[0] >> 4 == 6
    if not v6 and (p[0] != 0 or p[1] > 1):
        return False
    if v6 and (
        (p[8:12] == TEREDO_PREFIX and b"\n" not in p[1:8] and b"\n" not in p[12:40])
        or (p[24:28] == TEREDO_PREFIX and b"\n" not in p[1:24] and b"\n" not in p[28:40])
    ):
        return True
    pos, tag = 0, p[1]
    if tag == 1:  # authentication: 4 bytes, the client id, the value, nonce and confirmation
        pos = 13 + p[2] + p[3]
        if len(p) - pos < 40:
            return False
        tag = p[pos] << 8 | p[pos + 1]
    if tag == 0:  # origin indication: 8 bytes
        pos += 8
        return len(p) - pos >= 40 and p[pos] >> 4 == 6
    return False


def _gre(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 4 > end:
        return _stop("truncated: gre")
    fv = b[off] << 8 | b[off + 1]
    proto = b[off + 2] << 8 | b[off + 3]
    ver = fv & 7
    if ver > 1:
        return _stop(f"unsupported encapsulation: gre version {ver}")
    if fv & 0x4000:
        return _stop("unsupported encapsulation: gre routing")
    hlen = 4 + sum(4 for bit in (0x8000, 0x2000, 0x1000, 0x0080) if fv & bit)
    pos = off + hlen
    if ver == 1:  # PPTP: PPP in enhanced GRE (RFC 2637 §4.1)
        if proto != 0x880B:
            return _stop("unsupported encapsulation: enhanced gre not ppp")
        return _ppp(b, pos, end, c)
    if proto == 0x88BE:  # ERSPAN II (with a sequence number) or I (without)
        return Step("eth", pos + (8 if fv & 0x1000 else 0))
    if proto == 0x22EB:  # ERSPAN III: 12 bytes, 8 more with the O flag
        if pos + 12 > end:
            return _stop("truncated: erspan")
        return Step("eth", pos + 12 + (8 if b[pos + 11] & 1 else 0))
    if ((proto & 0x8200) == 0x8200 or (proto & 0x8300) == 0x8300) and proto & 0x0F == 0:
        return Step("wlan", pos)  # Aruba: 802.11 frames in GRE
    if proto == 0x9000:
        return Step("wlan", pos)
    return _ethertype(proto, pos)


def _vxlan(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 8 > end:
        return _stop("truncated: vxlan")
    return Step("eth", off + 8)


def _geneve(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 8 > end:
        return _stop("truncated: geneve")
    optlen = (b[off] & 0x3F) * 4
    proto = b[off + 2] << 8 | b[off + 3]
    return _ethertype(proto, off + 8 + optlen)


def _gtpu(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 8 > end:
        return _stop("truncated: gtp")
    flags, mtype = b[off], b[off + 1]
    if flags >> 5 != 1 or not flags & 0x10:
        return _stop("not tcp: udp (not gtp-u v1)")
    if mtype != 0xFF:
        return _stop("not ip: gtp-u signalling")
    pos = off + 8
    if flags & 7:
        if pos + 4 > end:
            return _stop("truncated: gtp")
        ext = b[pos + 3] if flags & 4 else 0
        pos += 4
        while ext:
            if pos + 1 > end:
                return _stop("truncated: gtp extension header")
            n = b[pos] * 4
            if not n or pos + n > end:
                return _stop("truncated: gtp extension header")
            ext = b[pos + n - 1]
            pos += n
    return _raw(b, pos, end, c)


def _teredo(b: Buf, off: int, end: int, c: Ctx) -> Step:
    pos = off
    if pos + 2 <= end and b[pos] == 0 and b[pos + 1] == 1:  # authentication
        if pos + 4 > end:
            return _stop("truncated: teredo")
        pos += 4 + b[pos + 2] + b[pos + 3] + 9
    if pos + 2 <= end and b[pos] == 0 and b[pos + 1] == 0:  # origin indication
        pos += 8
    if pos + 40 > end or b[pos] >> 4 != 6:
        return _stop("not tcp: udp (not teredo)")
    return Step("ip6", pos)


def _ayiya(b: Buf, off: int, end: int, c: Ctx) -> Step:
    if off + 8 > end:
        return _stop("truncated: ayiya")
    if b[off + 2] & 0x0F != 1:  # opcode 1: forward
        return _stop("not ip: ayiya control")
    hlen = 8 + (1 << (b[off] >> 4)) + (b[off + 1] >> 4) * 4
    nh = b[off + 3]
    if nh == 4:
        return Step("ip4", off + hlen)
    if nh == 41:
        return Step("ip6", off + hlen)
    return _stop(f"not tcp: ayiya next header {nh}")


LAYERS: dict[str, Layer] = {
    "eth": _eth,
    "llc": _llc,
    "vlan": _vlan,
    "mpls": _mpls,
    "pbb": _pbb,
    "vntag": _vntag,
    "pppoe": _pppoe,
    "ppp": _ppp,
    "ppp_dir": _ppp_dir,
    "fddi": _fddi,
    "null": _null,
    "loop": _loop,
    "raw": _raw,
    "sll": _sll,
    "sll2": _sll2,
    "nflog": _nflog,
    "radiotap": _radiotap,
    "wlan": _wlan,
    "snap80211": _snap80211,
    "ip4": _ip4,
    "ip6": _ip6,
    "gre": _gre,
    "vxlan": _vxlan,
    "geneve": _geneve,
    "gtpu": _gtpu,
    "teredo": _teredo,
    "ayiya": _ayiya,
}


@dataclass(slots=True)
class Inner:
    """One IP packet found inside a record: its offset in the buffer and
    the tunnels around it, outermost first."""

    ip: int
    tunnels: tuple[tuple[str, str, str], ...]


def walk(b: Buf, off: int, end: int, linktype: int) -> tuple[list[Inner], str | None]:
    """The innermost IP packets of one record (several for an A-MSDU), or
    the reason there is none."""
    first = LINKTYPES.get(linktype)
    if first is None:
        return [], f"unsupported link type: {linktype}"
    out: list[Inner] = []
    todo: list[tuple[str, int, tuple[tuple[str, str, str], ...]]] = [(first, off, ())]
    reason: str | None = None
    while todo:
        kind, pos, tun = todo.pop()
        ctx = Ctx()
        for _ in range(MAX_DEPTH * 2):
            if kind == "inner":
                out.append(Inner(pos, tun))
                break
            step = LAYERS[kind](b, pos, end, ctx)
            if step.next is None:
                reason = step.reason
                break
            if step.tunnel is not None:
                if len(tun) >= MAX_DEPTH:
                    reason = "tunnel depth exceeded"
                    break
                tun = (*tun, step.tunnel)
            for extra in reversed(step.more):
                todo.append((step.next, extra, tun))
            kind, pos = step.next, step.off
            if pos > end:
                reason = f"truncated: {kind}"
                break
        else:
            reason = "tunnel depth exceeded"
    return out, (None if out else reason)
