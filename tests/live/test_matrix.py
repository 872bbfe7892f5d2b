"""The interop matrix: every way to release a connection, finwait against the
Linux kernel, each side in each role, checked on the streams API, on the
engine's state and on an independent capture."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest

from finwait.live.apps import CLOSE_AFTER_EOF, CLOSE_FIRST, pattern, run_script, serve_script
from finwait.live.driver import IN, OUT, Driver
from finwait.live.lab import Lab
from finwait.live.streams import StreamReader, StreamWriter, open_connection, start_server
from finwait.tcp.state import State
from finwait.wire.segment import Segment

from .harness import MSL, run, stack_on, until
from .peers import (
    ACK,
    FIN,
    RST,
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


def _after_first_fin(pkts: list[Pkt]) -> list[Pkt]:
    i = next(i for i, p in enumerate(pkts) if p.flags & FIN)
    return pkts[i:]


def test_kernel_client_closes_first_finwait_server_passive(lab: Lab) -> None:
    def kernel() -> bytes:
        s = kernel_socket(lab)
        s.settimeout(10)
        s.connect((lab.cfg.finwait_v4, 9000))
        s.sendall(pattern(1000))
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        s.close()
        return got

    async def main() -> None:
        cap = Capture(lab)
        results = []

        async def handler(r: StreamReader, w: StreamWriter) -> None:
            results.append(await serve_script(r, w, reply_bytes=3000, close=CLOSE_AFTER_EOF))

        async with stack_on(lab) as stack:
            await start_server(handler, 9000, stack=stack)
            got = await in_thread(kernel)
            await until(lambda: bool(results))
        assert got == pattern(3000)
        assert bytes(results[0].received) == pattern(1000)
        assert results[0].final_state == "CLOSED"  # LAST-ACK -> CLOSED, no TIME-WAIT here
        rel = _after_first_fin(relative(one_connection(cap.stop(), 9000)))
        assert rel[0].out and rel[0].seq == 1001  # the kernel's FIN after its 1000 bytes
        our_fin = next(p for p in rel if not p.out and p.flags & FIN)
        assert our_fin.seq + our_fin.length == 3001 and our_fin.ack == 1002
        assert rel[-1].out and rel[-1].flags == ACK and rel[-1].ack == 3002

    run(main)


@pytest.mark.parametrize(
    "kernel_closes_at_once", [True, False], ids=["three-segment", "four-segment"]
)
def test_finwait_client_closes_first_kernel_server_passive(
    lab: Lab, kernel_closes_at_once: bool
) -> None:
    srv = kernel_listener(lab, 9002)

    def kernel() -> bytes:
        c, _ = srv.accept()
        with c:
            got = recv_all(c)
            if not kernel_closes_at_once:
                threading.Event().wait(0.3)  # past the delayed ACK: a separate FIN
            c.sendall(b"")
        srv.close()
        return got

    async def main() -> None:
        cap = Capture(lab)
        async with stack_on(lab) as stack:
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9002, stack=stack)
            out = await run_script(
                reader, writer, send_bytes=500, expect_bytes=0, close=CLOSE_FIRST
            )
            assert await peer == pattern(500)
            assert out.final_state == "TIME-WAIT"
            # TIME-WAIT lasts 2 MSL, then the table is empty.
            await asyncio.sleep(MSL)
            assert writer.connection.state is State.TIME_WAIT
            await until(
                lambda: not stack.host.conns, timeout=2 * MSL + 1.0, what="TIME-WAIT expiry"
            )
        rel = _after_first_fin(relative(one_connection(cap.stop(), 9002)))
        assert not rel[0].out and rel[0].seq == 501 and rel[0].flags & FIN
        kernel_fin = next(p for p in rel if p.out and p.flags & FIN)
        assert kernel_fin.ack == 502 and kernel_fin.seq == 1
        assert rel[-1] == rel[-1] and not rel[-1].out and rel[-1].flags == ACK and rel[-1].ack == 2
        n = len(rel)
        if kernel_closes_at_once:
            assert n == 3, [str(p) for p in rel]  # FIN -> FIN,ACK -> ACK (LX-1)
        else:
            assert n == 4, [str(p) for p in rel]  # FIN -> ACK, FIN -> ACK

    run(main)


def test_simultaneous_close_crossing_fins(lab: Lab) -> None:
    """finwait's FIN is held in the driver until the kernel's FIN reaches the
    TUN, then released before the engine sees the kernel's: the two FINs cross
    and both sides go FIN-WAIT-1 -> CLOSING -> TIME-WAIT (RFC 9293 Figure 13)."""
    srv = kernel_listener(lab, 9003)
    fin_held = threading.Event()
    held: list[Segment] = []
    drivers: list[Driver] = []

    def hook(direction: str, seg: Segment) -> bool:
        if direction == OUT and seg.flags & FIN and not held:
            held.append(seg)
            fin_held.set()
            return True
        if direction == IN and seg.flags & FIN and held and drivers:
            drivers.pop().inject(held[0])  # the crossing
        return False

    def kernel() -> str:
        c, _ = srv.accept()
        with c:
            recv_exactly(c, 100)
            fin_held.wait(5)
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b""
            info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        srv.close()
        return {7: "CLOSING", 6: "TIME-WAIT"}.get(info[0], str(info[0]))

    async def main() -> None:
        cap = Capture(lab)
        async with stack_on(lab, drop=hook) as stack:
            drivers.append(stack.driver)
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9003, stack=stack)
            writer.write(pattern(100))
            writer.write_eof()
            assert await reader.read() == b""
            await writer.wait_closed()
            await peer
            states = [e.state for e in writer.trace.events if hasattr(e, "state")]
        assert State.CLOSING in states and states[-1] is State.TIME_WAIT, states
        rel = _after_first_fin(relative(one_connection(cap.stop(), 9003)))
        fins = [p for p in rel if p.flags & FIN]
        assert len(fins) == 2 and {p.out for p in fins} == {True, False}
        ours = next(p for p in fins if not p.out)
        assert ours.ack == 1  # our FIN did not ack theirs: they crossed
        assert sum(1 for p in rel if p.flags == ACK) == 2  # each side ACKs the other's FIN

    run(main)


def test_kernel_resets_with_so_linger_zero(lab: Lab) -> None:
    srv = kernel_listener(lab, 9004)

    def kernel() -> None:
        c, _ = srv.accept()
        recv_exactly(c, 10)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST, no FIN (LX-6)
        srv.close()

    async def main() -> None:
        cap = Capture(lab)
        async with stack_on(lab) as stack:
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9004, stack=stack)
            writer.write(pattern(10))
            await peer
            with pytest.raises(ConnectionResetError):
                await reader.read()
            assert writer.get_extra_info("tcp_state") == "CLOSED"
        pkts = one_connection(cap.stop(), 9004)
        assert any(p.out and p.flags & RST for p in pkts) and not any(p.flags & FIN for p in pkts)

    run(main)


def test_finwait_abort_resets_the_kernel(lab: Lab) -> None:
    def kernel() -> str:
        s = kernel_socket(lab)
        s.settimeout(10)
        s.connect((lab.cfg.finwait_v4, 9005))
        s.sendall(pattern(10))
        try:
            s.recv(100)
        except ConnectionResetError:
            return "reset"
        finally:
            s.close()
        return "no reset"

    async def main() -> None:
        cap = Capture(lab)

        async def handler(r: StreamReader, w: StreamWriter) -> None:
            await r.readexactly(10)
            w.abort()

        async with stack_on(lab) as stack:
            await start_server(handler, 9005, stack=stack)
            assert await in_thread(kernel) == "reset"
        pkts = one_connection(cap.stop(), 9005)
        rst = [p for p in pkts if not p.out and p.flags & RST]
        assert len(rst) == 1 and not any(p.flags & FIN for p in pkts)

    run(main)


def test_refused_both_ways(lab: Lab) -> None:
    def kernel() -> str:
        s = kernel_socket(lab)
        s.settimeout(5)
        try:
            s.connect((lab.cfg.finwait_v4, 9999))
        except ConnectionRefusedError:
            return "refused"
        finally:
            s.close()
        return "connected"

    async def main() -> None:
        async with stack_on(lab) as stack:
            with pytest.raises(ConnectionRefusedError):
                await open_connection(lab.cfg.kernel_v4, 9998, stack=stack)
            assert await in_thread(kernel) == "refused"
            assert stack.host.conns == {}

    run(main)


def test_kernel_close_with_unread_data_resets_finwait(lab: Lab) -> None:
    srv = kernel_listener(lab, 9006)

    def kernel() -> None:
        c, _ = srv.accept()
        recv_exactly(c, 10)
        threading.Event().wait(0.2)  # the 1000 more bytes arrive and stay unread
        c.close()  # RST instead of FIN (LX-5, RFC 2525 §2.17)
        srv.close()

    async def main() -> None:
        async with stack_on(lab) as stack:
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9006, stack=stack)
            writer.write(pattern(1010))
            await peer
            with pytest.raises(ConnectionResetError):
                await reader.read()

    run(main)


def test_finwait_close_with_unread_data_sends_rst(lab: Lab) -> None:
    def kernel() -> str:
        s = kernel_socket(lab)
        s.settimeout(10)
        s.connect((lab.cfg.finwait_v4, 9007))
        s.sendall(pattern(100))
        try:
            return "eof" if s.recv(100) == b"" else "data"
        except ConnectionResetError:
            return "reset"
        finally:
            s.close()

    async def main() -> None:
        async def handler(r: StreamReader, w: StreamWriter) -> None:
            await until(lambda: w.connection.readable >= 100, what="100 bytes in the engine")
            w.close()  # never read: RST, not FIN

        async with stack_on(lab) as stack:
            await start_server(handler, 9007, stack=stack)
            assert await in_thread(kernel) == "reset"

    run(main)


def test_lost_first_fin_is_retransmitted(lab: Lab) -> None:
    dropped: list[Segment] = []

    def hook(direction: str, seg: Segment) -> bool:
        if direction == OUT and seg.flags & FIN and not dropped:
            dropped.append(seg)
            return True
        return False

    def kernel() -> bytes:
        s = kernel_socket(lab)
        s.settimeout(10)
        s.connect((lab.cfg.finwait_v4, 9008))
        s.sendall(pattern(247))
        got = recv_all(s)
        s.close()
        return got

    async def main() -> None:
        cap = Capture(lab)
        results = []

        async def handler(r: StreamReader, w: StreamWriter) -> None:
            results.append(
                await serve_script(r, w, expect_bytes=247, reply_bytes=49, close=CLOSE_FIRST)
            )

        async with stack_on(lab, drop=hook) as stack:
            await start_server(handler, 9008, stack=stack)
            assert await in_thread(kernel) == pattern(49)
            await until(lambda: bool(results))
        assert results[0].final_state == "TIME-WAIT"
        rel = relative(one_connection(cap.stop(), 9008))
        fins = [p for p in rel if not p.out and p.flags & FIN]
        assert len(fins) == 1 and fins[0].seq == 50  # the capture never saw the lost one
        assert dropped and dropped[0].flags & FIN

    run(main)


def test_lost_last_ack_time_wait_answers_the_retransmitted_fin(lab: Lab) -> None:
    dropped: list[Segment] = []

    def hook(direction: str, seg: Segment) -> bool:
        # finwait closes first; its ACK of the kernel's FIN is the last ACK.
        if direction == OUT and seg.flags == ACK and seg.ack and not dropped and fin_seen:
            dropped.append(seg)
            return True
        if direction == IN and seg.flags & FIN:
            fin_seen.append(seg)
        return False

    fin_seen: list[Segment] = []

    def kernel() -> bytes:
        s = kernel_socket(lab)
        s.settimeout(10)
        s.connect((lab.cfg.finwait_v4, 9009))
        got = recv_all(s)
        s.close()
        return got

    async def main() -> None:
        cap = Capture(lab)
        writers: list[StreamWriter] = []

        async def handler(r: StreamReader, w: StreamWriter) -> None:
            writers.append(w)
            w.write(pattern(49))
            w.write_eof()
            await r.read()

        async with stack_on(lab, drop=hook) as stack:
            await start_server(handler, 9009, stack=stack)
            assert await in_thread(kernel) == pattern(49)
            await until(
                lambda: len(fin_seen) >= 2, timeout=5, what="the kernel's FIN retransmission"
            )
            await until(
                lambda: not stack.host.conns, timeout=2 * MSL + 1.5, what="TIME-WAIT expiry"
            )
        rel = _after_first_fin(relative(one_connection(cap.stop(), 9009)))
        kernel_fins = [p for p in rel if p.out and p.flags & FIN]
        assert len(kernel_fins) == 2 and kernel_fins[0].seq == kernel_fins[1].seq == 1
        acks = [p for p in rel if not p.out and p.flags == ACK and p.ack == 2]
        assert len(acks) == 1 and acks[0].t > kernel_fins[1].t  # TIME-WAIT's answer
        assert dropped

    run(main)
