"""`finwait analyze` at scale: one large capture and the rotated set
`tcpdump -C` cuts from it, sequential vs `--workers 2` vs `--dask local:2`,
with the dpkt loop (analyze_bench.py) as the anchor in the same run.

    python benchmarks/scale_capture.py /tmp/mixed.pcap /tmp/big.pcap --copies 10
    python benchmarks/scale_bench.py /tmp/big.pcap --set-mb 100

``--baseline DIR`` (a ``src`` directory of another finwait, e.g. from
``git archive main src | tar -x -C /tmp/before``) runs every configuration
with it too, in the same rounds, interleaved: rows marked ``(before)``.

The row "2 sequential at once" runs two sequential analyses of the capture
at the same time (figures per run): how much of a second core this work
gets on this machine when nothing is split or merged, the ceiling for any
parallel run.

Prints, per configuration (the median of ``--repeat`` interleaved rounds):
wall seconds, packets/s, CPU seconds (all processes), peak RSS of the main
process and of the largest worker, the ratio to the sequential run (of the
file, or of the set), the main process's and the busiest worker's CPU
seconds, and the speed-up on 2 free cores that they imply (sequential CPU
over main + busiest worker CPU); then the model's inputs (docs/scale.md):
the cut search, the read + decode + split rate per chunk, the folds' rate
and the merge's cost, measured in this process on the same chunks.  The machine is shared: wall time counts
other processes' turns on the cores, so CPU time is printed beside it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from analyze_bench import DPKT_LOOP, count_packets, timed

# Two sequential runs of the capture at once: what the 2 cores give for this
# work when nothing is split or merged (each run's CPU time grows when the
# other core is busy: shared caches and memory, and on a virtual machine
# perhaps the two threads of one physical core).  Its row is per run.
PAIR = "2 sequential at once"


def rotated(capture: str, megabytes: int) -> Path:
    out = Path(capture).with_suffix(".set")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    subprocess.run(
        ["tcpdump", "-Z", "root", "-r", capture, "-w", str(out / "part"), "-C", str(megabytes)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def model(capture: str, chunk_mb: int, n: int = 2) -> None:
    """The throughput model's inputs, measured in one process on the same
    chunks: cutting, read + decode + split per chunk, the folds of ``n``
    partitions, and the merge of their results."""
    from finwait.analyze.alloc import steady
    from finwait.analyze.chunks import plan
    from finwait.analyze.partition import Folder, decode_split, merge, tree

    steady()  # (as `finwait analyze` does: glibc's thresholds fixed)
    t0 = time.process_time()
    chunks = plan(capture, chunk_mb << 20)
    t_plan = time.process_time() - t0
    folders = [Folder([0] * len(chunks)) for _ in range(n)]
    t_split = t_fold = 0.0
    packets = 0
    for c in chunks:
        t = time.process_time()
        pieces = decode_split(c, n, pack=True)
        t_split += time.process_time() - t
        packets += pieces[0].records
        t = time.process_time()
        for f, pc in zip(folders, pieces, strict=True):
            f.fold(pc)
        t_fold += time.process_time() - t
    t = time.process_time()
    tree([f.result() for f in folders], merge)
    t_merge = time.process_time() - t
    size = Path(capture).stat().st_size / 1e6
    k = len(chunks)
    print(f"model ({k} chunks of {chunk_mb} MB, {packets:,} packets, {n} partitions, "
          "one process, CPU seconds):")  # fmt: skip
    print(f"  plan (cut points)        {t_plan:7.2f} s")
    print(f"  read+decode+split/chunk  {t_split / k:7.3f} s  {packets / t_split:12,.0f} packets/s"
          f"  {size / t_split:7.1f} MB/s")  # fmt: skip
    print(f"  fold, all partitions     {t_fold:7.2f} s  {packets / t_fold:12,.0f} packets/s")
    print(f"  merge of {n} partitions    {t_merge:7.3f} s")


def start_cluster(n: int, src: str | None = None) -> tuple[list[subprocess.Popen[bytes]], str]:
    """A dask scheduler and ``n`` one-thread workers on this machine (with
    ``src`` first on their path: the baseline's cluster)."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": src} if src else None
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **quiet)]  # type: ignore[call-overload]  # fmt: skip
    time.sleep(3)
    for _ in range(n):
        procs.append(subprocess.Popen([str(bindir / "dask"), "worker", address, "--nthreads", "1",
                                       "--no-dashboard"], **quiet))  # type: ignore[call-overload]  # fmt: skip
    import importlib

    client: Any = importlib.import_module("distributed").Client
    with client(address, timeout=60) as c:
        c.wait_for_workers(n, timeout=60)
        # (as on a cluster that already ran a job: finwait imported there)
        c.run(exec, "import finwait.analyze.dask")
    return procs, address


def _cpu_now(pids: list[int]) -> dict[int, tuple[float, float]]:
    """(CPU s, RSS MB) of each of ``pids`` and their descendants."""
    import psutil

    out: dict[int, tuple[float, float]] = {}
    for pid in pids:
        try:
            top = psutil.Process(pid)
            for p in [top, *top.children(recursive=True)]:
                ct = p.cpu_times()
                out[p.pid] = (ct.user + ct.system, p.memory_info().rss / 2**20)
        except psutil.Error:
            continue
    return out


def measure(
    cmd: list[str], cluster: list[int] | None = None
) -> tuple[float, float, float, float, float, float]:
    """(wall s, CPU s of the process tree, peak RSS MB of the main
    process, peak RSS MB of the largest other process (a worker), CPU s of
    the main process, CPU s of the busiest worker): peaks and per-process
    CPU sampled every 50 ms with psutil (a worker's last 50 ms may be
    missed).  ``cluster``: the pids of a running Dask cluster, whose CPU
    during the run counts too."""
    import resource

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0 = _cpu_now(cluster or [])
    t = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peaks: dict[int, float] = {}
    cpu_of: dict[int, float] = {}
    top = psutil.Process(proc.pid)
    main_pid = None
    while proc.poll() is None:
        try:
            procs = [top, *top.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                rss = p.memory_info().rss / 2**20
                ct = p.cpu_times()
                cpu_of[p.pid] = ct.user + ct.system
                # finwait itself: the shell (if it has not exec'd) or its child.
                if main_pid is None and p.name() != "sh" and p.pid in (proc.pid, *(
                        c.pid for c in top.children())):  # fmt: skip
                    main_pid = p.pid
            except psutil.Error:
                continue
            peaks[p.pid] = max(peaks.get(p.pid, 0.0), rss)
        time.sleep(0.05)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Processes not reaped by the run (a fork server's workers are its
    # children, not ours) miss the rusage: their sampled CPU counts then.
    cpu = max(cpu, sum(cpu_of.values()))
    c1 = _cpu_now(cluster or [])
    for pid, (c, rss) in c1.items():
        cpu += c - c0.get(pid, (0.0, 0.0))[0]
        cpu_of[pid] = c - c0.get(pid, (0.0, 0.0))[0]
        peaks[pid] = max(peaks.get(pid, 0.0), rss)
    main_peak = peaks.pop(main_pid, 0.0) if main_pid is not None else 0.0
    main_cpu = cpu_of.pop(main_pid, 0.0) if main_pid is not None else 0.0
    peaks.pop(proc.pid, None)  # the shell
    cpu_of.pop(proc.pid, None)
    return (wall, cpu, main_peak, max(peaks.values(), default=0.0), main_cpu,
            max(cpu_of.values(), default=0.0))  # fmt: skip


def bytecode(baseline: str | None) -> None:
    """finwait's modules compiled once, as an installed package has them:
    with PYTHONDONTWRITEBYTECODE set (as in some sandboxes and CI), every
    run would compile them from source again (about 0.1 CPU s a process).
    The bytecode goes to a cache of its own (PYTHONPYCACHEPREFIX, for the
    runs below too), not next to the sources."""
    import os
    import tempfile

    import finwait

    prefix = os.environ.get("PYTHONPYCACHEPREFIX") or str(
        Path(tempfile.gettempdir()) / "finwait-bench-pycache")  # fmt: skip
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for src in [str(Path(finwait.__file__).parent), baseline]:
        if src:
            subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--set-mb", type=int, default=100, help="tcpdump -C size of the set's files")
    ap.add_argument("--chunk-mb", type=int, default=32)
    ap.add_argument("--no-dpkt", action="store_true")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--no-set", action="store_true", help="the one-file runs only")
    ap.add_argument("--no-model", action="store_true", help="without the model's inputs")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds over all runs (interleaved); the median of each column")  # fmt: skip
    ap.add_argument("--baseline", metavar="SRC",
                    help="another finwait's src directory: every run with it too, interleaved")  # fmt: skip
    args = ap.parse_args()
    if not args.no_dask and not (Path(sys.executable).parent / "dask").exists():
        raise SystemExit(
            "scale_bench: no 'dask' beside this python: install the extra "
            "(pip install -e '.[scale]') or pass --no-dask"
        )
    import os
    import stat

    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        # (a rename over it, as root, once made it one: every run's output
        # was then copied into memory, a cost no real run pays)
        raise SystemExit("scale_bench: /dev/null is not a character device: the runs "
                         "would write their output into a file; restore it first "
                         "(as root: mknod -m 666 /dev/null.new c 1 3 && mv /dev/null.new "
                         "/dev/null)")  # fmt: skip
    fw = shutil.which("finwait") or str(Path(sys.executable).with_name("finwait"))
    bytecode(args.baseline)
    cap = args.capture
    n = count_packets(cap)
    setdir = rotated(cap, args.set_mb) if not args.no_set else Path(cap)
    nfiles = len(list(setdir.iterdir())) if not args.no_set else 0
    ck = ["--chunk-mb", str(args.chunk_mb)]
    runs = {
        "sequential": [cap],
        PAIR: [cap],
        "--workers 2": ["--workers", "2", *ck, cap],
        "--dask local:2": ["--dask", "local:2", *ck, cap],
        f"--set ({nfiles} files)": ["--set", str(setdir)],
        "--set --workers 2": ["--set", "--workers", "2", *ck, str(setdir)],
        "--set --dask local:2": ["--set", "--dask", "local:2", *ck, str(setdir)],
    }
    if args.no_set:
        runs = {k: v for k, v in runs.items() if not k.startswith("--set")}
    clusters: dict[str, list[subprocess.Popen[bytes]]] = {}
    if args.no_dask:
        runs = {k: v for k, v in runs.items() if "dask" not in k}
    else:
        # A cluster already running (as on a real one): the per-run cost of
        # Dask without the LocalCluster's start-up.
        items = list(runs.items())
        items.insert(3, ("--dask tcp:// (running, 2)", ["--dask", "ADDRESS", *ck, cap]))
        runs = dict(items)
    if args.baseline:
        runs = {k: list(v) for name, argv in runs.items()
                for k, v in ((name, argv), (f"{name} (before)", argv))}  # fmt: skip
    print(f"{cap}: {n:,} packets, {Path(cap).stat().st_size / 1e6:,.0f} MB; set: {nfiles} files")
    print(f"{'run':28} {'wall s':>7} {'packets/s':>11} {'CPU s':>7} {'pkts/CPU-s':>11} "
          f"{'main MB':>8} {'worker MB':>9} {'vs seq':>7} {'main CPU':>8} {'worker CPU':>10} "
          f"{'2 free cores':>12}")  # fmt: skip
    wall: dict[str, float] = {}
    cpus: dict[str, float] = {}
    got: dict[str, list[tuple[float, ...]]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, argv in runs.items():
            prog = f'"{fw}"'
            if name.endswith("(before)"):
                prog = f'env PYTHONPATH="{args.baseline}" "{sys.executable}" -m finwait'
            pids = None
            if "ADDRESS" in argv:
                # A cluster of its own, started for this run only: idle Dask
                # workers take CPU (about 7 % of a core each with the
                # default settings), which would slow every other run too.
                procs, address = start_cluster(2, args.baseline if "(before)" in name else None)
                clusters[name] = procs
                pids = [p.pid for p in procs]
                argv = [address if a == "ADDRESS" else a for a in argv]
            one = " ".join([prog, "analyze", "--json", *(f'"{a}"' for a in argv)]) + " > /dev/null"
            cmd = ["sh", "-c", f"{one} & {one}; wait" if name.startswith(PAIR) else one]
            try:
                got[name].append(measure(cmd, pids))
            finally:
                for p in clusters.pop(name, []):
                    p.terminate()
                    p.wait()
    crit: dict[str, float] = {}
    for name in runs:
        secs, cpu, main_mb, worker_mb, main_cpu, worker_cpu = (
            statistics.median(x[k] for x in got[name]) for k in range(6)
        )
        tag = " (before)" if name.endswith(" (before)") else ""
        base = f"sequential{tag}" if not name.startswith("--set") else next(iter(
            k for k in runs if k.startswith("--set (") and k.endswith(tag)))  # fmt: skip
        ratio = wall[base] / secs if base in wall else 1.0
        # With two free cores the run would take about its critical path:
        # the main process's CPU plus the busiest worker's (they overlap
        # little: the main process plans, then waits, then merges).
        ideal = cpus[base] / (main_cpu + worker_cpu) if main_cpu and base in cpus else 1.0
        if name.startswith(PAIR):  # per run (two captures' packets in the time)
            secs, cpu, ratio = secs / 2, cpu / 2, 2 * ratio
            # each on its own core: two runs' work in the time of one run's CPU
            ideal = 4 * cpus[base] / (main_cpu + worker_cpu)
        wall[name], cpus[name], crit[name] = secs, cpu, main_cpu + worker_cpu
        print(f"{name:28} {secs:7.2f} {n / secs:11,.0f} {cpu:7.2f} {n / cpu:11,.0f} "
              f"{main_mb:8.0f} {worker_mb:9.0f} {ratio:6.2f}x {main_cpu:8.2f} {worker_cpu:10.2f} "
              f"{ideal:11.2f}x", flush=True)  # fmt: skip
    for tag in ("", " (before)"):
        if PAIR + tag in cpus:
            alone = cpus[f"sequential{tag}"]
            ceiling = 2 * alone / cpus[PAIR + tag]
            # Two runs at once cannot need less CPU each than one alone: if
            # they did, the load changed between the rounds.
            noise = " (above 2: noise, the load changed; rerun)" if ceiling > 2 else ""
            print(f"  ceiling{tag}: each of two sequential runs at once took "
                  f"{cpus[PAIR + tag] / alone - 1:+.0%} CPU over one alone: 2 cores do "
                  f"{ceiling:.2f}x one core's work here{noise}")  # fmt: skip
    if args.repeat > 1:
        print("each round (wall s / CPU s / main + busiest worker CPU s):")
        for name in runs:
            print(f"  {name:28} " + "  ".join(f"{x[0]:.2f}/{x[1]:.2f}/{x[4] + x[5]:.2f}"
                                              for x in got[name]))  # fmt: skip
    if not args.no_dpkt:
        secs, cpu, rss = timed([sys.executable, "-c", DPKT_LOOP, cap])
        print(f"{'anchor: dpkt loop':28} {secs:7.2f} {n / secs:11,.0f} {cpu:7.2f} {n / cpu:11,.0f} "
              f"{rss:8.0f} {'-':>9} {wall['sequential'] / secs:6.2f}x")  # fmt: skip
        print(f"  finwait sequential / dpkt loop: {secs / wall['sequential']:.1f}x wall, "
              f"{cpu / cpus['sequential']:.1f}x CPU")  # fmt: skip
    for tag in ("", " (before)"):
        w2 = f"--workers 2{tag}"
        if w2 not in cpus:
            continue
        print(f"  {w2} over sequential: {cpus[w2] / cpus[f'sequential{tag}'] - 1:+.0%} CPU")
        for k in ("--dask local:2", "--dask tcp:// (running, 2)"):
            if k + tag in wall:
                over = wall[k + tag] / wall[w2] - 1
                cov = cpus[k + tag] / cpus[w2] - 1
                cp = crit[k + tag] / crit[w2] - 1
                print(f"  {k}{tag} over {w2}: {over:+.0%} wall, {cov:+.0%} CPU, "
                      f"{cp:+.0%} main + busiest worker CPU")  # fmt: skip
    for procs in clusters.values():
        for p in procs:
            p.terminate()
            p.wait()
    if not args.no_model:
        model(cap, args.chunk_mb)


if __name__ == "__main__":
    main()
