"""RFC 5961 on the wire: an attacker inside the lab's namespace forges
segments from the kernel's address and port to finwait's (a raw socket, so
they cross the TUN as real packets), while finwait and the kernel carry data.
finwait answers the in-window RST and the SYN with challenge ACKs, drops the
out-of-window RST and the data with an impossible ACK, and the connection
goes on byte-exact.  The attacker reads finwait's RCV.NXT from the engine: a
lucky guess into the window, the case RFC 5961 is about."""

from __future__ import annotations

import asyncio
import hashlib
import socket

import pytest

from finwait.live.apps import pattern
from finwait.live.lab import Lab
from finwait.live.streams import open_connection
from finwait.tcp import seqnum
from finwait.trace import DROPPED, SegmentEvent
from finwait.wire.ip import encode_packet
from finwait.wire.segment import ACK, FIN, RST, SYN, Segment

from .harness import run, stack_on
from .peers import Capture, in_thread, kernel_listener, recv_all, relative

pytestmark = pytest.mark.live

PORT = 9210
# The engine's verdicts on the four forged segments, in the order sent.
REASONS = ["challenge ack rst", "challenge ack syn", "rst out of window", "ack too old"]
SIZE = 400_000


def test_blind_attacks_across_the_tun_get_challenge_acks_and_change_nothing(lab: Lab) -> None:
    srv = kernel_listener(lab, PORT)
    up = pattern(SIZE, 11)
    down = pattern(SIZE, 13)
    with lab.inside():
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def kernel() -> str:
        c, _ = srv.accept()
        c.settimeout(30)
        with c:
            got = recv_all(c)  # until finwait's FIN: finwait's RCV.NXT holds still meanwhile
            c.sendall(down)
            c.shutdown(socket.SHUT_WR)
        srv.close()
        return hashlib.sha256(got).hexdigest()

    async def main() -> None:
        cap = Capture(lab)
        async with stack_on(lab, offload=False) as stack:
            peer = in_thread(kernel)
            reader, writer = await open_connection(lab.cfg.kernel_v4, PORT, stack=stack)
            conn = writer.get_extra_info("connection")
            reading = asyncio.ensure_future(reader.read())
            writer.write(up[: SIZE // 2])
            await writer.drain()

            forged: set[tuple[int, int]] = set()
            order: list[tuple[int, int]] = []

            def forge(seq: int, ack: int, flags: int, payload: bytes = b"") -> None:
                seg = Segment(lab.cfg.kernel_v4, lab.cfg.finwait_v4, PORT, conn.local[1],
                              seq & seqnum.MASK, ack & seqnum.MASK, flags, 65535, payload)  # fmt: skip
                forged.add((seg.seq, seg.ack))
                order.append((seg.seq, seg.ack))
                raw.sendto(encode_packet(seg), (lab.cfg.finwait_v4, 0))

            # An RST in the window but not at RCV.NXT: a challenge ACK, no reset.
            forge(seqnum.add(conn.rcv_nxt, 1000), 0, RST)
            await asyncio.sleep(0.6)  # past the challenge-ACK rate limit
            # A SYN on the established connection: a challenge ACK.
            forge(seqnum.add(conn.rcv_nxt, 77), 0, SYN)
            await asyncio.sleep(0.2)
            # An RST far outside the window: dropped silently.
            forge(seqnum.add(conn.rcv_nxt, 1 << 31), 0, RST)
            # Data at RCV.NXT whose ACK is far behind SND.UNA: dropped (RFC 5961 §5).
            forge(conn.rcv_nxt, seqnum.add(conn.snd_una, -(1 << 30)), ACK, b"EVIL" * 50)
            await asyncio.sleep(0.2)
            writer.write(up[SIZE // 2 :])
            await writer.drain()
            writer.write_eof()
            assert await reading == down  # no forged byte in the stream
            assert await peer == hashlib.sha256(up).hexdigest()
            await writer.wait_closed()
            c = stack.host.counters
            assert c["challenge_ack_rst"] == 1 and c["challenge_ack_syn"] == 1, dict(c)
            assert c["rst_out_of_window"] == 1 and c["ack_too_old"] == 1, dict(c)
            assert "rst_received" not in c, dict(c)
            # The connection's Trace marks each forged segment dropped, with
            # the engine's verdict as the reason (what --ladder shows).
            dropped = {
                (e.segment.seq, e.segment.ack): e.reason
                for e in writer.trace.events
                if isinstance(e, SegmentEvent) and e.fate == DROPPED
            }
            assert {k: dropped.get(k) for k in forged} == {
                k: r for k, r in zip(order, REASONS, strict=True)
            }, dropped
        pkts = cap.stop()
        ours = [p for p in pkts if not p.out and p.dport == PORT]
        assert not any(p.flags & RST for p in ours)  # finwait never reset
        # Nor did the kernel, up to the release.  After it, an RST can be the
        # kernel's answer to a segment reaching a socket it has already closed
        # (its app closes at once after shutdown), which is not the attack's
        # doing; one full-suite run saw a kernel RST, not reproduced since, so
        # the message below prints the packets if it comes back before a FIN.
        first_fin = next((i for i, p in enumerate(pkts) if p.flags & FIN), len(pkts))
        from_kernel = [
            p
            for p in pkts[:first_fin]
            if p.out and p.sport == PORT and (p.seq, p.ack) not in forged
        ]
        assert not any(p.flags & RST for p in from_kernel), relative(pkts)[-12:]
        # The challenge ACKs on the wire: after the in-window RST and after the
        # SYN, a pure ACK from finwait acknowledging RCV.NXT (the RST's seq - 1000).
        attacks = [p for p in pkts if p.out and (p.seq, p.ack) in forged]
        assert len(attacks) == 4
        for attack in attacks[:2]:
            rcv_nxt = seqnum.add(attacks[0].seq, -1000)
            answers = [p for p in ours if attack.t <= p.t < attack.t + 0.3]
            assert any(p.flags == ACK and not p.length and p.ack == rcv_nxt for p in answers), (
                attack,
                answers[:5],
            )

    try:
        run(main, timeout=60)
    finally:
        raw.close()
