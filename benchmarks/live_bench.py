"""Live throughput and connection rate: finwait on a TUN against the Linux
kernel, with the kernel<->kernel figure over a veth pair between two
namespaces (the upper anchor) measured in the same run.

    python benchmarks/live_bench.py [--mb 50] [--conns 2000] [--mtu 1500] [--profile]
                                    [--anchors all|kernel|none]

Needs root.  Each figure: bulk MB/s finwait->kernel ("send") and
kernel->finwait ("receive"), and connections/s (connect, 32-byte request,
32-byte reply, close; sequential).  The kernel side is a child process put in
the namespace with setns before exec; it is killed with the namespace.
PyTCP (``pip install pmd-pytcp==0.3.8``, the pure-Python anchor) runs in a
child process in its own lab of the same shape, opening the TUN itself, as the
client of the same kernel peers.  finwait's bulk runs twice, without and
with TUN segmentation offload (the default); its CPU use is printed as MB per
CPU-second, steadier than MB/s on a shared machine, and so are its
connections (the veth anchor's client beside it).  ``--profile`` runs the
offloaded bulk transfers and the connection loop under cProfile and prints
the top functions of each.  Addresses: 198.18.0.0/15 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from pyroute2 import IPRoute, netns

from finwait.live.lab import Lab, _netlink, inside, kill_netns_processes
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


# -- PyTCP <-> kernel over a TUN (the pure-Python anchor) -------------------------


def pytcp_main(argv: list[str]) -> None:
    """``TUN MTU MB CONNS``: run PyTCP (pmd-pytcp 0.3.8, asyncio) on TUN ``TUN``
    of the namespace this process was started in, as 198.18.0.2, against the
    kernel peers at 198.18.0.1; print one JSON line with the three figures."""
    tun, mtu, mb, conns = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    print(json.dumps(asyncio.run(_pytcp_client(tun, mtu, mb, conns))), flush=True)


async def _pytcp_client(tun: str, mtu: int, mb: int, conns: int) -> dict[str, float]:
    from pmd_net_addr import Ip4IfAddr
    from pmd_pytcp import socket as psock
    from pmd_pytcp import stack

    # PyTCP opens the TUN itself (IFF_TUN with the 4-byte packet-information
    # header; the persistent device takes the flags of whoever attaches).
    iface = stack.initialize_interface__tun(tun)
    stack.init(
        fd=iface["fd"], layer=iface["layer"], mtu=mtu, interface_name=tun,
        ip4_host=Ip4IfAddr("198.18.0.2/24"), ip4_dhcp=False,
        ip6_support=False, ip6_lla_autoconfig=False,
    )  # fmt: skip
    await stack.start()
    # The host address is claimed asynchronously after start(): wait for it.
    for _ in range(500):
        if stack.local_ip4_hosts():
            break
        await asyncio.sleep(0.01)
    total = mb << 20
    payload = bytes(CHUNK)
    try:
        # The factory is typed as the base class; TCP sockets have shutdown().
        s: Any = psock.socket(psock.AF_INET, psock.SOCK_STREAM)
        t0 = time.perf_counter()
        await s.connect(("198.18.0.1", PORT_SINK))
        for _ in range(total // CHUNK):
            await s.send(payload)  # PyTCP buffers without limit; the FIN waits for it
        s.shutdown(psock.SHUT_WR)
        got = b""
        while len(got) < 8 and (chunk := await s.recv(8 - len(got))):
            got += chunk
        send_rate = int.from_bytes(got, "big") / (time.perf_counter() - t0) / 1e6
        s.close()

        s = psock.socket(psock.AF_INET, psock.SOCK_STREAM)
        t0 = time.perf_counter()
        await s.connect(("198.18.0.1", PORT_SOURCE))
        await s.send(total.to_bytes(8, "big"))
        n = 0
        while chunk := await s.recv(1 << 20):
            n += len(chunk)
        recv_rate = n / (time.perf_counter() - t0) / 1e6
        s.close()

        t0 = time.perf_counter()
        for _ in range(conns):
            s = psock.socket(psock.AF_INET, psock.SOCK_STREAM)
            await s.connect(("198.18.0.1", PORT_RR))
            await s.send(bytes(32))
            got = b""
            while len(got) < 32 and (chunk := await s.recv(32 - len(got))):
                got += chunk
            s.close()
        rate = conns / (time.perf_counter() - t0)
    finally:
        await stack.stop()
    return {"send": send_rate, "receive": recv_rate, "conn_per_s": rate, "received": n}


def pytcp_bulk_rr(mb: int, conns: int, mtu: int) -> tuple[float, float, float] | str:
    """PyTCP's figures, or why it could not run."""
    try:
        import pmd_pytcp  # noqa: F401
    except ImportError:
        return "pmd-pytcp is not installed (pip install pmd-pytcp==0.3.8)"
    with Lab(mtu=mtu) as lab, contextlib.ExitStack() as peers:
        for mode, port in (("sink", PORT_SINK), ("source", PORT_SOURCE), ("rr", PORT_RR)):
            peers.enter_context(kernel_peer(lab.name, mode, port))
        proc = subprocess.run(
            [sys.executable, __file__, "--pytcp", lab.cfg.tun, str(mtu), str(mb), str(conns)],
            preexec_fn=lambda: netns.setns(lab.name, flags=0),
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    if proc.returncode != 0:
        return f"PyTCP exited with {proc.returncode}: {proc.stderr.strip()[-400:]}"
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["received"] != mb << 20:
        return f"PyTCP received {res['received']} of {mb << 20} bytes"
    return res["send"], res["receive"], res["conn_per_s"]


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
    # The client thread stays in its namespace for the whole loop (a setns
    # pair per connection would be the anchor's own overhead, not the
    # kernel's), as finwait's loop runs in one place.
    with kernel_peer(ns_b, "rr", PORT_RR), inside(ns_a):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(conns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.connect(("198.18.1.2", PORT_RR))
            s.sendall(bytes(32))
            _recv_exactly(s, 32)
            s.close()
        rate = conns / (time.perf_counter() - t0)
        print(f"  kernel client CPU: {conns / (time.process_time() - c0):.0f} connections "
              f"per CPU-second")  # fmt: skip
        return rate


# -- finwait <-> kernel over the TUN ----------------------------------------------


async def finwait_bulk(
    lab: Lab, mb: int, cfg: Config, *, offload: bool = False
) -> tuple[float, float]:
    total = mb << 20
    payload = bytes(CHUNK)
    async with Stack.open(
        lab.name, lab.cfg.tun, config=cfg, record=False, offload=offload
    ) as stack:
        with kernel_peer(lab.name, "sink", PORT_SINK):
            t0, c0 = time.perf_counter(), time.process_time()
            reader, writer = await open_connection(lab.cfg.kernel_v4, PORT_SINK, stack=stack)
            for _ in range(total // CHUNK):
                writer.write(payload)
                await writer.drain()
            writer.write_eof()
            n = int.from_bytes(await reader.readexactly(8), "big")
            if n != total:
                raise RuntimeError(f"the kernel received {n} of {total} bytes")
            send_rate = n / (time.perf_counter() - t0) / 1e6
            send_cpu = time.process_time() - c0
            await writer.wait_closed()
        with kernel_peer(lab.name, "source", PORT_SOURCE):
            t0, c0 = time.perf_counter(), time.process_time()
            reader, writer = await open_connection(lab.cfg.kernel_v4, PORT_SOURCE, stack=stack)
            writer.write(total.to_bytes(8, "big"))
            got = 0
            while chunk := await reader.read(1 << 20):
                got += len(chunk)
            if got != total:
                raise RuntimeError(f"finwait received {got} of {total} bytes")
            recv_rate = got / (time.perf_counter() - t0) / 1e6
            recv_cpu = time.process_time() - c0
            writer.close()
            await writer.wait_closed()
        # CPU seconds of this process (user + system: the kernel's TCP work
        # inside our TUN reads and writes is ours too) per direction: on a
        # shared machine this moves less than the wall-clock rate.
        print(f"  finwait CPU: send {total / send_cpu / 1e6:.1f} MB per CPU-second, "
              f"receive {total / recv_cpu / 1e6:.1f} MB per CPU-second")  # fmt: skip
        print(f"  finwait counters: {dict(stack.driver.counters)}")
    return send_rate, recv_rate


def tun_stats(lab: Lab) -> dict[str, int]:
    """The TUN's queue length and drops (tx: kernel -> finwait, the queue
    finwait reads; a drop there is a loss the kernel recovers from)."""
    with _netlink(lab.name) as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=lab.cfg.tun)[0])[0]
    st = link.get("IFLA_STATS64")
    return {
        "txqlen": link.get("IFLA_TXQLEN"),
        "tx_dropped": st["tx_dropped"],
        "tx_packets": st["tx_packets"],
        "rx_packets": st["rx_packets"],
    }


async def finwait_rr(lab: Lab, conns: int, cfg: Config) -> float:
    async with Stack.open(lab.name, lab.cfg.tun, config=cfg, record=False) as stack:
        with kernel_peer(lab.name, "rr", PORT_RR):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(conns):
                reader, writer = await open_connection(lab.cfg.kernel_v4, PORT_RR, stack=stack)
                writer.write(bytes(32))
                await reader.readexactly(32)
                writer.close()
                await writer.wait_closed()
            rate = conns / (time.perf_counter() - t0)
            print(f"  finwait CPU: {conns / (time.process_time() - c0):.0f} connections "
                  f"per CPU-second")  # fmt: skip
            return rate


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--pytcp":
        pytcp_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--anchors", choices=("all", "kernel", "none"), default="all",
                    help="which anchors to run besides finwait (PyTCP: pmd-pytcp 0.3.8)")  # fmt: skip
    args = ap.parse_args()
    # A client connection per request: TIME-WAIT on the active closer (finwait)
    # must not fill the table during the run; MSL only matters for that.
    cfg = Config(msl=1.0, mss=args.mtu - 40, recv_buffer=4 << 20, send_buffer=4 << 20)

    print(f"live benchmark: {args.mb} MB bulk each way, {args.conns} connections, MTU {args.mtu}")
    rows: list[tuple[str, float, float, float | None]] = []
    if args.anchors != "none":
        with veth_pair() as (a, b):
            ks, kr = kernel_bulk(a, b, args.mb)
            kc = kernel_rr(a, b, args.conns)
        rows.append(("kernel<->kernel veth", ks, kr, kc))
        print(_row(*rows[-1]), flush=True)
    with Lab(mtu=args.mtu) as lab:
        # One packet per segment (the driver as first written), then TUN
        # segmentation offload (the default): what the offload buys, same run.
        ps_, pr_ = asyncio.run(finwait_bulk(lab, args.mb, cfg, offload=False))
        print(f"  TUN: {tun_stats(lab)}")  # pyroute2 cannot run inside a running loop
        rows.append(("finwait, no offload", ps_, pr_, None))
        print(_row(*rows[-1]), flush=True)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
        fs, fr = asyncio.run(finwait_bulk(lab, args.mb, cfg, offload=True))
        if args.profile:
            prof.disable()
            prof_rr = cProfile.Profile()
            prof_rr.enable()
        print(f"  TUN: {tun_stats(lab)}")
        fc = asyncio.run(finwait_rr(lab, args.conns, cfg))
        if args.profile:
            prof_rr.disable()
    rows.append(("finwait<->kernel TUN", fs, fr, fc))
    print(_row(*rows[-1]), flush=True)
    if args.anchors == "all":
        res = pytcp_bulk_rr(args.mb, args.conns, args.mtu)
        if isinstance(res, str):
            print(f"PyTCP<->kernel TUN   : did not run: {res}")
        else:
            ps, pr, pc = res
            print(_row("PyTCP<->kernel TUN", ps, pr, pc))
            print(f"finwait / PyTCP      : send {fs / ps:8.1f} x     receive {fr / pr:8.1f} x     "
                  f"{fc / pc:8.1f} x")  # fmt: skip
    print(f"targets (issue 9): send >= 450 MB/s, >= 3,000 conn/s: "
          f"{'met' if fs >= 450 and fc >= 3000 else 'NOT met'}")  # fmt: skip
    if args.profile:
        print("profile: bulk transfers, offload")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        print("profile: the connections/s loop")
        pstats.Stats(prof_rr).sort_stats("tottime").print_stats(25)


def _row(name: str, send: float, receive: float, conns: float | None) -> str:
    rate = "" if conns is None else f"  {conns:8.0f} conn/s"
    return f"{name:21s}: send {send:8.1f} MB/s  receive {receive:8.1f} MB/s{rate}"


if __name__ == "__main__":
    main()
