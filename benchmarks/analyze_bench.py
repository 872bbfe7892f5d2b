"""Time `finwait analyze --json` against tshark and a dpkt loop, in the same
run, on the same captures (make one with gen_mixed_capture.py, and the 5 M
and VXLAN ones from it with scale_capture.py).

Each tool runs as its own process, so the figures include interpreter
start-up and imports, and peak RSS is the process's.  The tools take turns
(round 1 of each, then round 2 ...), so a change in the machine's load
falls on all of them alike; medians are reported.  The dpkt loop is what a
Python user would write: per packet, parse Ethernet/IP/TCP and track the
flags seen per connection (4-tuple).

    python benchmarks/analyze_bench.py /tmp/mixed.pcap [/tmp/mixed5m.pcap ...] [--runs 3]

With --before SRC (the `src` folder of another finwait, e.g. from
`git archive OLD src | tar -x -C /tmp/old`), that finwait runs too, in
turn with the others, on the same interpreter and packages: a before/after
measurement in one run.  Both trees' bytecode is compiled first (this
machine sets PYTHONDONTWRITEBYTECODE, and compiling on every start would
count).

Decapsulation is always on (it is not an option): a plain capture stays on
the bulk path, a tunnelled one takes the per-packet general path.  The
start-up line is `finwait analyze --json` on a one-packet capture: imports
and interpreter, nothing to analyse.  With --no-tshark / --no-dpkt those
anchors are skipped (the dpkt loop takes minutes on a 5 M-packet capture).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DPKT_LOOP = r"""
import gzip, sys, dpkt
conns = {}
n = 0
with open(sys.argv[1], "rb") as raw:
    gz = raw.read(2) == b"\x1f\x8b"  # (a gzipped capture: decompressed, as finwait and tshark do)
with (gzip.open if gz else open)(sys.argv[1], "rb") as f:
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


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MB) of one run, its output
    discarded.  CPU time (user + system, the process and what it waited
    for) is reported too because the machine is shared: wall time counts
    the other processes' turns on the cores."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit status {os.waitstatus_to_exitcode(status)}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


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


Tool = tuple[list[str], dict[str, str] | None]


def finwait_tools(finwait: str, before: str | None, args: list[str]) -> dict[str, Tool]:
    """This finwait's command line and, with ``before``, the other's."""
    tools: dict[str, Tool] = {"finwait analyze --json": ([finwait, "analyze", *args], None)}
    if before is not None:
        env = dict(os.environ, PYTHONPATH=before)
        tools["finwait --json, before"] = ([finwait, "analyze", *args], env)
    return tools


def rounds(tools: dict[str, Tool], runs: int) -> dict[str, list[tuple[float, float, float]]]:
    """``runs`` rounds, each tool once a round, in turn."""
    res: dict[str, list[tuple[float, float, float]]] = {name: [] for name in tools}
    for _ in range(runs):
        for name, (cmd, env) in tools.items():
            res[name].append(timed(cmd, env))
    return res


def bench(capture: str, runs: int, finwait: str, before: str | None, tshark: bool,
          dpkt: bool) -> None:  # fmt: skip
    n = count_packets(capture)
    tools = finwait_tools(finwait, before, ["--json", capture])
    if tshark and shutil.which("tshark") is not None:
        tools["tshark -q -z conv,tcp"] = (["tshark", "-r", capture, "-q", "-z", "conv,tcp"], None)
    if dpkt:
        tools["dpkt loop, per-connection flags"] = (
            [sys.executable, "-c", DPKT_LOOP, capture],
            None,
        )
    print(f"{capture}: {n:,} packets; median of {runs} runs, the tools in turn")
    head = ("seconds", "packets/s", "CPU s", "pkts/CPU s", "peak RSS MB")
    print(f"{'tool':34} {head[0]:>8} {head[1]:>12} {head[2]:>7} {head[3]:>12} {head[4]:>12}")
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, res in rounds(tools, runs).items():
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


def compile_tree(src: str) -> None:
    """Write the bytecode of every module under ``src`` (quietly)."""
    compileall.compile_dir(src, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", metavar="SRC", help="another finwait's src folder, run in turn")
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--no-dpkt", action="store_true")
    args = ap.parse_args()
    # The console script next to this interpreter: a version manager's shim
    # on PATH (pyenv's is a bash script) would add a quarter of a second.
    here = Path(sys.executable).parent / "finwait"
    finwait = str(here) if here.exists() else shutil.which("finwait") or "finwait"
    import finwait as pkg

    compile_tree(str(Path(pkg.__file__).parent))
    before = None
    if args.before is not None:
        before = str(Path(args.before).resolve())
        if not (Path(before) / "finwait" / "__init__.py").exists():
            raise SystemExit(f"--before {args.before}: no finwait package in it")
        compile_tree(before)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tiny = str(Path(tmp) / "one.pcap")
        one_packet_capture(tiny)
        tools = {
            f"{k}, one packet": v
            for k, v in finwait_tools(finwait, before, ["--json", tiny]).items()
        }
        tools["finwait --version"] = ([finwait, "--version"], None)
        for name, res in rounds(tools, max(args.runs, 9)).items():
            print(f"start-up ({name}): median "
                  f"{statistics.median(r[0] for r in res):.3f} s wall, "
                  f"{statistics.median(r[1] for r in res):.3f} s CPU")  # fmt: skip
    for cap in args.captures:
        bench(cap, args.runs, finwait, before, not args.no_tshark, not args.no_dpkt)


if __name__ == "__main__":
    main()
