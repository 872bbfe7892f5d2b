"""What the driver writes to the TUN, packet by packet, checked on an
independent capture: the ACK that completes an active open rides on the
application's first data when it writes at once, and goes alone when the
application waits for the peer.  Each test runs on a fresh lab, whose TUN
the Stack attaches just before the SYN: a SYN,ACK lost because the kernel
had not yet attached the device's queue shows as a second SYN."""

from __future__ import annotations

from finwait.live.lab import Lab
from finwait.live.streams import open_connection

from .harness import run, stack_on
from .peers import ACK, PSH, SYN, Capture, Pkt, in_thread, kernel_listener, recv_all, recv_exactly


def _ours(pkts: list[Pkt], port: int) -> list[Pkt]:
    """finwait -> kernel packets of the connection to ``port``."""
    return [p for p in pkts if not p.out and p.dport == port]


def test_handshake_ack_rides_on_the_first_data(lab: Lab) -> None:
    """A client that writes right after open_connection(): SYN, then the
    data segment completes the handshake (as Linux does when a write is
    pending at the SYN,ACK) — no pure ACK between them."""
    srv = kernel_listener(lab, 9301)

    def kernel() -> bytes:
        c, _ = srv.accept()
        with c:
            got = recv_exactly(c, 5)
            c.sendall(b"world")
        srv.close()
        return got

    async def main() -> list[Pkt]:
        cap = Capture(lab)
        async with stack_on(lab) as stack:
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9301, stack=stack)
            writer.write(b"hello")
            assert await reader.readexactly(5) == b"world"
            assert await peer == b"hello"
            writer.close()
            await writer.wait_closed()
        return _ours(cap.stop(), 9301)

    ours = run(main)
    assert ours[0].flags == SYN, [str(p) for p in ours]
    assert ours[1].flags == ACK | PSH and ours[1].length == 5, [str(p) for p in ours]


def test_handshake_ack_goes_alone_when_the_client_waits(lab: Lab) -> None:
    """A client that reads first (the server speaks first): the held ACK
    goes out by itself within a few turns of the event loop, the kernel's
    accept() returns and its banner arrives."""
    srv = kernel_listener(lab, 9302)

    def kernel() -> None:
        c, _ = srv.accept()
        with c:
            c.sendall(b"220 banner\r\n")
            recv_all(c)
        srv.close()

    async def main() -> list[Pkt]:
        cap = Capture(lab)
        async with stack_on(lab) as stack:
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, 9302, stack=stack)
            assert await reader.readline() == b"220 banner\r\n"
            writer.close()
            await writer.wait_closed()
            await peer
        return [p for p in cap.stop() if 9302 in (p.sport, p.dport)]

    pkts = run(main)
    ours = [p for p in pkts if not p.out]
    assert ours[0].flags == SYN, [str(p) for p in ours]
    assert ours[1].flags == ACK and ours[1].length == 0, [str(p) for p in ours]
    synack = next(p for p in pkts if p.out and p.flags & SYN)
    # A few turns of an idle event loop, not a timer: well under the
    # kernel's 200 ms delayed ACK.
    assert ours[1].t - synack.t < 0.1, [f"{p.t:.6f} {p}" for p in pkts]
