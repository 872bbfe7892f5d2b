"""Replay a directory of packetdrill scripts on both targets and tally them.

    python benchmarks/upstream_replay.py DIR... [--targets engine,kernel]
        [--profile linux|rfc] [--only CAT,...] [--json FILE]

The measurement of issue #10's acceptance: the upstream packetdrill scripts
(google/packetdrill ``gtests/net/tcp/**``, the kernel's
``tools/testing/selftests/net/packetdrill/``, gVisor's ``test/packetdrill/``)
are GPL and never enter this repository; keep local copies elsewhere and
point this script at them.  It holds no upstream text.

Every ``*.pkt`` under each DIR is put in a category by the earliest category name
in its path (kernel files are flattened as ``tcp_<category>_<name>.pkt``,
packetdrill's are ``<category>/<name>.pkt``), so
``tcp_fast_recovery_prr-ss-ack-below-snd_una-cubic.pkt`` is fast_recovery.
Each script runs on each target as written (content and timing within the
script's tolerances; on the kernel a FAIL is run again up to ``--retries``
times, as the suite retries a timing miss on a loaded machine, and the line
says how many runs it took) and, on the engine, once more with timing ignored
(a tolerance of 1000 s), which separates "sends the wrong segment" from
"sends it at the wrong time".  An ERROR (a line or feature the runner does
not support, or a kernel setup the machine lacks) is counted apart: the
acceptance counts the scripts the runner supports.

Output: one line per script and target (status, first mismatch), then a
table per category.  Run as root for the kernel target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict

from finwait.script import run_script

CATEGORIES = (
    "close",
    "shutdown",
    "validate",
    "ts_recent",
    "user_timeout",
    "blocking",
    "fast_retransmit",
    "limited_transmit",
    "sack",
    "slow_start",
    "fast_recovery",
    "cubic",
)


def category(rel: str) -> str | None:
    """The category whose name appears first in the path (``-`` read as ``_``)."""
    norm = rel.replace("-", "_")
    best: tuple[int, str] | None = None
    for cat in CATEGORIES:
        m = re.search(rf"(?<![a-z]){cat}", norm)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), cat)
    return None if best is None else best[1]


def scripts(root: str) -> list[tuple[str, str, str]]:
    """(category, path relative to root, absolute path) for every script."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".pkt"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                cat = category(rel)
                if cat is not None:
                    found.append((cat, rel, path))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="+")
    ap.add_argument("--targets", default="engine,kernel")
    ap.add_argument("--profile", default="linux", choices=("linux", "rfc"))
    ap.add_argument("--only", default="", help="categories to run, comma-separated")
    ap.add_argument("--json", help="write every outcome as JSON to this file")
    ap.add_argument("--retries", type=int, default=2,
                    help="kernel target: runs again after a FAIL, as the suite does (default 2)")  # fmt: skip
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    only = {c for c in args.only.split(",") if c}
    todo = []
    for root in args.dir:
        name = os.path.basename(os.path.normpath(root))
        todo += [(c, os.path.join(name, r), p) for c, r, p in scripts(root)
                 if not only or c in only]  # fmt: skip
    if not todo:
        print(f"no scripts of the categories under {' '.join(args.dir)}", file=sys.stderr)
        return 2
    # tally[cat][column] = count; columns: n, <target>:pass, <target>:fail, <target>:error,
    # engine:content (content passes with timing ignored)
    tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    records = []
    t0 = time.monotonic()
    for cat, rel, path in todo:
        tally[cat]["n"] += 1
        rec: dict[str, object] = {"category": cat, "script": rel}
        for tgt in targets:
            out = run_script(path, tgt, profile=args.profile)
            tries = 1
            while tgt == "kernel" and out.status == "FAIL" and tries <= args.retries:
                out = run_script(path, tgt, profile=args.profile)  # a loaded machine's timing
                tries += 1
            tally[cat][f"{tgt}:{out.status.lower()}"] += 1
            line = f"{tgt:6} {out.status:5} {cat:16} {rel}"
            if out.status != "PASS":
                line += f"  line {out.line}: {out.message}"
                if out.expected or out.got:
                    line += f" (expected {out.expected}; got {out.got})"
            if tries > 1:
                line += f"  [{tries} runs]"
            if out.skipped:
                line += f"  [{len(out.skipped)} %{{}}% skipped]"
            rec[tgt] = {
                "runs": tries,
                "status": out.status,
                "line": out.line,
                "message": out.message,
                "expected": out.expected,
                "got": out.got,
                "skipped": len(out.skipped),
            }
            if tgt == "engine":
                loose = (
                    out
                    if out.status == "PASS"
                    else run_script(path, tgt, profile=args.profile, min_tolerance=1000.0)
                )
                tally[cat]["engine:content"] += loose.status == "PASS"
                rec["engine_content"] = loose.status
                if out.status == "FAIL" and loose.status == "PASS":
                    line += "  [content passes: timing only]"
            print(line, flush=True)
        records.append(rec)
    print()
    cols = ["n"]
    for tgt in targets:
        cols += [f"{tgt}:pass", f"{tgt}:fail", f"{tgt}:error"]
        if tgt == "engine":
            cols.append("engine:content")
    print(f"{'category':16} " + " ".join(f"{c:>15}" for c in cols))
    total: dict[str, int] = defaultdict(int)
    for cat in CATEGORIES:
        if cat not in tally:
            continue
        row = tally[cat]
        for c in cols:
            total[c] += row[c]
        print(f"{cat:16} " + " ".join(f"{row[c]:>15}" for c in cols))
    print(f"{'total':16} " + " ".join(f"{total[c]:>15}" for c in cols))
    if "engine" in targets:
        supported = total["engine:pass"] + total["engine:fail"]
        pct = 100.0 * total["engine:pass"] / supported if supported else 0.0
        print(f"engine ({args.profile} profile): {total['engine:pass']}/{supported} of the "
              f"scripts the runner supports pass on content and timing ({pct:.1f} %)")  # fmt: skip
    if "engine" in targets and "kernel" in targets:
        # The scripts that describe the kernel under test: those it passes.
        on_kernel = [r for r in records if r["kernel"]["status"] == "PASS"]  # type: ignore[index]
        both = sum(r["engine"]["status"] == "PASS" for r in on_kernel)  # type: ignore[index]
        print(f"of the {len(on_kernel)} scripts that pass on this kernel, "
              f"{both} pass on the engine")  # fmt: skip
    print(f"{len(todo)} scripts in {time.monotonic() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
