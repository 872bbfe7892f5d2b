"""Time `finwait analyze --json` against tshark and a dpkt loop, in the same
run, on the same captures (make one with gen_mixed_capture.py, and the 5 M
and VXLAN ones from it with scale_capture.py).

Each tool runs as its own process under /usr/bin/time, so the figures
include interpreter start-up and imports, and peak RSS is the process's.
The dpkt loop is what a Python user would write: per packet, parse
Ethernet/IP/TCP and track the flags seen per connection (4-tuple).

    python benchmarks/analyze_bench.py /tmp/mixed.pcap [/tmp/mixed5m.pcap ...] [--runs 3]

Decapsulation is always on (it is not an option): a plain capture stays on
the bulk path, a tunnelled one takes the per-packet general path.  The
start-up line is `finwait analyze --json` on a one-packet capture: imports
and interpreter, nothing to analyse.  With --no-tshark / --no-dpkt those
anchors are skipped (the dpkt loop takes minutes on a 5 M-packet capture).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

DPKT_LOOP = r"""
import sys, dpkt
conns = {}
n = 0
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcap.Reader(f):
        n += 1
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport == 4789:
            ip = dpkt.ethernet.Ethernet(ip.data.data[8:]).data  # VXLAN, as finwait does
        if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
        key = (a, b) if a < b else (b, a)
        st = conns.get(key)
        if st is None:
            st = conns[key] = [0, 0, ts, ts]
        st[0] |= tcp.flags
        st[1] += 1
        st[3] = ts
closed = sum(1 for s in conns.values() if s[0] & (dpkt.tcp.TH_FIN | dpkt.tcp.TH_RST))
print(n, len(conns), closed)
"""


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MB) of one run.  CPU time (user +
    system) is reported too because the machine is shared: wall time counts
    the other processes' turns on the cores."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M", *cmd], capture_output=True, text=True, check=True
    )
    secs, user, sys_, kb = out.stderr.strip().splitlines()[-1].split()
    return float(secs), float(user) + float(sys_), int(kb) / 1024


def count_packets(path: str) -> int:
    from finwait.capture.reader import iter_batches

    return sum(len(b) for b in iter_batches(path))


def one_packet_capture(path: str) -> None:
    """A pcap with one TCP SYN on Ethernet (the start-up measurement)."""
    import struct

    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, bytes([198, 18, 0, 1]),
                     bytes([198, 18, 0, 2]))  # fmt: skip
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 65535, 0, 0)
    pkt = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(struct.pack("<IIII", 1, 0, len(pkt), len(pkt)) + pkt)


def bench(capture: str, runs: int, finwait: str, tshark: bool, dpkt: bool) -> None:
    n = count_packets(capture)
    tools = {
        "finwait analyze --json": [
            "sh", "-c", f'"{finwait}" analyze --json "{capture}" > /dev/null',
        ],
        "tshark -q -z conv,tcp": [
            "sh", "-c", f'tshark -r "{capture}" -q -z conv,tcp > /dev/null',
        ],
        "dpkt loop, per-connection flags": [sys.executable, "-c", DPKT_LOOP, capture],
    }  # fmt: skip
    if not tshark or shutil.which("tshark") is None:
        del tools["tshark -q -z conv,tcp"]
    if not dpkt:
        del tools["dpkt loop, per-connection flags"]
    print(f"{capture}: {n:,} packets; median of {runs} runs")
    head = ("seconds", "packets/s", "CPU s", "pkts/CPU s", "peak RSS MB")
    print(f"{'tool':34} {head[0]:>8} {head[1]:>12} {head[2]:>7} {head[3]:>12} {head[4]:>12}")
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, cmd in tools.items():
        res = [timed(cmd) for _ in range(runs)]
        wall[name] = statistics.median(r[0] for r in res)
        cpu[name] = statistics.median(r[1] for r in res)
        rss = max(r[2] for r in res)
        print(f"{name:34} {wall[name]:8.2f} {n / wall[name]:12,.0f} {cpu[name]:7.2f} "
              f"{n / cpu[name]:12,.0f} {rss:12.0f}")  # fmt: skip
    fw = "finwait analyze --json"
    for other in tools:
        if other != fw:
            print(f"  finwait / {other}: {wall[other] / wall[fw]:.1f}x wall, "
                  f"{cpu[other] / cpu[fw]:.1f}x CPU")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--no-dpkt", action="store_true")
    args = ap.parse_args()
    # The console script next to this interpreter: a version manager's shim
    # on PATH (pyenv's is a bash script) would add a quarter of a second.
    here = Path(sys.executable).parent / "finwait"
    finwait = str(here) if here.exists() else shutil.which("finwait") or "finwait"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tiny = str(Path(tmp) / "one.pcap")
        one_packet_capture(tiny)
        runs = [timed(["sh", "-c", f'"{finwait}" analyze --json "{tiny}" > /dev/null'])
                for _ in range(max(args.runs, 5))]  # fmt: skip
        print(f"start-up (finwait analyze --json, one packet): median "
              f"{statistics.median(r[0] for r in runs):.3f} s wall, "
              f"{statistics.median(r[1] for r in runs):.3f} s CPU")  # fmt: skip
        runs = [timed([finwait, "--version"]) for _ in range(max(args.runs, 5))]
        print(f"start-up (finwait --version): median "
              f"{statistics.median(r[0] for r in runs):.3f} s wall, "
              f"{statistics.median(r[1] for r in runs):.3f} s CPU")  # fmt: skip
    for cap in args.captures:
        bench(cap, args.runs, finwait, not args.no_tshark, not args.no_dpkt)


if __name__ == "__main__":
    main()
