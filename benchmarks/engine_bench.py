"""In-memory engine benchmark: two finwait Hosts joined back to back.

Prints, for one core:
  * bulk: segments/s (both directions) and MB/s moving N MB from A to B;
  * churn: complete connections/s (open + 100 bytes each way + close, the
    active closer's TIME-WAIT left to expire in virtual time);
and, as the anchor measured in the same run, the Linux kernel over loopback
driven from Python sockets (bulk MB/s and connect+exchange+close per second).

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
    t0 = time.perf_counter()
    while received < total:
        if sent < total:
            sent += c.send(chunk[: min(len(chunk), total - sent)], now)
        segs += pump(a, b, now)
        received += len(s.recv())
        segs += pump(a, b, now)
        if not a._out and not b._out:
            now += 0.001  # let delayed ACKs fire
            a.on_timer(now)
            b.on_timer(now)
    dt = time.perf_counter() - t0
    return segs / dt, total / dt / 1e6, segs


def churn(n: int) -> float:
    cfg = Config(msl=0.5)
    a, b = Host([A_ADDR], cfg, name="A"), Host([B_ADDR], cfg, name="B")
    lst = b.listen(80)
    now = 0.0
    req, resp = bytes(100), bytes(100)
    t0 = time.perf_counter()
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
    now += 10.0
    a.on_timer(now)
    b.on_timer(now)
    dt = time.perf_counter() - t0
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
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        sent += cli.send(buf[: total - sent])
    cli.close()
    th.join()
    dt = time.perf_counter() - t0
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
    t0 = time.perf_counter()
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(bytes(100))
        c.recv(100)
        c.close()
    th.join()
    dt = time.perf_counter() - t0
    srv.close()
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        sps, mbps, _ = bulk(args.mb, 1460)
        rows.setdefault("finwait bulk, MSS 1460: segments/s", []).append(sps)
        rows.setdefault("finwait bulk, MSS 1460: MB/s", []).append(mbps)
        sps, mbps, _ = bulk(args.mb * 4, 65000)
        rows.setdefault("finwait bulk, MSS 65000: segments/s", []).append(sps)
        rows.setdefault("finwait bulk, MSS 65000: MB/s", []).append(mbps)
        rows.setdefault("finwait churn: connections/s", []).append(churn(args.conns))
        rows.setdefault("anchor: kernel loopback bulk (Python sockets): MB/s", []).append(
            kernel_bulk(args.mb * 10)
        )
        rows.setdefault("anchor: kernel loopback churn (Python sockets): conn/s", []).append(
            kernel_churn(args.conns)
        )
    width = max(map(len, rows))
    print(f"median of {args.repeat} runs, one core")
    for name, vals in rows.items():
        print(f"  {name:<{width}}  {statistics.median(vals):>12,.0f}")


if __name__ == "__main__":
    main()
