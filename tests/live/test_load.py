"""A burst of concurrent connections between the kernel and finwait, as a
user's load would come: every stream byte-exact, no reset, no packet lost
between the kernel and the engine (the TUN's ``tx_dropped``), and finwait's
tables empty at the end.

finwait serving: 1,500 kernel asyncio clients at once (a child process in the
namespace), 20 kB each way with a half-close (the burst of issue 14, which
the listener's old backlog of 128 and the TUN's queue of 500 turned into
resets).  finwait as the client: 1,000 connections at once to a kernel
asyncio echo server, 20 kB each way, finwait half-closing first (so every
connection goes through TIME-WAIT)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from pyroute2 import netns

from finwait.live.apps import serve_script
from finwait.live.driver import OUT
from finwait.live.lab import Lab, tun_counters
from finwait.live.streams import Stack, StreamReader, StreamWriter, open_connection, start_server
from finwait.tcp.state import State
from finwait.wire.segment import FIN, RST, Segment

from .burst_peer import pattern
from .harness import MSL, config, run, until

pytestmark = pytest.mark.live

PEER = str(Path(__file__).with_name("burst_peer.py"))
SIZE = 20_000


async def _peer(lab: Lab, *args: object) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, PEER, *map(str, args),
        preexec_fn=lambda: netns.setns(lab.name, flags=0),  # the child only, before exec
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _count_rsts(stack: Stack) -> dict[str, int]:
    """RSTs on the TUN: ``out`` sent by finwait, ``in`` from the kernel, and
    ``in after TIME-WAIT's re-ACK``: a RST that reaches a connection in
    TIME-WAIT which received the peer's FIN twice.  That one resets nothing:
    Linux retransmits a FIN not acknowledged within its tail-loss probe
    timeout (2 x SRTT, 10 ms at least: RFC 8985 §7), finwait (busy with the
    burst) acknowledges both, and the second ACK reaches a socket already
    closed, which answers RST — as between two kernels when an ACK is slow."""
    seen = {"in": 0, "out": 0, "in after TIME-WAIT's re-ACK": 0}
    fins: dict[tuple[str, int, str, int], int] = {}

    def observe(direction: str, seg: Segment, now: float) -> None:
        if direction == OUT:
            seen["out"] += bool(seg.flags & RST)
            return
        key = (seg.dst, seg.dport, seg.src, seg.sport)
        if seg.flags & FIN:
            fins[key] = fins.get(key, 0) + 1
        if seg.flags & RST:
            conn = stack.host.conns.get(key)
            tw = conn is not None and conn.state is State.TIME_WAIT and fins.get(key, 0) >= 2
            seen["in after TIME-WAIT's re-ACK" if tw else "in"] += 1

    stack.driver.observers.append(observe)
    return seen


def _assert_tables_empty(stack: Stack) -> None:
    host = stack.host
    assert host.stats()["connections"] == 0, host.stats()
    assert not host._listener_of
    for lst in host.listeners.values():
        assert not lst.syn_queue and not lst.accept_queue
    assert not stack._streams and not stack._stash


def test_burst_of_kernel_clients_against_finwait_serving(lab: Lab) -> None:
    n = 1500
    outcomes = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        outcomes.append(await serve_script(reader, writer, echo=True))

    async def main() -> None:
        before = await asyncio.to_thread(tun_counters, lab.cfg)
        async with Stack.open(lab.name, lab.cfg.tun, config=config(), record=False) as stack:
            rsts = _count_rsts(stack)
            server = await start_server(handler, 9102, stack=stack)  # default backlog
            peer = await _peer(lab, "client", lab.cfg.finwait_v4, 9102, n, SIZE, 90)
            out, _ = await peer.communicate()
            res = json.loads(out)
            await until(lambda: len(outcomes) == n, timeout=10, what="every handler done")
            await until(lambda: not stack.host.conns, timeout=10, what="LAST-ACKs acknowledged")
            server.close()
            after = await asyncio.to_thread(tun_counters, lab.cfg)
            print(
                f"finwait serving {n}: {res}, tx_dropped {after['tx_dropped'] - before['tx_dropped']}"
            )
            assert (res["ok"], res["resets"], res["wrong"], res["other"]) == (n, 0, 0, 0), res
            assert rsts == {"in": 0, "out": 0, "in after TIME-WAIT's re-ACK": 0}
            assert after["tx_dropped"] == before["tx_dropped"], "packets lost at the TUN"
            assert stack.host.counters["syncookies_sent"] == 0
            for o in outcomes:
                assert o.error is None and o.final_state == "CLOSED"
                assert o.sent == o.received and len(o.sent) == SIZE
            assert sorted(bytes(o.received) for o in outcomes) == sorted(
                pattern(SIZE, i) for i in range(n)
            )
            _assert_tables_empty(stack)

    run(main, timeout=150)


def test_burst_of_finwait_clients_against_a_kernel_server(lab: Lab) -> None:
    n = 1000
    states: list[str] = []

    async def one(stack: Stack, i: int) -> None:
        reader, writer = await open_connection(lab.cfg.kernel_v4, 9103, stack=stack, timeout=30)
        data = pattern(SIZE, i)
        writer.write(data)
        writer.write_eof()  # finwait closes first: TIME-WAIT on our side
        assert await reader.read() == data, f"connection {i}: echo differs"
        await writer.wait_closed()
        states.append(writer.get_extra_info("tcp_state"))

    async def main() -> None:
        server = await _peer(lab, "echo", lab.cfg.kernel_v4, 9103)
        assert server.stdout is not None
        try:
            assert await server.stdout.readline() == b"ready\n"
            before = await asyncio.to_thread(tun_counters, lab.cfg)
            async with Stack.open(lab.name, lab.cfg.tun, config=config(), record=False) as stack:
                rsts = _count_rsts(stack)
                await asyncio.gather(*(one(stack, i) for i in range(n)))
                assert states == ["TIME-WAIT"] * n
                await until(
                    lambda: not stack.host.conns, timeout=2 * MSL + 10, what="TIME-WAIT ends"
                )
                after = await asyncio.to_thread(tun_counters, lab.cfg)
                print(f"finwait as {n} clients: RSTs {rsts}")
                assert rsts["in"] == rsts["out"] == 0, rsts
                assert after["tx_dropped"] == before["tx_dropped"], "packets lost at the TUN"
                _assert_tables_empty(stack)
        finally:
            server.kill()
            await server.wait()

    run(main, timeout=150)
