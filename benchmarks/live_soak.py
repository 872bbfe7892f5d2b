"""A live soak: finwait <-> kernel traffic for a long time, with loss, to show
that memory, open connections and file descriptors stay flat.

    python benchmarks/live_soak.py [--seconds 600] [--loss 0.05] [--concurrency 24]
                                   [--sample 15] [--seed 1]

Needs root.  One private lab; finwait's Stack runs in this process with the
driver's drop hook losing ``--loss`` of the packets in each direction (SYNs,
FINs and RSTs included).  A kernel peer (a child process in the namespace)
runs an asyncio server and an asyncio client; this process runs a finwait
server and a finwait client.  Each connection draws its script:

- sizes: request and reply each 0, 100 B, 10 kB or 200 kB;
- ``C``: the client closes first (half-close after its request; the server
  replies, then closes);
- ``S``: the server closes first (the client does not half-close; the server
  replies, then closes; the client then closes);
- ``A``: the client aborts (RST) after sending its request;
- ``R``: the server aborts (RST) after reading the request.

Every stream is checked byte-exact (a pattern depending on the connection's
number).  Every ``--sample`` seconds a line: finwait's RSS, connections in its
table (by state), streams and traces held by the Stack, open fds, and the
totals so far; at the end, the first and last samples side by side.
Addresses: 198.18.0.0/15 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any

from pyroute2 import netns

from finwait.live.lab import Lab, tun_counters
from finwait.live.streams import Stack, StreamReader, StreamWriter, open_connection, start_server
from finwait.tcp.config import Config
from finwait.wire.segment import Segment

KERNEL_PORT, FINWAIT_PORT = 7001, 7002
SIZES = (0, 100, 10_000, 200_000)
MODES = "CCSSAR"  # releases twice as often as each abort
HEADER = struct.Struct("!cIII")  # mode, request length, reply length, connection number


def pattern(n: int, seed: int) -> bytes:
    block = bytes((seed * 13 + i) & 0xFF for i in range(256))
    return (block * (n // 256 + 1))[:n]


def draw(rng: random.Random) -> tuple[bytes, int, int]:
    mode = rng.choice(MODES)
    return mode.encode(), rng.choice(SIZES), rng.choice(SIZES)


# -- one script, for any reader/writer pair with asyncio's stream interface ----


async def client_script(reader: Any, writer: Any, i: int, mode: bytes, req: int, rep: int) -> str:
    writer.write(HEADER.pack(mode, req, rep, i) + pattern(req, i))
    await writer.drain()
    if mode == b"A":
        _abort(writer)
        return "aborted by client"
    if mode == b"C":
        writer.write_eof()
    if mode == b"R":
        try:
            got = await reader.read()
        except ConnectionError:
            return "reset by server"
        return f"bad: no RST from the server ({len(got)} B)"
    got = await reader.read()
    writer.close()
    return "ok" if got == pattern(rep, i + 1) else f"bad: reply {len(got)} of {rep}"


async def server_script(reader: Any, writer: Any) -> str:
    head = await reader.readexactly(HEADER.size)
    mode, req, rep, i = HEADER.unpack(head)
    if mode == b"A":
        try:
            await reader.read()  # until the client's RST
        except ConnectionError:
            return "aborted by client"
        return "bad: no RST from the client"
    data = await reader.readexactly(req)
    if data != pattern(req, i):
        return "bad: request differs"
    if mode == b"R":
        _abort(writer)
        return "reset by server"
    if mode == b"C" and await reader.read() != b"":
        return "bad: data after the request"
    writer.write(pattern(rep, i + 1))
    await writer.drain()
    if mode == b"S":  # FIN first (half-close), then read on until the client's
        writer.write_eof()
        if await reader.read() != b"":
            return "bad: data after our FIN"
    writer.close()
    return "ok"


def _abort(writer: Any) -> None:
    if hasattr(writer, "abort") and not isinstance(writer, asyncio.StreamWriter):
        writer.abort()  # finwait's StreamWriter: RST
        return
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError):
        return "reset (before its script expected one)"
    if isinstance(exc, TimeoutError):
        return "gave up after 60 s (a lost RST is never retransmitted)"
    return f"error: {type(exc).__name__}"


# -- the kernel peer (child process in the namespace) ---------------------------


async def kernel_peer(host: str, finwait: str, concurrency: int, seed: int) -> None:
    results: Counter[str] = Counter()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            results["server " + await asyncio.wait_for(server_script(reader, writer), 60)] += 1
        except Exception as exc:
            results["server " + _outcome(exc)] += 1
            writer.transport.abort()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, KERNEL_PORT, backlog=4096)
    rng = random.Random(seed)
    sem = asyncio.Semaphore(concurrency)
    print("ready", flush=True)

    async def one(i: int) -> None:
        mode, req, rep = draw(rng)
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(finwait, FINWAIT_PORT), 60
            )
            res = await asyncio.wait_for(client_script(reader, writer, i, mode, req, rep), 60)
            results["client " + res] += 1
        except Exception as exc:
            results["client " + _outcome(exc)] += 1
            if writer is not None:
                writer.transport.abort()
        finally:
            sem.release()

    async def report() -> None:
        while True:
            await asyncio.sleep(5)
            print(json.dumps(dict(results)), flush=True)

    tasks: set[asyncio.Future[None]] = {asyncio.ensure_future(report())}
    i = 1_000_000_000
    async with server:
        while True:
            await sem.acquire()
            i += 2
            task = asyncio.ensure_future(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


def peer_main(argv: list[str]) -> None:
    asyncio.run(kernel_peer(argv[0], argv[1], int(argv[2]), int(argv[3])))


# -- finwait's side ---------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def soak(lab: Lab, args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    loss = random.Random(args.seed + 1)
    lost: Counter[str] = Counter()

    def drop(direction: str, seg: Segment) -> bool:
        if loss.random() < args.loss:
            lost[direction] += 1
            return True
        return False

    cfg = Config(msl=2.0, fin_wait_2_timeout=30.0)
    results: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    async with Stack.open(lab.name, lab.cfg.tun, config=cfg, drop=drop, record=False) as stack:

        async def handle(reader: StreamReader, writer: StreamWriter) -> None:
            try:
                res = await asyncio.wait_for(server_script(reader, writer), 60)
                results["server " + res] += 1
            except Exception as exc:
                results["server " + _outcome(exc)] += 1
                if not writer.is_closing():
                    writer.abort()

        await start_server(handle, FINWAIT_PORT, stack=stack)
        peer = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--peer", lab.cfg.kernel_v4, lab.cfg.finwait_v4,
            str(args.concurrency), str(args.seed + 2),
            preexec_fn=lambda: netns.setns(lab.name, flags=0),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert peer.stdout is not None
        assert await peer.stdout.readline() == b"ready\n"
        kernel_results: dict[str, int] = {}

        async def read_peer() -> None:
            assert peer.stdout is not None
            while line := await peer.stdout.readline():
                kernel_results.update(json.loads(line))

        reader_task = asyncio.ensure_future(read_peer())
        sem = asyncio.Semaphore(args.concurrency)
        tasks: set[asyncio.Future[None]] = set()

        async def one(i: int) -> None:
            mode, req, rep = draw(rng)
            writer = None
            try:
                reader, writer = await open_connection(
                    lab.cfg.kernel_v4, KERNEL_PORT, stack=stack, timeout=60
                )
                res = await asyncio.wait_for(client_script(reader, writer, i, mode, req, rep), 60)
                results["client " + res] += 1
            except Exception as exc:
                results["client " + _outcome(exc)] += 1
                # The application gives up (a lost RST is never retransmitted:
                # the peer's reset can be waited for in vain) and aborts.
                if writer is not None and not writer.is_closing():
                    writer.abort()
            finally:
                sem.release()

        t0 = time.monotonic()
        next_sample = t0
        i = 0
        while (now := time.monotonic()) < t0 + args.seconds:
            if now >= next_sample:
                states = Counter(str(c.state) for c in stack.host.conns.values())
                sample = {
                    "t": round(now - t0),
                    "rss_kb": _rss_kb(),
                    "conns": len(stack.host.conns),
                    "states": dict(states),
                    "streams": len(stack._streams),
                    "traces": len(stack._traces),
                    "fds": _fds(),
                    "finwait": dict(results),
                    "kernel": dict(kernel_results),
                    "lost": dict(lost),
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                next_sample += args.sample
            try:
                await asyncio.wait_for(sem.acquire(), 1)
            except TimeoutError:
                continue
            i += 2
            task = asyncio.ensure_future(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        peer.kill()
        await peer.wait()
        reader_task.cancel()
    return samples


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--sample", type=float, default=15)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with Lab() as lab:
        samples = asyncio.run(soak(lab, args))
        tun = tun_counters(lab.cfg)
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    print(f"TUN: {tun}")
    for key in ("rss_kb", "conns", "streams", "traces", "fds"):
        values = [s[key] for s in samples[1:]] or [first[key]]
        print(f"{key:8s}: first {first[key]:>8}  last {last[key]:>8}  "
              f"min {min(values):>8}  max {max(values):>8}")  # fmt: skip


if __name__ == "__main__":
    main()
