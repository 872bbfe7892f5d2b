"""Time `finwait analyze --json` against tshark and a dpkt loop, in the same
run, on the same capture (make one with gen_mixed_capture.py).

Each tool runs as its own process under /usr/bin/time, so the figures
include interpreter start-up and imports, and peak RSS is the process's.
The dpkt loop is what a Python user would write: per packet, parse
Ethernet/IP/TCP and track the flags seen per connection (4-tuple).

    python benchmarks/analyze_bench.py /tmp/mixed.pcap [--runs 3]
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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("capture")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = count_packets(args.capture)
    # The console script next to this interpreter: a version manager's shim
    # on PATH (pyenv's is a bash script) would add a quarter of a second.
    here = Path(sys.executable).parent / "finwait"
    finwait = str(here) if here.exists() else shutil.which("finwait") or "finwait"
    tools = {
        "finwait analyze --json": [
            "sh",
            "-c",
            f'"{finwait}" analyze --json "{args.capture}" > /dev/null',
        ],
        "tshark -q -z conv,tcp": [
            "sh",
            "-c",
            f'tshark -r "{args.capture}" -q -z conv,tcp > /dev/null',
        ],
        "dpkt loop, per-connection flags": [sys.executable, "-c", DPKT_LOOP, args.capture],
    }
    print(f"{args.capture}: {n} packets; median of {args.runs} runs")
    head = ("seconds", "packets/s", "CPU s", "pkts/CPU s", "peak RSS MB")
    print(f"{'tool':34} {head[0]:>8} {head[1]:>12} {head[2]:>7} {head[3]:>12} {head[4]:>12}")
    for name, cmd in tools.items():
        if cmd[0] == "sh" and "tshark" in name and shutil.which("tshark") is None:
            print(f"{name:34} (not installed)")
            continue
        runs = [timed(cmd) for _ in range(args.runs)]
        secs = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        print(f"{name:34} {secs:8.2f} {n / secs:12,.0f} {cpu:7.2f} {n / cpu:12,.0f} {rss:12.0f}")


if __name__ == "__main__":
    main()
