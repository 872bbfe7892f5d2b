"""Bulk data both ways with the kernel, byte-exact, with and without TUN
segmentation offload: with it, the kernel's 64 KB super-packets must reach the
engine whole and finwait's runs of segments must leave as super-packets that
the kernel's TCP accepts; without it, every packet is one segment."""

from __future__ import annotations

import hashlib
import socket

import pytest

from finwait.live.apps import pattern
from finwait.live.lab import Lab
from finwait.live.streams import open_connection

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
