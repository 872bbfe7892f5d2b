"""Pacing (CC-16): data segments leave in pieces at Linux's pacing rate,
packet by packet.

The peer offers MSS 1000 and no options; the engine opens with twenty
segments (``initial_window_segments``) so that pacing, which starts once
ten data segments have gone (Linux's data_segs_out >= 10), has something
to space.  The handshake takes 100 ms (SRTT 0.1 s); cwnd 20 and ssthresh
unbounded give a rate of 200 % x 20 x 1000 / 0.1 = 400 kB/s, so a piece
of two segments (tcp_min_tso_segs) takes 5 ms."""

from __future__ import annotations

from pytest import approx

from finwait.tcp.config import Config
from finwait.tcp.connection import Connection
from finwait.tcp.timers import PACE
from finwait.wire.segment import TcpOptions

from .harness import Exchange

MSS = 1000


def setup(**changes: object) -> Exchange:
    cfg = Config(delayed_ack=False, initial_window_segments=20, pacing=True, **changes)  # type: ignore[arg-type]
    x = Exchange(config=cfg)
    x.passive_open(TcpOptions(mss=MSS), rtt=0.1)
    return x


def c(x: Exchange) -> Connection:
    assert x.conn is not None
    return x.conn


def departures(x: Exchange, until: float) -> list[tuple[float, int]]:
    """(time since now, relative sequence number) of each data segment sent
    until ``until`` seconds from now."""
    t0, out = x.now, []
    for seg in x.take_segments_sent():
        out.append((0.0, seg.seq))
    while True:
        d = x.host.next_deadline()
        if d is None or d > t0 + until:
            break
        x.advance(d - x.now)
        out += [(round(x.now - t0, 6), seg.seq) for seg in x.take_segments_sent()]
    return out


def test_ten_go_at_once_then_a_piece_every_5_ms() -> None:
    x = setup()
    c(x).send(bytes(40 * MSS), x.now)
    got = departures(x, 0.05)
    assert got[:10] == [(0.0, 1 + i * MSS) for i in range(10)]
    rest = got[10:]
    assert [t for t, _ in rest] == approx([0.005] * 2 + [0.010] * 2 + [0.015] * 2 + [0.020] * 2
                                          + [0.025] * 2)  # fmt: skip
    assert [s for _, s in rest] == [1 + i * MSS for i in range(10, 20)]
    assert c(x).timers.at[PACE] is None  # cwnd (20) is full: nothing is held


def test_the_ratio_sets_the_rate() -> None:
    """tcp_pacing_ss_ratio 100 halves the rate: a piece every 10 ms."""
    x = setup(pacing_ss_ratio=100)
    c(x).send(bytes(40 * MSS), x.now)
    got = departures(x, 0.05)
    assert [t for t, _ in got[10:14]] == approx([0.010, 0.010, 0.020, 0.020])


def test_bigger_pieces_with_a_bigger_minimum() -> None:
    """tcp_min_tso_segs 4: pieces of four segments, 10 ms apart; the third
    piece takes the count of segments sent to 12, past ten, so the gap
    starts after it."""
    x = setup(pacing_min_segs=4)
    c(x).send(bytes(40 * MSS), x.now)
    got = departures(x, 0.05)
    assert [t for t, _ in got] == approx([0.0] * 12 + [0.010] * 4 + [0.020] * 4)


def test_pacing_is_off_by_default() -> None:
    x = Exchange(config=Config(delayed_ack=False, initial_window_segments=20))
    x.passive_open(TcpOptions(mss=MSS), rtt=0.1)
    c(x).send(bytes(40 * MSS), x.now)
    assert len(x.take_segments_sent()) == 20


def test_a_late_piece_gets_up_to_half_its_time_back() -> None:
    """A piece that starts late (here: the sender was cwnd-limited for an
    RTT) has its gap cut by up to half (Linux's credit for OS jitter): after
    the ACK of two segments, cwnd 21 (RFC 5681: one SMSS an ACK) lets three
    more out: a piece of two at once, the third segment half of 2000 bytes
    at 200 % x 21 x 1000 / SRTT later."""
    x = setup()
    c(x).send(bytes(40 * MSS), x.now)
    departures(x, 0.05)
    x.advance(0.05)  # t = 0.2
    x.deliver(seq=1, ack=1 + 2 * MSS)
    got = departures(x, 0.02)
    srtt = c(x).rtt.srtt
    assert srtt is not None
    gap = 2 * MSS / (2 * 21 * MSS / srtt)
    assert [t for t, _ in got] == approx([0.0, 0.0, gap / 2], abs=1e-6)
