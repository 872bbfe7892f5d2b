"""Hand-built packets and capture files for the reader tests (independent of
finwait's own writer, so the reader is checked against the formats, not
against ourselves)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
A4, B4 = "198.18.0.1", "198.18.0.2"
A6, B6 = "2001:db8::1", "2001:db8::2"


def tcp(
    sport: int, dport: int, seq: int, ack: int, flags: int, plen: int, opts: bytes = b""
) -> bytes:
    off = (20 + len(opts)) // 4
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 65535, 0, 0)
        + opts
        + b"x" * plen
    )


def ip4(src: str, dst: str, payload: bytes, options: bytes = b"", frag: int = 0) -> bytes:
    ihl = (20 + len(options)) // 4
    total = 20 + len(options) + len(payload)
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            total,
            1,
            frag,
            64,
            6,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + options
        + payload
    )


def ip6(src: str, dst: str, payload: bytes, hop_by_hop: bool = False) -> bytes:
    nh = 6
    ext = b""
    if hop_by_hop:
        ext = struct.pack("!BB", 6, 0) + b"\x01\x04\x00\x00\x00\x00"  # PadN
        nh = 0
    body = ext + payload
    return (
        struct.pack("!IHBB", 0x60000000, len(body), nh, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + body
    )


def seed_exchange(v6: bool = False) -> list[tuple[float, bytes]]:
    """The seed's connection: A sends 247 bytes, B 49; B closes first with
    seq=50 ack=248, A acks 51, A's FIN at 248, B acks 249 (relative)."""
    a, b = (A6, B6) if v6 else (A4, B4)
    mk = ip6 if v6 else ip4
    ia, ib = 1000, 4_294_967_000  # B's ISN wraps during the connection
    segs = [
        (a, b, ia, 0, SYN, 0),
        (b, a, ib, ia + 1, SYN | ACK, 0),
        (a, b, ia + 1, ib + 1, ACK, 0),
        (a, b, ia + 1, ib + 1, PSH | ACK, 247),
        (b, a, ib + 1, ia + 248, ACK, 0),
        (b, a, ib + 1, ia + 248, PSH | ACK, 49),
        (a, b, ia + 248, ib + 50, ACK, 0),
        (b, a, ib + 50, ia + 248, FIN | ACK, 0),
        (a, b, ia + 248, ib + 51, ACK, 0),
        (a, b, ia + 248, ib + 51, FIN | ACK, 0),
        (b, a, ib + 51, ia + 249, ACK, 0),
    ]
    out = []
    for i, (s, d, seq, ack, fl, n) in enumerate(segs):
        sp, dp = (40000, 80) if s == a else (80, 40000)
        out.append(
            (1.5 + i * 0.01, mk(s, d, tcp(sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, fl, n)))
        )
    return out


def link(linktype: int, pkt: bytes, v6: bool = False) -> bytes:
    et = b"\x86\xdd" if v6 else b"\x08\x00"
    if linktype == 1:
        return b"\x02" * 6 + b"\x04" * 6 + et + pkt
    if linktype == -1:  # Ethernet with QinQ (802.1ad outer, 802.1Q inner)
        return b"\x02" * 6 + b"\x04" * 6 + b"\x88\xa8\x00\x05\x81\x00\x00\x07" + et + pkt
    if linktype == 113:
        return struct.pack("!HHH8s", 0, 1, 6, b"\x02" * 8) + et + pkt
    if linktype == 276:
        return et + b"\x00\x00" + struct.pack("!IHBB8s", 2, 1, 0, 6, b"\x02" * 8) + pkt
    if linktype == 0:
        return struct.pack("<I", 30 if v6 else 2) + pkt
    if linktype == 108:
        return struct.pack(">I", 24 if v6 else 2) + pkt
    return pkt  # RAW 101/12/14, IPV4 228, IPV6 229


def pcap(
    packets: Sequence[tuple[float, bytes]],
    linktype: int,
    big: bool = False,
    ns: bool = False,
    snap: int | None = None,
) -> bytes:
    """A pcap file; with ``snap``, records keep that many bytes at most (the
    original length stays the packet's)."""
    e = ">" if big else "<"
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snap or 262144, linktype)]
    for t, data in packets:
        sec = int(t)
        frac = round((t - sec) * (1e9 if ns else 1e6))
        kept = data if snap is None else data[:snap]
        out.append(struct.pack(e + "IIII", sec, frac, len(kept), len(data)) + kept)
    return b"".join(out)


def zero_length(pkt: bytes) -> bytes:
    """The IP packet as a host doing TSO hands it to the capture: IPv4
    total length (or IPv6 payload length) 0."""
    if pkt[0] >> 4 == 4:
        return pkt[:2] + b"\0\0" + pkt[4:]
    return pkt[:4] + b"\0\0" + pkt[6:]


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def pcapng(
    packets: Sequence[tuple[float, bytes, int]],
    ifaces: Sequence[tuple[int, int | None]],
    big: bool = False,
    extra: bytes = b"",
) -> bytes:
    """``packets`` are (time, data, interface); ``ifaces`` (linktype, tsresol)."""
    e = ">" if big else "<"
    shb = _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    out = [shb]
    for lt, res in ifaces:
        opts = b""
        if res is not None:
            opts = (
                struct.pack(e + "HH", 9, 1) + bytes([res]) + b"\0\0\0" + struct.pack(e + "HH", 0, 0)
            )
        out.append(_block(e, 1, struct.pack(e + "HHI", lt, 0, 0) + opts))
    out.append(_block(e, 0xBAD, b"unknown block, skipped"))
    out.append(extra)
    for t, data, ifc in packets:
        res = ifaces[ifc][1] if ifc < len(ifaces) else None
        div = 10**6 if res is None else (1 << (res & 0x7F) if res & 0x80 else 10**res)
        units = round(t * div)
        body = (
            struct.pack(e + "IIIII", ifc, units >> 32, units & 0xFFFFFFFF, len(data), len(data))
            + data
        )
        out.append(_block(e, 6, body))
    return b"".join(out)
