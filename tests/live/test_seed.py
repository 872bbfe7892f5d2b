"""The seed, live: the Linux kernel is host A, finwait is server B.

Kernel client sends 247 bytes; finwait replies 49 and closes first; the
kernel sends 10 more bytes after finwait's FIN (finwait receives them), then
closes.  On the wire (relative numbers): FIN seq=50 ack=248, ACK 51,
data 248..257, FIN seq=258, final ACK 259.  And the same with the roles
swapped: finwait is the client, the kernel server closes first with
shutdown(SHUT_WR).  Checked on an independent AF_PACKET capture."""

from __future__ import annotations

import asyncio
import socket

import pytest

from finwait.live.apps import CLOSE_AFTER_EOF, CLOSE_FIRST, pattern, run_script, serve_script
from finwait.live.lab import Lab
from finwait.live.streams import StreamReader, StreamWriter, open_connection, start_server
from finwait.tcp.state import State

from .harness import run, stack_on
from .peers import (
    ACK,
    FIN,
    Capture,
    Pkt,
    in_thread,
    kernel_listener,
    kernel_socket,
    one_connection,
    recv_all,
    recv_exactly,
    relative,
)

pytestmark = pytest.mark.live


def _release(pkts: list[Pkt]) -> list[tuple[bool, str, int, int, int]]:
    """From the first FIN on: (sent by kernel, flags, seq, ack, len)."""
    start = next(i for i, p in enumerate(pkts) if p.flags & FIN)
    names = {FIN | ACK: "FIN,ACK", ACK: "ACK"}
    return [
        (p.out, names.get(p.flags & (FIN | ACK), hex(p.flags)), p.seq, p.ack, p.length)
        for p in pkts[start:]
    ]


def _fin_seq(p: Pkt) -> int:
    return p.seq + p.length  # a FIN piggybacked on data (LX-4) sits after it


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_seed_live_kernel_client_finwait_server_closes_first(lab: Lab, family: int) -> None:
    dst = lab.cfg.finwait_v4 if family == socket.AF_INET else lab.cfg.finwait_v6

    def kernel_host_a() -> bytes:
        s = kernel_socket(lab, family)
        s.settimeout(10)
        s.connect((dst, 9000))
        s.sendall(pattern(247))
        got = recv_all(s)  # until finwait's FIN
        s.sendall(pattern(10, 247))  # the half-close: B still receives
        s.close()
        return got

    async def main() -> None:
        cap = Capture(lab)
        results = []

        async def handler(r: StreamReader, w: StreamWriter) -> None:
            results.append(
                await serve_script(r, w, expect_bytes=247, reply_bytes=49, close=CLOSE_FIRST)
            )

        async with stack_on(lab) as stack:
            await start_server(handler, 9000, stack=stack)
            got = await in_thread(kernel_host_a)
            while not results:
                await asyncio.sleep(0.01)
        pkts = relative(one_connection(cap.stop(), 9000))
        out = results[0]
        assert got == pattern(49)
        assert bytes(out.received) == pattern(247) + pattern(10, 247)
        assert out.received_after_own_fin == 10
        assert out.final_state == "TIME-WAIT"
        rel = _release(pkts)
        # 1. B -> A FIN,ACK seq=50 ack=248
        assert rel[0] == (False, "FIN,ACK", 50, 248, 0), [str(p) for p in pkts]
        kernel = [
            p
            for p in pkts
            if p.out and pkts.index(p) > pkts.index(next(q for q in pkts if q.flags & FIN))
        ]
        # 2. A -> B acknowledges the FIN: ack=51 (on its own or on the data;
        # a delayed ACK of the 49 bytes alone, ack=50, may come first: LX-1)
        assert [p.ack for p in kernel if p.ack != 50] == [51] * len(
            [p for p in kernel if p.ack != 50]
        )
        assert all(p.ack == 51 for p in kernel if p.length or p.flags & FIN)
        # 3. the 10 bytes 248..257, then A's FIN at 258
        data = [p for p in kernel if p.length]
        assert data[0].seq == 248 and sum(p.length for p in data) == 10
        a_fin = next(p for p in kernel if p.flags & FIN)
        assert _fin_seq(a_fin) == 258
        # 4. B's final ACK 259, seq 51
        last = pkts[-1]
        assert (last.out, last.flags, last.seq, last.ack) == (False, ACK, 51, 259), str(last)

    run(main)


def test_seed_roles_swapped_finwait_client_kernel_server_shuts_down_first(lab: Lab) -> None:
    srv = kernel_listener(lab, 9001)

    def kernel_server_b() -> bytes:
        c, _ = srv.accept()
        with c:
            c.settimeout(10)
            got = recv_exactly(c, 247)
            c.sendall(pattern(49))
            c.shutdown(socket.SHUT_WR)  # FIN seq=50 ack=248
            rest = recv_all(c)
        srv.close()
        return got + rest

    async def main() -> None:
        cap = Capture(lab)
        async with stack_on(lab) as stack:
            kernel = in_thread(kernel_server_b)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9001, stack=stack)
            out = await run_script(
                reader, writer, send_bytes=247, close=CLOSE_AFTER_EOF, half_close_bytes=10
            )
            got = await kernel
        pkts = relative(one_connection(cap.stop(), 9001))
        assert got == pattern(247) + pattern(10, 247)
        assert bytes(out.received) == pattern(49)
        assert out.final_state == "CLOSED"
        rel = _release(pkts)
        assert rel[0][:4] == (True, "FIN,ACK", 50, 248), [str(p) for p in pkts]
        ours = [p for p in pkts[pkts.index(next(q for q in pkts if q.flags & FIN)) :] if not p.out]
        assert all(p.ack == 51 for p in ours)
        assert [(p.seq, p.length) for p in ours if p.length] == [(248, 10)]
        fin = next(p for p in ours if p.flags & FIN)
        assert _fin_seq(fin) == 258
        last = pkts[-1]
        assert (last.out, last.flags & (ACK | FIN), last.seq, last.ack) == (True, ACK, 51, 259), (
            str(last)
        )
        assert writer.get_extra_info("tcp_state") == str(State.CLOSED)

    run(main)
