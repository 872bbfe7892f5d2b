"""atheris harness: the engine's segment processing, ``Host.receive``.

Each input picks a starting state, reached by driving real packets through a
``Host`` (LISTEN, SYN-SENT, SYN-RECEIVED, ESTABLISHED with data both ways,
FIN-WAIT-1/2, CLOSE-WAIT, LAST-ACK, CLOSING, TIME-WAIT, and ESTABLISHED with
four segments unacknowledged), then plays up to 24 steps: a decoded segment
(any flags, options and payload; sequence and acknowledgment numbers and
SACK block edges raw, near RCV.NXT / SND.UNA, or exactly RCV.NXT / SND.UNA), a
clock advance, or a user call.  Nothing may escape ``Host.receive`` /
``on_timer`` but a user call's ``TcpError``, and after every step SND.UNA <=
SND.NXT <= SND.MAX, every buffer is within its bound, the SACK scoreboard is
bounded and lies in [SND.UNA, SND.MAX], and a CLOSED connection has left the
Host's table.  Run: see fuzz/README.md.
"""

from __future__ import annotations

import itertools
import sys

import atheris

with atheris.instrument_imports(include=["finwait"]):
    from finwait.host import Host
    from finwait.tcp import seqnum
    from finwait.tcp.config import Config
    from finwait.tcp.connection import Connection, TcpError
    from finwait.tcp.state import State
    from finwait.wire.segment import ACK, FIN, SYN, Segment, TcpOptions

E, P = ("198.18.0.2", 80), ("198.18.0.1", 40000)
CFG = Config(recv_buffer=4096, send_buffer=4096, max_ooo_segments=8, challenge_ack_interval=0.5)
START = (
    "LISTEN",
    "SYN-SENT",
    "SYN-RECEIVED",
    "ESTABLISHED",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "CLOSE-WAIT",
    "LAST-ACK",
    "CLOSING",
    "TIME-WAIT",
    "ESTABLISHED+FLIGHT",  # four unacknowledged segments out: SACK and recovery
)


def _seg(seq: int, ack: int, flags: int, payload: bytes = b"", opts: TcpOptions | None = None,
         sport: int = P[1]) -> Segment:  # fmt: skip
    return Segment(P[0], E[0], sport, E[1], seq & seqnum.MASK, ack & seqnum.MASK, flags, 65535,
                   payload, opts or TcpOptions())  # fmt: skip


def reach(start: str, ts: bool) -> tuple[Host, Connection | None, float]:
    """A Host whose connection with the peer is in ``start``, by real packets
    (ISS = IRS = 0, the engine passive except in SYN-SENT)."""
    host = Host([E[0]], CFG, isn_source=lambda *a: 0)
    now = 0.0
    opts = TcpOptions(mss=1000, wscale=2, sack_permitted=True, timestamps=(1, 0) if ts else None)
    if start == "SYN-SENT":
        conn = host.connect(P[0], P[1], now, src=E[0], sport=E[1])
        host.take_segments()
        return host, conn, now
    host.listen(E[1])
    if start == "LISTEN":
        return host, None, now
    host.receive(_seg(0, 0, SYN, opts=opts), now)
    conn = next(iter(host.conns.values()))
    if start == "SYN-RECEIVED":
        host.take_segments()
        return host, conn, now
    a = TcpOptions(timestamps=(2, conn._ts_now(now))) if conn.ts_ok else None
    host.receive(_seg(1, 1, ACK, opts=a), now)
    host.receive(_seg(1, 1, ACK, b"x" * 99, opts=a), now)  # RCV.NXT = 100
    conn.recv()
    conn.send(b"y" * 99, now)
    host.receive(_seg(100, 100, ACK, opts=a), now)  # SND.UNA = SND.NXT = 100
    if start in ("FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "TIME-WAIT"):
        conn.close(now)
        if start == "FIN-WAIT-2":
            host.receive(_seg(100, 101, ACK, opts=a), now)
        elif start == "CLOSING":
            host.receive(_seg(100, 100, FIN | ACK, opts=a), now)
        elif start == "TIME-WAIT":
            host.receive(_seg(100, 101, FIN | ACK, opts=a), now)
    elif start == "ESTABLISHED+FLIGHT":
        conn.send(b"z" * 4000, now)  # IW = 4 MSS of 1000: all four segments go
    elif start in ("CLOSE-WAIT", "LAST-ACK"):
        host.receive(_seg(100, 100, FIN | ACK, opts=a), now)
        if start == "LAST-ACK":
            conn.close(now)
    host.take_segments()
    host.take_events()
    assert str(conn.state) == start.split("+")[0], (conn.state, start)
    return host, conn, now


def edge(fdp: atheris.FuzzedDataProvider, base: int) -> int:
    """A SACK block edge: raw, or near SND.UNA where the scoreboard takes it."""
    if fdp.ConsumeBool():
        return fdp.ConsumeUInt(4)
    return (base + fdp.ConsumeIntInRange(-1000, 5000)) & seqnum.MASK


def check(host: Host, conn: Connection | None) -> None:
    host.take_segments()
    host.take_events()
    for c in list(host.conns.values()) + ([conn] if conn is not None else []):
        assert seqnum.le(c.snd_una, c.snd_nxt), (c, c.snd_una, c.snd_nxt)
        assert seqnum.le(c.snd_nxt, c.snd_max), (c, c.snd_nxt, c.snd_max)
        assert len(c._sndbuf) <= CFG.send_buffer
        assert len(c._rcvbuf) <= CFG.recv_buffer
        assert len(c._ooo) <= CFG.max_ooo_segments
        assert c._ooo.held_bytes <= CFG.recv_buffer
        if c._sb:  # the scoreboard: bounded, inside [SND.UNA, SND.MAX], sorted, disjoint
            assert len(c._sb) <= CFG.max_ooo_segments
            edges = [x for r in c._sb.ranges() for x in r]
            assert seqnum.le(c.snd_una, edges[0]) and seqnum.le(edges[-1], c.snd_max)
            assert all(seqnum.lt(a, b) for a, b in itertools.pairwise(edges))
    for c in host.conns.values():
        assert c.state is not State.CLOSED, c


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    start = START[fdp.ConsumeIntInRange(0, len(START) - 1)]
    host, conn, now = reach(start, fdp.ConsumeBool())
    for _ in range(fdp.ConsumeIntInRange(1, 24)):
        if fdp.remaining_bytes() == 0:
            break
        op = fdp.ConsumeIntInRange(0, 9)
        if op <= 6:
            base_seq = conn.rcv_nxt if conn is not None else 0
            base_ack = conn.snd_una if conn is not None else 0
            mode = fdp.ConsumeIntInRange(0, 2)
            seq = (fdp.ConsumeUInt(4) if mode == 0
                   else base_seq + fdp.ConsumeIntInRange(-70000, 70000) if mode == 1
                   else base_seq)  # RCV.NXT itself: acceptable  # fmt: skip
            mode = fdp.ConsumeIntInRange(0, 2)
            ack = (fdp.ConsumeUInt(4) if mode == 0
                   else base_ack + fdp.ConsumeIntInRange(-70000, 70000) if mode == 1
                   else base_ack)  # SND.UNA itself: duplicate ACKs  # fmt: skip
            flags = fdp.ConsumeUInt(1)
            opts = TcpOptions()
            if fdp.ConsumeBool():
                opts = TcpOptions(
                    mss=fdp.ConsumeIntInRange(0, 65535) if fdp.ConsumeBool() else None,
                    wscale=fdp.ConsumeIntInRange(0, 255) if fdp.ConsumeBool() else None,
                    sack_permitted=fdp.ConsumeBool(),
                    timestamps=(fdp.ConsumeUInt(4), fdp.ConsumeUInt(4))
                    if fdp.ConsumeBool() else None,
                    sack_blocks=tuple((edge(fdp, base_ack), edge(fdp, base_ack))
                                      for _ in range(fdp.ConsumeIntInRange(0, 4))),
                )  # fmt: skip
            payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 1500))
            seg = Segment(P[0], E[0], P[1] if op else P[1] + 1, E[1], seq & seqnum.MASK,
                          ack & seqnum.MASK, flags, fdp.ConsumeUInt(2), payload, opts,
                          fdp.ConsumeUInt(2))  # fmt: skip
            host.receive(seg, now)
        elif op == 7:
            now += fdp.ConsumeIntInRange(0, 200_000) / 1000.0
            deadline = host.next_deadline()
            while deadline is not None and deadline <= now:
                host.on_timer(deadline)
                host.take_segments()
                deadline = host.next_deadline()
        elif conn is not None:
            call = fdp.ConsumeIntInRange(0, 4)
            try:
                if call == 0:
                    conn.send(b"d" * fdp.ConsumeIntInRange(0, 3000), now)
                elif call == 1:
                    conn.recv(fdp.ConsumeIntInRange(-1, 5000), now)
                elif call == 2:
                    conn.close(now)
                elif call == 3:
                    conn.close(now, discard=True)
                else:
                    conn.abort(now)
            except TcpError:
                pass  # the user's mistake: raised, state unchanged
        check(host, conn)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
