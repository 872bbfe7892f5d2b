"""Wire codec micro-benchmark: packets/s for finwait's encode and decode.

Prints, per packet shape (a 1460-byte data segment and a pure ACK, both
IPv4 with the NOP NOP TS option that Linux puts on every segment, plus an
IPv6 data segment): encode_packet, decode_packet (checksums verified) and
decode_packet without verification; and, as anchors measured in the same
run, dpkt (parse only: it does not verify checksums) and scapy (build and
parse).  Then the internet checksum of 1480 bytes three ways, the reason
finwait sums with ``int.from_bytes``.  Medians of ``--repeat`` runs.

Usage: python benchmarks/wire_bench.py [--seconds 0.3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import array
import statistics
import timeit
from collections.abc import Callable
from functools import partial

from finwait.wire.checksum import checksum
from finwait.wire.ip import decode_packet, encode_packet
from finwait.wire.segment import ACK, PSH, Segment, TcpOptions

TS = TcpOptions(timestamps=(123456789, 987654321))
DATA4 = Segment("198.18.0.2", "198.18.0.1", 40000, 5001, 1, 2, PSH | ACK, 502, bytes(1460), TS)
ACK4 = Segment("198.18.0.1", "198.18.0.2", 5001, 40000, 2, 1461, ACK, 65535, b"", TS)
DATA6 = DATA4._replace(src="2001:db8::2", dst="2001:db8::1", payload=bytes(1440))


def rate(fn: Callable[[], object], seconds: float, repeat: int) -> float:
    """Calls per second, median of ``repeat`` runs of about ``seconds`` each."""
    timer = timeit.Timer(fn)
    n, _ = timer.autorange()
    n = max(1, int(n * seconds / 0.2))
    return statistics.median(n / t for t in timer.repeat(repeat, n))


def row(name: str, per_s: float, size: int) -> None:
    mb = per_s * size / 1e6
    print(f"  {name:<40} {per_s:>12,.0f} pkt/s  {mb:>9,.1f} MB/s")


def anchors(pkt: bytes, seg: Segment, seconds: float, repeat: int) -> None:
    try:
        import dpkt

        cls = dpkt.ip6.IP6 if ":" in seg.src else dpkt.ip.IP

        def dpkt_parse() -> object:
            ip = cls(pkt)
            tcp = ip.data
            return (tcp.seq, tcp.ack, tcp.flags, dpkt.tcp.parse_opts(tcp.opts), tcp.data)

        row("anchor dpkt parse (no checksum check)", rate(dpkt_parse, seconds, repeat), len(pkt))
    except ImportError:
        print("  (dpkt not installed)")
    try:
        from scapy.layers.inet import IP, TCP
        from scapy.layers.inet6 import IPv6
        from scapy.packet import Raw

        net = (IPv6 if ":" in seg.src else IP)(src=seg.src, dst=seg.dst)
        flags, opts = seg.flags, [("NOP", None), ("NOP", None), ("Timestamp", seg.options[3])]

        def scapy_build() -> bytes:
            tcp = TCP(sport=seg.sport, dport=seg.dport, seq=seg.seq, ack=seg.ack, flags=flags,
                      window=seg.window, options=opts)  # fmt: skip
            return bytes(net / tcp / Raw(seg.payload))

        parse = IPv6 if ":" in seg.src else IP
        small = max(seconds / 3, 0.05)
        row("anchor scapy build", rate(scapy_build, small, repeat), len(pkt))
        row("anchor scapy parse", rate(lambda: parse(pkt), small, repeat), len(pkt))
    except ImportError:
        print("  (scapy not installed)")


def checksum_methods(seconds: float, repeat: int) -> None:
    data = bytes(range(256)) * 5 + bytes(200)  # 1480 bytes

    def int_mod() -> int:
        return checksum(data)

    def array_sum() -> int:
        s = sum(array.array("H", data))
        s = (s & 0xFFFF) + (s >> 16)
        return ~(s + (s >> 16)) & 0xFFFF

    def memoryview_sum() -> int:
        s = sum(memoryview(data).cast("H"))
        s = (s & 0xFFFF) + (s >> 16)
        return ~(s + (s >> 16)) & 0xFFFF

    print("internet checksum over 1480 bytes:")
    for name, fn in (
        ("int.from_bytes % 0xFFFF (finwait)", int_mod),
        ("sum(array('H'))", array_sum),
        ("sum(memoryview.cast('H'))", memoryview_sum),
    ):
        per_s = rate(fn, seconds, repeat)
        print(f"  {name:<40} {per_s * len(data) / 1e6:>9,.0f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    s, r = args.seconds, args.repeat
    for label, seg in (
        ("IPv4 data, 1460 bytes + TS", DATA4),
        ("IPv4 pure ACK + TS", ACK4),
        ("IPv6 data, 1440 bytes + TS", DATA6),
    ):
        pkt = encode_packet(seg)
        assert decode_packet(pkt) == seg
        print(f"{label} ({len(pkt)}-byte packet):")
        row("finwait encode_packet", rate(partial(encode_packet, seg), s, r), len(pkt))
        row("finwait decode_packet", rate(partial(decode_packet, pkt), s, r), len(pkt))
        row(
            "finwait decode_packet (no checksums)",
            rate(partial(decode_packet, pkt, verify_checksum=False), s, r),
            len(pkt),
        )
        anchors(pkt, seg, s, r)
    checksum_methods(s, r)


if __name__ == "__main__":
    main()
