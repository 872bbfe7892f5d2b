"""Flood and blind-attack figures for docs/security.md: memory (tracemalloc
peak), completions and success rates against RFC 5961's bounds.

    python benchmarks/security_attacks.py [--spoofed 100000] [--tries 20000]
"""

from __future__ import annotations

import argparse
import functools
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from finwait.sim.attacks import KINDS, blind_attack, ooo_flood, syn_flood
from finwait.tcp.config import Config

T = TypeVar("T")


def measured(fn: Callable[[], T]) -> tuple[T, int, float]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spoofed", type=int, default=100_000)
    ap.add_argument("--tries", type=int, default=20_000)
    ap.add_argument("--ooo", type=int, default=20_000)
    args = ap.parse_args()
    for cookies in (True, False):
        r, peak, dt = measured(
            functools.partial(syn_flood, args.spoofed, legit=50, syncookies=cookies)
        )
        print(
            f"SYN flood, cookies {'on ' if cookies else 'off'}: {r.spoofed} spoofed SYNs, "
            f"legit {r.completed}/{r.legit} completed, peak conns {r.peak_connections}, "
            f"SYN queue {r.peak_syn_queue}, cookies sent/ok/failed "
            f"{r.server_counters.get('syncookies_sent', 0)}/"
            f"{r.server_counters.get('syncookies_ok', 0)}/"
            f"{r.server_counters.get('syncookies_failed', 0)}, "
            f"peak traced memory {peak / 1e6:.2f} MB, {dt:.1f} s"
        )
    o, peak, dt = measured(functools.partial(ooo_flood, args.ooo))
    print(
        f"OOO flood: {o.segments} one-byte segments ahead, held at most "
        f"{o.peak_held_segments} segments / {o.peak_held_bytes} bytes "
        f"(window {o.receive_window}), {o.dropped_queue_full} refused, stream intact "
        f"{o.stream_intact}, peak traced memory {peak / 1e6:.2f} MB, {dt:.1f} s"
    )
    for in_window, cfg in ((False, Config()), (True, Config(recv_buffer=4096))):
        for kind in KINDS:
            b, _, dt = measured(
                functools.partial(blind_attack, kind, args.tries, in_window=in_window, config=cfg)
            )
            print(
                f"blind {kind:4} {'in-window' if in_window else 'random   '}: {b.tries} tries, "
                f"{b.in_window} in window, {b.exact} at RCV.NXT, {b.successes} successes "
                f"(rate {b.successes / b.tries:.2e}; RFC 5961 bound {b.rfc5961_bound:.2e}), "
                f"{b.challenge_acks - b.ratelimited} ACKs sent / {b.ratelimited} rate-limited, "
                f"{b.stream_bytes} stream bytes checked, sender fast retransmits "
                f"{b.sender_fast_retransmits}, {dt:.1f} s"
            )


if __name__ == "__main__":
    main()
