"""A second Stack in the same process and lab connects from the ports of the
first while the kernel still holds those connections in TIME-WAIT (it closed
first).  The kernel takes the new SYN only if its sequence number and
timestamp lie beyond the old connection's (RFC 6191): the secret behind ISNs
and timestamp offsets must outlive the Stack, as Linux's outlives a socket.
With a key per Stack, most of these SYNs drew the old connection's ACK, our
RST, and a SYN retransmitted a second later."""

from __future__ import annotations

import socket

import pytest

from finwait.live.lab import Lab
from finwait.live.streams import open_connection
from finwait.trace import SegmentEvent
from finwait.wire.segment import RST, SYN

from .harness import run, stack_on
from .peers import in_thread, kernel_listener

pytestmark = pytest.mark.live

N = 8
PORT = 9240


def test_new_stack_reuses_ports_the_kernel_holds_in_time_wait(lab: Lab) -> None:
    srv = kernel_listener(lab, PORT)

    def kernel() -> None:
        # The kernel closes first: it holds every connection in TIME-WAIT.
        with srv:
            for _ in range(2 * N):
                c, _ = srv.accept()
                with c:
                    c.recv(1)
                    c.shutdown(socket.SHUT_WR)
                    c.recv(1)  # finwait's FIN

    async def round_(ports: list[int] | None) -> list[int]:
        used = []
        async with stack_on(lab, rto_initial=1.0) as stack:
            for i in range(N):
                local = (lab.cfg.finwait_v4, ports[i]) if ports else None
                reader, writer = await open_connection(
                    lab.cfg.kernel_v4, PORT, stack=stack, local_addr=local
                )
                writer.write(b"x")
                assert await reader.read() == b""
                writer.close()
                await writer.wait_closed()
                conn = writer.connection
                used.append(conn.local[1])
                segs = [e.segment for e in writer.trace.events if isinstance(e, SegmentEvent)]
                syns = [s for s in segs if s.flags & SYN and s.dst == lab.cfg.kernel_v4]
                assert len(syns) == 1, f"port {conn.local[1]}: {len(syns)} SYNs sent"
                assert not any(s.flags & RST for s in segs), f"port {conn.local[1]}: a RST"
                assert segs[1].flags & SYN and segs[1].dst == lab.cfg.finwait_v4, (
                    f"port {conn.local[1]}: the SYN was answered by {segs[1]}, not a SYN,ACK"
                )
        return used

    async def main() -> None:
        peer = in_thread(kernel)
        first = await round_(None)
        assert await round_(first) == first
        await peer

    run(main)
