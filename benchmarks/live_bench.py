"""Live throughput and connection rate: finwait on a TUN against the Linux
kernel, with the kernel<->kernel figure over a veth pair between two
namespaces (the upper anchor) measured in the same run.

    python benchmarks/live_bench.py [--mb 50] [--conns 2000] [--mtu 1500] [--profile]

Needs root.  Each figure: bulk MB/s finwait->kernel ("send") and
kernel->finwait ("receive"), and connections/s (connect, 32-byte request,
32-byte reply, close; sequential).  The kernel side is a child process put in
the namespace with setns before exec; it is killed with the namespace.
``--profile`` runs the finwait bulk send under cProfile and prints the top
functions.  Addresses: 198.18.0.0/15 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from pyroute2 import IPRoute, netns

from finwait.live.lab import Lab, inside, kill_netns_processes
from finwait.live.streams import Stack, open_connection
from finwait.tcp.config import Config

CHUNK = 1 << 16
PORT_SINK, PORT_SOURCE, PORT_RR = 5001, 5002, 5003


# -- the kernel peer (runs in a child process inside a namespace) -------------


def peer_main(argv: list[str]) -> None:
    """``sink PORT``: read to EOF, reply with the byte count.  ``source PORT``:
    read an 8-byte count, send that many bytes, close.  ``rr PORT``: accept,
    read 32 bytes, reply 32, close; forever."""
    mode, port = argv[0], int(argv[1])
    family = socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(4096)
    print("ready", flush=True)
    payload = bytes(CHUNK)
    while True:
        c, _ = srv.accept()
        with c:
            if mode == "sink":
                n = 0
                while chunk := c.recv(1 << 20):
                    n += len(chunk)
                c.sendall(n.to_bytes(8, "big"))
            elif mode == "source":
                want = int.from_bytes(_recv_exactly(c, 8), "big")
                view = memoryview(payload)
                while want > 0:
                    k = c.send(view[: min(want, CHUNK)])
                    want -= k
            elif mode == "rr":
                _recv_exactly(c, 32)
                c.sendall(bytes(32))


def _recv_exactly(c: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


@contextlib.contextmanager
def kernel_peer(ns: str, mode: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--peer", mode, str(port)],
        preexec_fn=lambda: netns.setns(ns, flags=0),  # the child only: then exec
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# -- kernel <-> kernel over veth ----------------------------------------------


@contextlib.contextmanager
def veth_pair() -> Iterator[tuple[str, str]]:
    a, b = f"fwb-a-{os.getpid()}", f"fwb-b-{os.getpid()}"
    netns.create(a)
    netns.create(b)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname="fwbva", kind="veth", peer={"ifname": "fwbvb"})
            ipr.link("set", index=ipr.link_lookup(ifname="fwbva")[0], net_ns_fd=a)
            ipr.link("set", index=ipr.link_lookup(ifname="fwbvb")[0], net_ns_fd=b)
        for ns, dev, addr in ((a, "fwbva", "198.18.1.1"), (b, "fwbvb", "198.18.1.2")):
            with IPRoute(netns=ns) as ipr:
                idx = ipr.link_lookup(ifname=dev)[0]
                ipr.addr("add", index=idx, address=addr, prefixlen=24)
                ipr.link("set", index=idx, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        yield a, b
    finally:
        for ns in (a, b):
            kill_netns_processes(ns)
            netns.remove(ns)


def kernel_client_socket(ns: str) -> socket.socket:
    with inside(ns):
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def kernel_bulk(ns_a: str, ns_b: str, mb: int) -> tuple[float, float]:
    total = mb << 20
    payload = bytes(CHUNK)
    with kernel_peer(ns_b, "sink", PORT_SINK):
        s = kernel_client_socket(ns_a)
        t0 = time.perf_counter()
        s.connect(("198.18.1.2", PORT_SINK))
        sent = 0
        while sent < total:
            sent += s.send(payload)
        s.shutdown(socket.SHUT_WR)
        n = int.from_bytes(_recv_exactly(s, 8), "big")
        send_rate = n / (time.perf_counter() - t0) / 1e6
        s.close()
    with kernel_peer(ns_b, "source", PORT_SOURCE):
        s = kernel_client_socket(ns_a)
        t0 = time.perf_counter()
        s.connect(("198.18.1.2", PORT_SOURCE))
        s.sendall(total.to_bytes(8, "big"))
        got = 0
        while chunk := s.recv(1 << 20):
            got += len(chunk)
        recv_rate = got / (time.perf_counter() - t0) / 1e6
        s.close()
    return send_rate, recv_rate


def kernel_rr(ns_a: str, ns_b: str, conns: int) -> float:
    with kernel_peer(ns_b, "rr", PORT_RR):
        t0 = time.perf_counter()
        for _ in range(conns):
            s = kernel_client_socket(ns_a)
            s.connect(("198.18.1.2", PORT_RR))
            s.sendall(bytes(32))
            _recv_exactly(s, 32)
            s.close()
        return conns / (time.perf_counter() - t0)


# -- finwait <-> kernel over the TUN ----------------------------------------------


async def finwait_bulk(lab: Lab, mb: int, cfg: Config) -> tuple[float, float]:
    total = mb << 20
    payload = bytes(CHUNK)
    async with Stack.open(lab.name, lab.cfg.tun, config=cfg, record=False) as stack:
        with kernel_peer(lab.name, "sink", PORT_SINK):
            t0 = time.perf_counter()
            reader, writer = await open_connection(lab.cfg.kernel_v4, PORT_SINK, stack=stack)
            for _ in range(total // CHUNK):
                writer.write(payload)
                await writer.drain()
            writer.write_eof()
            n = int.from_bytes(await reader.readexactly(8), "big")
            send_rate = n / (time.perf_counter() - t0) / 1e6
            await writer.wait_closed()
        with kernel_peer(lab.name, "source", PORT_SOURCE):
            t0 = time.perf_counter()
            reader, writer = await open_connection(lab.cfg.kernel_v4, PORT_SOURCE, stack=stack)
            writer.write(total.to_bytes(8, "big"))
            got = 0
            while chunk := await reader.read(1 << 20):
                got += len(chunk)
            recv_rate = got / (time.perf_counter() - t0) / 1e6
            writer.close()
            await writer.wait_closed()
        print(f"  finwait counters: {dict(stack.driver.counters)}")
    return send_rate, recv_rate


async def finwait_rr(lab: Lab, conns: int, cfg: Config) -> float:
    async with Stack.open(lab.name, lab.cfg.tun, config=cfg, record=False) as stack:
        with kernel_peer(lab.name, "rr", PORT_RR):
            t0 = time.perf_counter()
            for _ in range(conns):
                reader, writer = await open_connection(lab.cfg.kernel_v4, PORT_RR, stack=stack)
                writer.write(bytes(32))
                await reader.readexactly(32)
                writer.close()
                await writer.wait_closed()
            return conns / (time.perf_counter() - t0)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    # A client connection per request: TIME-WAIT on the active closer (finwait)
    # must not fill the table during the run; MSL only matters for that.
    cfg = Config(msl=1.0, mss=args.mtu - 40, recv_buffer=4 << 20, send_buffer=4 << 20)

    print(f"live benchmark: {args.mb} MB bulk each way, {args.conns} connections, MTU {args.mtu}")
    with veth_pair() as (a, b):
        ks, kr = kernel_bulk(a, b, args.mb)
        kc = kernel_rr(a, b, args.conns)
    print(f"kernel<->kernel veth : send {ks:8.1f} MB/s  receive {kr:8.1f} MB/s  {kc:8.0f} conn/s")
    with Lab(mtu=args.mtu) as lab:
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
        fs, fr = asyncio.run(finwait_bulk(lab, args.mb, cfg))
        if args.profile:
            prof.disable()
        fc = asyncio.run(finwait_rr(lab, args.conns, cfg))
    print(f"finwait<->kernel TUN : send {fs:8.1f} MB/s  receive {fr:8.1f} MB/s  {fc:8.0f} conn/s")
    print(f"targets: >= 50 MB/s each way, >= 1000 conn/s: "
          f"{'met' if min(fs, fr) >= 50 and fc >= 1000 else 'NOT met'}")  # fmt: skip
    if args.profile:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
