"""Many connections with the kernel: 1,000 sequential and 100 concurrent, all
byte-exact, and finwait's connection table empty once TIME-WAIT (2 x the
tests' short MSL) has expired."""

from __future__ import annotations

import asyncio

import pytest

from finwait.live.apps import pattern
from finwait.live.lab import Lab
from finwait.live.streams import Stack, open_connection

from .harness import MSL, run, stack_on, until
from .peers import echo_server, in_thread, kernel_listener

pytestmark = pytest.mark.live


async def _one(stack: Stack, host: str, port: int, i: int) -> None:
    reader, writer = await open_connection(host, port, stack=stack)
    data = pattern(64 + i % 200, i)
    writer.write(data)
    writer.write_eof()  # finwait closes first: its side ends in TIME-WAIT
    assert await reader.read() == data
    await writer.wait_closed()
    assert writer.get_extra_info("tcp_state") == "TIME-WAIT"


@pytest.mark.parametrize(
    ("total", "concurrent"), [(1000, False), (100, True)], ids=["1000-sequential", "100-concurrent"]
)
def test_many_connections_byte_exact_and_table_empties(
    lab: Lab, total: int, concurrent: bool
) -> None:
    srv = kernel_listener(lab, 9100)

    async def main() -> None:
        async with stack_on(lab, rto_initial=1.0) as stack:
            peer = in_thread(echo_server, srv, total)
            host = lab.cfg.kernel_v4
            if concurrent:
                await asyncio.gather(*(_one(stack, host, 9100, i) for i in range(total)))
            else:
                for i in range(total):
                    await _one(stack, host, 9100, i)
            echoed = await peer
            assert echoed == sum(64 + i % 200 for i in range(total))
            assert stack.host.conns, "TIME-WAIT connections should still be there"
            await until(
                lambda: not stack.host.conns, timeout=2 * MSL + 2.0, what="empty connection table"
            )
            assert stack.host.stats()["connections"] == 0

    run(main, timeout=120)
