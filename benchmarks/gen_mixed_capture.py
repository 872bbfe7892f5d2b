"""Generate a mixed kernel capture for benchmarks/analyze_bench.py.

About 50,000 Linux-kernel TCP connections (~500 k packets) between two
network namespaces over a veth pair (198.18.200.1 -> 198.18.200.2), with
every close shape: client-first and server-first four-way closes,
three-segment closes, half-close with data, RST either way (SO_LINGER 0),
refused connections, never-closed connections, and a pool of reused client
ports (same 4-tuple again; the server closes first so the TIME-WAIT is on its
side).  Bounded: stops after --connections or --deadline seconds, and
removes its namespaces.  Needs root, ip, tcpdump.

    python benchmarks/gen_mixed_capture.py /tmp/mixed.pcap --connections 50000
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time

SERVER = r"""
import asyncio, socket, struct, sys
LINGER0 = struct.pack("ii", 1, 0)
async def handle(r, w, port):
    try:
        data = await r.read(65536)
        if port == 7004:
            while await r.read(65536):
                pass
            await asyncio.sleep(0.06)
            w.write(b"h" * 2000); await w.drain(); w.close(); return
        w.write(b"s" * 120); await w.drain()
        if port == 7006:
            await asyncio.sleep(0.01)
            w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            w.transport.abort(); return
        if port in (7002, 7009):
            await asyncio.sleep(0.01); w.close(); return
        if port == 7008:
            await asyncio.sleep(3600); return
        while await r.read(65536):
            pass
        if port == 7001:
            await asyncio.sleep(0.06)
        w.close()
    except OSError:
        w.close()
async def main(addr):
    for port in (7001, 7002, 7003, 7004, 7005, 7006, 7008, 7009):
        await asyncio.start_server(lambda r, w, p=port: handle(r, w, p), addr, port, backlog=4096, reuse_address=True)
    print("ready", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main(sys.argv[1]))
"""

CLIENT = r"""
import asyncio, socket, struct, sys, time
LINGER0 = struct.pack("ii", 1, 0)
SADDR, CADDR, N, DEADLINE = sys.argv[1], sys.argv[2], int(sys.argv[3]), time.time() + float(sys.argv[4])
# shape by connection number: weights of the mix
SHAPES = [7001] * 30 + [7002] * 20 + [7003] * 20 + [7004] * 8 + [7005] * 6 + [7006] * 6 + [7007] * 4 + [7009] * 5 + [7008] * 1
open_socks = []
reuse_free = asyncio.Queue()
async def one(i):
    port = SHAPES[i % len(SHAPES)]
    loop = asyncio.get_running_loop()
    s = socket.socket(); s.setblocking(False)
    reuse = None
    if port == 7009:
        reuse = await reuse_free.get()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((CADDR, reuse))
        except OSError:
            s.close(); reuse_free.put_nowait(reuse); return
    try:
        await loop.sock_connect(s, (SADDR, port))
        if port == 7004:
            await loop.sock_sendall(s, b"c" * 300); s.shutdown(socket.SHUT_WR)
            while await loop.sock_recv(s, 65536): pass
            s.close(); return
        await loop.sock_sendall(s, b"c" * 200)
        await loop.sock_recv(s, 65536)
        if port == 7005:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0); s.close(); return
        if port == 7008:
            open_socks.append(s); return
        if port in (7002, 7006, 7009):
            while await loop.sock_recv(s, 65536): pass
            await asyncio.sleep(0.06)
        s.close()
    except OSError:
        s.close()
    finally:
        if reuse is not None:
            loop.call_later(0.2, reuse_free.put_nowait, reuse)
async def main():
    for p in range(50000, 50400):
        reuse_free.put_nowait(p)
    sem = asyncio.Semaphore(256)
    async def run(i):
        async with sem:
            await one(i)
    tasks = []
    for i in range(N):
        if time.time() > DEADLINE:
            break
        await sem.acquire(); sem.release()
        tasks.append(asyncio.create_task(run(i)))
        if len(tasks) > 2000:
            tasks = [t for t in tasks if not t.done()]
    await asyncio.gather(*tasks)
    print("done", len(open_socks), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def sh(*a: str) -> None:
    subprocess.run(a, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out")
    ap.add_argument("--connections", type=int, default=50_000)
    ap.add_argument(
        "--deadline", type=float, default=180.0, help="seconds; stop starting connections after"
    )
    args = ap.parse_args()
    tag = secrets.token_hex(3)
    c, s = f"fwbench-{tag}-c", f"fwbench-{tag}-s"
    procs: list[subprocess.Popen[str]] = []
    try:
        sh("ip", "netns", "add", c)
        sh("ip", "netns", "add", s)
        sh(
            "ip",
            "link",
            "add",
            "fwv-c",
            "netns",
            c,
            "type",
            "veth",
            "peer",
            "name",
            "fwv-s",
            "netns",
            s,
        )
        for ns, dev, addr in ((c, "fwv-c", "198.18.200.1/24"), (s, "fwv-s", "198.18.200.2/24")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # Enough ephemeral ports and no SYN cookies for the burst.
        sh("ip", "netns", "exec", c, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 60999")
        sh("ip", "netns", "exec", s, "sysctl", "-qw", "net.ipv4.tcp_max_syn_backlog=8192")
        srv = subprocess.Popen(["ip", "netns", "exec", s, sys.executable, "-c", SERVER, "198.18.200.2"],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(srv)
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        dump = subprocess.Popen(
            ["ip", "netns", "exec", c, "tcpdump", "-i", "fwv-c", "-s", "128", "-B", "65536", "-w", args.out, "tcp"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(dump)
        assert dump.stderr is not None
        dump.stderr.readline()
        t0 = time.time()
        cli = subprocess.Popen(
            ["ip", "netns", "exec", c, sys.executable, "-c", CLIENT, "198.18.200.2", "198.18.200.1",
             str(args.connections), str(args.deadline)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(cli)
        assert cli.stdout is not None
        line = cli.stdout.readline().strip()
        time.sleep(1.0)
        dump.terminate()
        _, err = dump.communicate(timeout=10)
        print(f"client: {line}; {time.time() - t0:.1f} s; tcpdump: {err.strip().splitlines()[-3:]}")
        print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in (c, s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    main()
