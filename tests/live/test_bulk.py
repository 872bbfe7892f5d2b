"""Bulk data both ways with the kernel, byte-exact, with and without TUN
segmentation offload: with it, the kernel's 64 KB super-packets must reach the
engine whole and finwait's runs of segments must leave as super-packets that
the kernel's TCP accepts; without it, every packet is one segment."""

from __future__ import annotations

import asyncio
import hashlib
import socket

import pytest

from finwait.live.apps import pattern
from finwait.live.driver import IN, OUT
from finwait.live.lab import Lab
from finwait.live.streams import open_connection
from finwait.wire.segment import Segment

from .harness import run, stack_on
from .peers import in_thread, kernel_listener, recv_all

pytestmark = pytest.mark.live

SIZE = 3 << 20


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_bulk_both_ways_byte_exact(lab: Lab, offload: bool) -> None:
    srv = kernel_listener(lab, 9200)
    up = pattern(SIZE)
    down = pattern(SIZE, 7)

    def kernel() -> str:
        c, _ = srv.accept()
        with c:
            got = recv_all(c)  # until finwait's FIN
            c.sendall(down)
            c.shutdown(socket.SHUT_WR)
        srv.close()
        return hashlib.sha256(got).hexdigest()

    async def main() -> None:
        async with stack_on(lab, offload=offload, recv_buffer=1 << 20) as stack:
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9200, stack=stack)
            for i in range(0, SIZE, 1 << 16):
                writer.write(up[i : i + (1 << 16)])
                await writer.drain()
            writer.write_eof()
            got = await reader.read()
            assert await peer == hashlib.sha256(up).hexdigest()
            assert got == down
            await writer.wait_closed()
            c = stack.driver.counters
            # Only the kernel's IPv6 chatter (router solicitations) is not ours.
            errors = {k: v for k, v in stack.host.counters.items() if k.startswith("parse_error:")}
            assert set(errors) <= {"parse_error:not tcp"}, errors
            if offload:
                assert c["super-packets in"] > 0 and c["super-packets out"] > 0, dict(c)
                assert c["packets in"] < SIZE // 1448, dict(c)  # far fewer than segments
            else:
                assert "super-packets in" not in c and "super-packets out" not in c, dict(c)

    run(main, timeout=60)


def test_bulk_with_loss_both_ways_recovers_with_sack(lab: Lab) -> None:
    """One data segment in 40 dropped each way (on the TUN, so the kernel
    sees real holes): Linux's SACK blocks drive finwait's recovery (RFC 6675)
    and finwait's drive Linux's; both streams arrive byte-exact."""
    size = 1 << 20
    seen = {IN: 0, OUT: 0}

    def hook(direction: str, seg: Segment) -> bool:
        if not seg.payload:
            return False
        seen[direction] += 1
        return seen[direction] % 40 == 0

    srv = kernel_listener(lab, 9201)
    up = pattern(size, 3)
    down = pattern(size, 5)

    def kernel() -> str:
        c, _ = srv.accept()
        c.settimeout(30)
        with c:
            c.sendall(down)  # finwait reads all along (below): no deadlock
            got = recv_all(c)
            c.shutdown(socket.SHUT_WR)
        srv.close()
        return hashlib.sha256(got).hexdigest()

    async def main() -> None:
        async with stack_on(lab, drop=hook, offload=False) as stack:
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9201, stack=stack)
            reading = asyncio.ensure_future(reader.read())
            writer.write(up)
            await writer.drain()
            writer.write_eof()
            assert await reading == down
            assert await peer == hashlib.sha256(up).hexdigest()
            await writer.wait_closed()
            conn = writer.get_extra_info("connection")
            assert conn.sack_ok
            c = stack.host.counters
            assert c["fast_retransmit"] >= seen[OUT] // 40 // 2, dict(c)
            assert c["dupack"] > 0 and c.get("rto", 0) <= seen[OUT] // 40 // 4, dict(c)

    run(main, timeout=60)


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_slow_start_with_super_packets_counts_bytes(lab: Lab, offload: bool) -> None:
    """With offload the kernel ACKs each super-packet once (a stretch ACK for
    up to 45 segments): slow start must grow cwnd by what each ACK delivers,
    not by one SMSS (RFC 3465's L = 1, which left cwnd near 100 kB after
    3 MB).  Without offload every segment is its own packet and the default
    newreno counts one SMSS per ACK, as configured."""
    srv = kernel_listener(lab, 9202)

    def kernel() -> int:
        c, _ = srv.accept()
        with c:
            n = len(recv_all(c))
        srv.close()
        return n

    async def main() -> None:
        async with stack_on(lab, offload=offload) as stack:
            peer = in_thread(kernel)
            _reader, writer = await open_connection(lab.cfg.kernel_v4, 9202, stack=stack)
            data = pattern(SIZE)
            for i in range(0, SIZE, 1 << 16):
                writer.write(data[i : i + (1 << 16)])
                await writer.drain()
            writer.write_eof()
            assert await peer == SIZE
            await writer.wait_closed()
            conn = writer.connection
            assert conn.config.congestion_control == ("newreno-abc" if offload else "newreno")
            if offload:
                assert conn.cc.cwnd > SIZE // 2, conn.cc.cwnd

    run(main, timeout=60)
