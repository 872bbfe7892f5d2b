"""In-memory engine benchmark: two finwait Hosts joined back to back.

Prints, for one core:
  * bulk: segments/s (both directions) and MB/s moving N MB from A to B;
  * churn: complete connections/s (open + 100 bytes each way + close, the
    active closer's TIME-WAIT left to expire in virtual time);
both drain the Hosts' events as an application does (left to pile up, they
keep every connection alive and make the garbage collector walk them all);
and, as the anchor measured in the same run, the Linux kernel over loopback
driven from Python sockets (bulk MB/s and connect+exchange+close per second).
Each rate is given per wall-clock second and per CPU second of this process
(time.process_time(): both threads of the anchors, user and system): on a
shared, loaded machine the wall figure falls with the load, the CPU one much
less.

Usage: python benchmarks/engine_bench.py [--mb 50] [--conns 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time

from finwait.host import Host
from finwait.tcp.config import Config

A_ADDR, B_ADDR = "198.18.0.2", "198.18.0.1"
LAST_CPU = 0.0  # CPU seconds of the last measured run (set by each function)


def pump(a: Host, b: Host, now: float) -> int:
    """Move segments until both hosts are quiet; returns segments moved."""
    moved = 0
    while True:
        sa = a.take_segments()
        sb = b.take_segments()
        if not sa and not sb:
            return moved
        for s in sa:
            b.receive(s, now)
        for s in sb:
            a.receive(s, now)
        moved += len(sa) + len(sb)


class Clock:
    """Wall and process CPU time from creation to ``stop()``."""

    def __init__(self) -> None:
        self.w0, self.c0 = time.perf_counter(), time.process_time()

    def stop(self) -> float:
        """The wall seconds; the CPU seconds go to LAST_CPU."""
        global LAST_CPU
        LAST_CPU = max(time.process_time() - self.c0, 1e-9)
        return time.perf_counter() - self.w0


def bulk(mb: int, mss: int) -> tuple[float, float, int]:
    cfg = Config(mss=mss, recv_buffer=4 << 20, send_buffer=4 << 20, initial_window_segments=10)
    a, b = Host([A_ADDR], cfg, name="A"), Host([B_ADDR], cfg, name="B")
    lst = b.listen(5001)
    now = 0.0
    c = a.connect(B_ADDR, 5001, now)
    pump(a, b, now)
    s = lst.accept()
    assert s is not None
    total = mb * 1_000_000
    chunk = bytes(1 << 20)
    sent = received = segs = 0
    clock = Clock()
    while received < total:
        if sent < total:
            sent += c.send(chunk[: min(len(chunk), total - sent)], now)
        segs += pump(a, b, now)
        received += len(s.recv())
        segs += pump(a, b, now)
        a.take_events()
        b.take_events()
        if not a._out and not b._out:
            now += 0.001  # let delayed ACKs fire
            a.on_timer(now)
            b.on_timer(now)
    dt = clock.stop()
    return segs / dt, total / dt / 1e6, segs


def churn(n: int) -> float:
    cfg = Config(msl=0.5)
    a, b = Host([A_ADDR], cfg, name="A"), Host([B_ADDR], cfg, name="B")
    lst = b.listen(80)
    now = 0.0
    req, resp = bytes(100), bytes(100)
    clock = Clock()
    for _ in range(n):
        c = a.connect(B_ADDR, 80, now)
        pump(a, b, now)
        s = lst.accept()
        assert s is not None
        c.send(req, now)
        pump(a, b, now)
        s.recv()
        s.send(resp, now)
        s.close(now)
        pump(a, b, now)
        c.recv()
        c.close(now)
        pump(a, b, now)
        now += 0.01
        a.on_timer(now)
        b.on_timer(now)
        pump(a, b, now)
        a.take_events()
        b.take_events()
    now += 10.0
    a.on_timer(now)
    b.on_timer(now)
    dt = clock.stop()
    assert not a.conns and not b.conns, (a.stats(), b.stats())
    return n / dt


def kernel_bulk(mb: int) -> float:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    total = mb * 1_000_000

    def sink() -> None:
        conn, _ = srv.accept()
        got = 0
        while got < total:
            d = conn.recv(1 << 20)
            if not d:
                break
            got += len(d)
        conn.close()

    th = threading.Thread(target=sink)
    th.start()
    cli = socket.create_connection(("127.0.0.1", port))
    buf = bytes(1 << 20)
    clock = Clock()
    sent = 0
    while sent < total:
        sent += cli.send(buf[: total - sent])
    cli.close()
    th.join()
    dt = clock.stop()
    srv.close()
    return total / dt / 1e6


def kernel_churn(n: int) -> float:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    port = srv.getsockname()[1]

    def serve() -> None:
        for _ in range(n):
            conn, _ = srv.accept()
            conn.recv(100)
            conn.sendall(bytes(100))
            conn.close()

    th = threading.Thread(target=serve)
    th.start()
    clock = Clock()
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(bytes(100))
        c.recv(100)
        c.close()
    th.join()
    dt = clock.stop()
    srv.close()
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float, per_cpu: float | None = None) -> None:
        rows.setdefault(name, []).append(value)
        if per_cpu is not None:
            rows.setdefault(name.replace("/s", " per CPU s"), []).append(per_cpu)

    for _ in range(args.repeat):
        sps, mbps, segs = bulk(args.mb, 1460)
        add("finwait bulk, MSS 1460: segments/s", sps, segs / LAST_CPU)
        add("finwait bulk, MSS 1460: MB/s", mbps)
        sps, mbps, segs = bulk(args.mb * 4, 65000)
        add("finwait bulk, MSS 65000: segments/s", sps, segs / LAST_CPU)
        add("finwait bulk, MSS 65000: MB/s", mbps)
        add("finwait churn: connections/s", churn(args.conns), args.conns / LAST_CPU)
        mb = args.mb * 10
        add("anchor: kernel loopback bulk (Python sockets): MB/s", kernel_bulk(mb), mb / LAST_CPU)
        add(
            "anchor: kernel loopback churn (Python sockets): conn/s",
            kernel_churn(args.conns),
            args.conns / LAST_CPU,
        )
    width = max(map(len, rows))
    print(f"median of {args.repeat} runs, one core (per CPU s: this process's CPU time)")
    for name, vals in rows.items():
        print(f"  {name:<{width}}  {statistics.median(vals):>12,.0f}")


if __name__ == "__main__":
    main()
