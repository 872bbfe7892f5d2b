"""CUBIC (RFC 9438) with HyStart++ (RFC 9406), packet by packet.

A bulk sender faces a peer that ACKs every segment one RTT after it left,
echoing its timestamp, so every ACK gives an RTT sample.  The tests compare
the engine's cwnd with the RFCs' numbers: the beta_cubic reduction, fast
convergence, the window following W_cubic(t) = C·(t - K)³ + W_max after a
loss, the Reno-friendly region, HyStart++'s exit into Conservative Slow
Start on an RTT increase and its return to slow start when the increase
was spurious.
"""

from __future__ import annotations

import pytest

from finwait.tcp.config import Config
from finwait.tcp.congestion import (
    CUBIC_BETA,
    CUBIC_C,
    HYSTART_CSS_ROUNDS,
    Cubic,
)
from finwait.wire.segment import ACK, Segment, TcpOptions

from .harness import Exchange

RTT = 0.1


class Flow:
    """A bulk transfer from the engine; the test plays the receiver."""

    def __init__(self, iw: int = 10, name: str = "cubic") -> None:
        cfg = Config(
            delayed_ack=False,
            congestion_control=name,
            initial_window_segments=iw,
            send_buffer=1 << 24,
            sack_permitted=False,
        )
        self.x = Exchange(config=cfg)
        self.x.passive_open(TcpOptions(mss=1000, wscale=7, timestamps=(1, 0)))
        conn = self.x.conn
        assert conn is not None
        self.conn = conn
        self.smss = conn.smss
        conn.send(bytes(1 << 24), self.x.now)
        self.flight: list[Segment] = self.x.take_segments_sent()
        self.tsval = 2

    @property
    def cc(self) -> Cubic:
        cc = self.conn.cc
        assert isinstance(cc, Cubic)
        return cc

    @property
    def cwnd(self) -> float:
        """cwnd in segments."""
        return self.cc.cwnd / self.smss

    def ack(self, seg: Segment, dupack_of: int | None = None) -> None:
        """The peer's ACK of ``seg`` (or a duplicate ACK of ``dupack_of``)."""
        assert seg.options.timestamps is not None
        end = seg.seq + len(seg.payload)
        self.tsval += 1
        self.x.deliver(
            seq=1,
            ack=end if dupack_of is None else dupack_of,
            flags=ACK,
            window=65535,
            options=TcpOptions(timestamps=(self.tsval, seg.options.timestamps[0])),
        )
        self.flight.extend(self.x.take_segments_sent())

    def round(self, rtt: float = RTT, spacing: float = 0.0, growth: float = 0.0) -> None:
        """Deliver the ACKs of everything in flight, the first ``rtt`` after
        the round began, each later one ``spacing`` after the previous and
        ``growth`` seconds more delayed (a queue building up)."""
        segs, self.flight = self.flight, []
        self.x.advance(rtt)
        for i, seg in enumerate(segs):
            if i:
                self.x.advance(spacing + growth * i / len(segs))
            self.ack(seg)

    def loss(self) -> None:
        """The first segment in flight is lost: three DupAcks, the fast
        retransmit, then the ACK of everything (the retransmission arrived)."""
        segs, self.flight = self.flight, []
        first = segs[0].seq
        self.x.advance(RTT)
        for seg in segs[1:4]:
            self.ack(seg, dupack_of=first)
        assert self.cc.in_recovery
        assert any(s.seq == first for s in self.flight), "no fast retransmit"
        sent = segs + [s for s in self.flight if s.seq != first]
        self.flight = []
        self.x.advance(RTT)
        self.ack(sent[-1])  # everything sent so far, limited transmit's too
        assert not self.cc.in_recovery


def test_linux_profile_runs_cubic() -> None:
    assert Config.linux().congestion_control == "cubic-linux"


@pytest.mark.parametrize(("name", "segments"), [("cubic", 18), ("cubic-linux", 20)])
def test_slow_start_limit_per_ack(name: str, segments: int) -> None:
    """RFC 9406 §4.2: an ACK adds at most L = 8 segments in slow start when
    not paced; Linux's slow start has no such bound, so one ACK of a whole
    initial window of ten doubles it."""
    x = Exchange(
        config=Config(
            delayed_ack=False,
            congestion_control=name,
            initial_window_segments=10,
            send_buffer=1 << 20,
        )
    )
    x.passive_open(TcpOptions(mss=1000, wscale=7))
    assert x.conn is not None
    x.conn.send(bytes(1 << 20), x.now)
    sent = x.take_segments_sent()
    assert len(sent) == 10
    x.advance(RTT)
    x.deliver(seq=1, ack=sent[-1].seq + len(sent[-1].payload), window=65535)
    assert x.conn.cc.cwnd == segments * x.conn.smss


def test_loss_reduces_by_beta_cubic() -> None:
    """RFC 9438 §4.6: ssthresh = cwnd·0.7 (not NewReno's half), W_max = cwnd;
    after recovery cwnd is ssthresh."""
    f = Flow()
    f.round()
    f.round()  # slow start: 10 -> 20 -> 40 segments
    before = f.cc.cwnd
    assert before == 40 * f.smss
    f.loss()
    assert f.cc.w_max == pytest.approx(40.0)
    assert f.cc.ssthresh == int(before * 0.7)  # beta_cubic, not 0.5
    assert f.cc.cwnd <= f.cc.ssthresh


def test_fast_convergence_lowers_w_max() -> None:
    """§4.7: a second loss before cwnd regained W_max sets W_max to
    cwnd·(1 + beta)/2, releasing bandwidth to a newer flow."""
    f = Flow()
    f.round()
    f.round()
    f.loss()
    assert f.cc.w_max == pytest.approx(40.0)
    f.round()
    cwnd = f.cwnd
    assert cwnd < 40
    f.loss()
    assert f.cc.w_max == pytest.approx(cwnd * 0.85)  # (1 + 0.7) / 2


def test_no_fast_convergence_when_w_max_was_regained() -> None:
    f = Flow()
    f.round()
    f.round()
    f.loss()  # W_max 40, cwnd 28
    for _ in range(40):
        f.round()
        if f.cwnd >= 41:
            break
    cwnd = f.cwnd
    assert cwnd >= 40
    f.loss()
    assert f.cc.w_max == pytest.approx(cwnd)


def test_window_follows_w_cubic_after_a_loss() -> None:
    """§4.2: after a loss at W_max, cwnd grows as W_cubic(t) = C(t-K)³ + W_max
    with K = cbrt(W_max(1-beta)/C): concave up to W_max at t = K, then
    convex.  Each round the window is checked against the curve one round
    ahead (the target, §4.4) and the curve itself."""
    f = Flow()
    f.round()
    f.round()
    f.round()  # 80 segments: a W_max large enough that CUBIC beats Reno
    f.loss()
    w_max = f.cc.w_max
    assert w_max == pytest.approx(80.0)
    k = (w_max * (1 - CUBIC_BETA) / CUBIC_C) ** (1 / 3)
    start: float | None = None
    seen_plateau = seen_convex = False
    for _ in range(60):
        f.round()
        if start is None:
            start = f.x.now  # the first ACK in avoidance began the epoch
            continue
        t = f.x.now - start
        w = CUBIC_C * (t - k) ** 3 + w_max
        # The window may lead the curve by up to one RTT (the target is
        # W_cubic(t + RTT)) and trails it by at most one segment; where Reno
        # would be faster, it is Reno's W_est (§4.3, the Reno-friendly region).
        w_ahead = CUBIC_C * (t + RTT - k) ** 3 + w_max
        assert w - 1.5 <= f.cwnd <= max(w_ahead, w, f.cc._w_est) + 1.5, (t, f.cwnd, w)
        if abs(t - k) < 0.3:
            assert abs(f.cwnd - w_max) < 2  # the plateau around W_max
            seen_plateau = True
        if t > k + 1.0:
            seen_convex = True
            if t > k + 2.0:
                break
    assert seen_plateau and seen_convex
    assert f.cc._k == pytest.approx(k, rel=0.02)


def test_reno_friendly_region_with_a_short_rtt() -> None:
    """§4.3: with a small RTT the cubic curve grows slower than Reno would;
    cwnd then follows W_est, which grows by alpha_cubic = 3(1-b)/(1+b)
    segments per window ACKed."""
    f = Flow()
    f.round(rtt=0.001)
    f.loss()  # W_max 20
    f.round(rtt=0.001)  # the first round of the epoch
    before = f.cwnd
    for _ in range(10):
        f.round(rtt=0.001)
    alpha = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)
    # Ten windows of ~14 segments: W_est grows ~alpha per window; the cubic
    # curve, 10 ms into a K of ~2.4 s, is still ~6 segments below W_max.
    assert f.cwnd == pytest.approx(before + 10 * alpha, abs=1.0)
    assert f.cwnd < f.cc.w_cubic(0.02) + 10


def test_hystart_plus_plus_exits_to_css_on_rtt_increase() -> None:
    """RFC 9406 §4.2: a round whose least RTT (of at least N_RTT_SAMPLE
    samples) is RttThresh above the previous round's ends slow start in CSS:
    cwnd grows by a quarter as fast; CSS_ROUNDS rounds later ssthresh = cwnd
    (congestion avoidance)."""
    f = Flow()
    f.round(spacing=0.0005)  # RTT 100 ms
    assert not f.cc.in_css
    f.round(spacing=0.0005)
    assert not f.cc.in_css
    # The queue grows: RTTs 20 ms more (RttThresh: 12.5 ms).  HyStart++'s
    # rounds begin at the ACK of the SND.MAX noted at the last round's start,
    # so a round with N_RTT_SAMPLE raised samples ends within two of ours.
    f.round(rtt=RTT + 0.02, spacing=0.0005)
    f.round(rtt=RTT + 0.02, spacing=0.0005)
    assert f.cc.in_css
    assert f.cc.ssthresh > 1 << 29  # still slow start, conservatively
    before = f.cc.cwnd
    acked = len(f.flight) * f.smss
    f.round(rtt=RTT + 0.02, spacing=0.0005)
    grew = f.cc.cwnd - before
    assert grew <= acked // 4 + f.smss  # CSS_GROWTH_DIVISOR
    assert grew > 0
    for _ in range(HYSTART_CSS_ROUNDS):
        f.round(rtt=RTT + 0.02, spacing=0.0005)
    assert not f.cc.in_css
    assert f.cc.ssthresh == f.cc.cwnd or f.cc.cwnd >= f.cc.ssthresh


def test_hystart_plus_plus_stays_in_slow_start_while_rtt_is_flat() -> None:
    f = Flow()
    for _ in range(4):
        f.round(spacing=0.0002)
    assert not f.cc.in_css
    assert f.cwnd == 160  # doubled each round
    assert f.cc.ssthresh > 1 << 29


def test_hystart_plus_plus_returns_to_slow_start_after_a_spurious_exit() -> None:
    """§4.2: in CSS, a round whose least RTT falls below the baseline that
    caused the exit means the increase was spurious: back to slow start.
    (ACKs arrive together here: no queue builds up with the window.)"""
    f = Flow()
    f.round()
    f.round()
    f.round(rtt=RTT + 0.03)
    f.round(rtt=RTT + 0.03)
    assert f.cc.in_css
    f.round()  # RTT back to 100 ms
    f.round()
    assert not f.cc.in_css
    before = f.cc.cwnd
    acked = len(f.flight) * f.smss
    f.round()
    assert f.cc.cwnd - before == acked  # full slow-start growth again
    assert f.cc.ssthresh > 1 << 29


def test_newreno_keeps_half() -> None:
    """The RFC profile's NewReno still halves (RFC 5681 §3.2)."""
    x = Exchange(config=Config(delayed_ack=False, initial_window_segments=10))
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    smss = x.conn.smss
    x.conn.send(bytes(10 * smss), x.now)
    assert len(x.take_segments_sent()) == 10
    for _ in range(3):
        x.deliver(seq=1, ack=1)
    assert x.conn.cc.in_recovery
    assert x.conn.cc.ssthresh == 5 * smss


@pytest.mark.parametrize("name", ["cubic-linux", "newreno-abc"])
def test_linux_growth_counts_delivered_not_acked_after_dupacks(name: str) -> None:
    """Two DupAcks (limited transmit) each stood for a segment that left the
    network; the ACK of three segments then delivers one, so slow start adds
    one segment, not three (Linux tcp_remove_reno_sacks(); the upstream
    limited-transmit scripts)."""
    x = Exchange(config=Config(delayed_ack=False, congestion_control=name,
                               initial_window_segments=10, send_buffer=1 << 20))  # fmt: skip
    x.passive_open(TcpOptions(mss=1000, wscale=7))
    assert x.conn is not None
    smss = x.conn.smss
    x.conn.send(bytes(15 * smss), x.now)
    assert len(x.take_segments_sent()) == 10
    x.advance(RTT)
    x.deliver(seq=1, ack=1, window=65535)
    x.deliver(seq=1, ack=1, window=65535)
    assert len(x.take_segments_sent()) == 2  # limited transmit
    x.deliver(seq=1, ack=1 + 3 * smss, window=65535)
    assert x.conn.cc.cwnd == 11 * smss


def test_linux_avoidance_after_rto_starts_afresh() -> None:
    """After an RTO Linux forgets W_max (cubictcp_state() on entering Loss):
    avoidance from ssthresh 7 grows at most one segment per 20 ACKed until
    the Reno estimate (one per 7·15/8 = 13 ACKed) overtakes cwnd, and cnt is
    recomputed only once HZ/32 ticks have passed.  With ACKs every 2 ms in
    rounds of 100 ms, cwnd reaches 8 at the 16th ACK of avoidance, the ACK
    that opens the third round (upstream cubic-rto-ss-ca-cwnd-bump); the
    RFC's W_max of 10 would make it the 8th."""
    f = Flow(name="cubic-linux")
    smss = f.smss
    f.flight = []
    while not f.flight:  # no ACK: wait for the RTO's retransmission
        f.x.advance(0.001)
        f.flight = f.x.take_segments_sent()
    assert f.cc.cwnd == smss and f.cc.ssthresh == 7 * smss
    cwnds: list[float] = []
    while len(cwnds) < 40:
        segs, f.flight = f.flight, []
        f.x.advance(RTT - 0.002 * (len(segs) - 1))
        for i, seg in enumerate(segs):
            if i:
                f.x.advance(0.002)
            before = f.cwnd
            f.ack(seg)
            if before >= 7:
                cwnds.append(f.cwnd)
    assert cwnds[:15] == [7] * 15
    assert cwnds[15] == 8
