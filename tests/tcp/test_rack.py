"""Loss recovery in the Linux profile: RACK-TLP (RFC 8985) and PRR
(RFC 6937), packet by packet (CC-10 .. CC-14).

The peer offers MSS 1000 and SACK, and the engine runs Config.linux()
(IW10) without delayed ACKs: one write of ten segments fills the window at
t=0.1 s after a 100 ms handshake, so SRTT = min_RTT = 100 ms.  The same
exchanges run against the Linux kernel in tests/scripts/ (rack-*.pkt,
tlp-*.pkt)."""

from __future__ import annotations

import pytest

from finwait.tcp.config import Config
from finwait.tcp.connection import Connection
from finwait.tcp.rack import Rack
from finwait.wire.segment import ACK, PSH, TcpOptions

from .harness import Exchange

MSS = 1000
PEER = TcpOptions(mss=MSS, sack_permitted=True)
# NewReno's halving keeps the numbers below simple; the profile runs CUBIC
# (beta 0.7, tests/tcp/test_cubic.py), which RACK and PRR drive the same way.
# Timers at the exact time (hz=None): the profile's ticks and timer-wheel
# buckets are tests/tcp/test_rto_linux.py's.
LINUX = Config.linux(delayed_ack=False, quick_acks=0, congestion_control="newreno-abc", hz=None)


def s(i: int) -> int:
    """Relative sequence number of segment ``i`` (0-based)."""
    return 1 + i * MSS


def sack(*blocks: tuple[int, int]) -> TcpOptions:
    return TcpOptions(sack_blocks=tuple(blocks))


def setup(config: Config = LINUX, segments: int = 10, write: int | None = None) -> Exchange:
    """Handshake with a 100 ms RTT, then ``segments`` MSS-sized segments
    sent at t = 0.1 (``write`` bytes queued in all); returns at t = 0.2,
    one RTT later, when the peer's answers may come."""
    x = Exchange(config=config)
    x.passive_open(PEER, rtt=0.1)
    conn = x.conn
    assert conn is not None and conn.smss == MSS
    conn.send(bytes(write if write is not None else segments * MSS), x.now)
    sent = x.take_segments_sent()
    assert [seg.seq for seg in sent] == [s(i) for i in range(min(segments, 10))]
    x.advance(0.1)
    return x


def c(x: Exchange) -> Connection:
    assert x.conn is not None
    return x.conn


# -- TLP (CC-11) --------------------------------------------------------


def fire_probe(x: Exchange) -> None:
    """Advance to the probe timeout."""
    x.advance(c(x).timers.describe()["loss_probe"] - x.now)


def test_probe_timeout_sends_new_data_beyond_cwnd() -> None:
    """RFC 8985 §7.2-7.3: with the window full and data queued, the probe
    after 2*SRTT (+2 ms, several segments out) is one new segment."""
    x = setup(write=12 * MSS)
    x.advance(0.101)
    x.expect_nothing()
    x.advance(0.001)
    x.expect(ACK, seq=s(10), length=MSS)
    x.expect_nothing()
    assert x.counters["tlp"] == 1 and c(x).cc.cwnd == 10 * MSS


def test_probe_resends_the_last_segment_when_nothing_is_new() -> None:
    x = setup(segments=3)
    x.advance(0.101)
    x.expect_nothing()
    x.advance(0.0011)  # 2*SRTT + 2 ms after the send
    x.expect(ACK, seq=s(2), length=MSS)
    x.expect_nothing()
    # One probe per episode: the next resend is the RTO's, from the probe.
    x.advance(c(x).rtt.rto - 0.001)
    x.expect_nothing()
    x.advance(0.001)
    x.expect(ACK, seq=s(0), length=MSS)


def test_single_segment_probe_waits_for_a_delayed_ack_but_not_past_the_rto() -> None:
    """One segment out: PTO = 2*SRTT + 200 ms (the peer may delay its ACK),
    never later than the RTO (here 300 ms: SRTT 100 + 4*RTTVAR 50)."""
    x = setup(segments=1)
    x.advance(0.199)
    x.expect_nothing()
    x.advance(0.001)
    x.expect(ACK, seq=s(0), length=MSS)
    assert x.counters["tlp"] == 1 and "rto" not in x.counters


def test_rfc_profile_has_no_probe() -> None:
    x = setup(Config(delayed_ack=False, initial_window_segments=10), segments=3)
    x.advance(0.199)
    x.expect_nothing()
    x.advance(0.001)
    x.expect(ACK, seq=s(0), length=MSS)  # the RTO, go-back-N
    assert "tlp" not in x.counters and x.counters["rto"] == 1


def test_probe_that_repaired_a_loss_halves_cwnd() -> None:
    """RFC 8985 §7.4: the ACK beyond the probe without a D-SACK means the
    probe repaired a loss: cwnd is reduced as for one (Linux: CWR)."""
    x = setup(segments=3)
    x.deliver(seq=1, ack=s(2))  # the first two arrive
    fire_probe(x)
    x.expect(ACK, seq=s(2), length=MSS)
    c(x).send(bytes(MSS), x.now)
    x.expect(PSH | ACK, seq=s(3), length=MSS)
    x.advance(0.1)
    x.deliver(seq=1, ack=s(3))  # the probe's copy: not beyond the probe yet
    assert "tlp_recovery" not in x.counters
    cwnd = c(x).cc.cwnd
    x.deliver(seq=1, ack=s(4))
    assert x.counters["tlp_recovery"] == 1
    cc = c(x).cc
    assert cc.ssthresh == cwnd // 2
    assert cc.ssthresh <= cc.cwnd < cc.ssthresh + MSS  # then congestion avoidance


def test_probe_answered_by_a_dsack_changes_nothing() -> None:
    """Both copies arrived (the D-SACK reports the second): no loss."""
    x = setup(segments=3)
    x.deliver(seq=1, ack=s(2))
    fire_probe(x)
    x.expect(ACK, seq=s(2), length=MSS)
    x.deliver(seq=1, ack=s(3), options=sack((s(2), s(3))))
    rack = c(x)._rack
    assert rack is not None and rack.tlp_high_seq is None
    assert "tlp_recovery" not in x.counters and x.counters["dsack"] == 1
    # No reduction; and no growth either: three segments out of a window of
    # ten do not use it (LX-16, Linux tcp_is_cwnd_limited()).
    assert c(x).cc.cwnd == 10 * MSS


# -- RACK (CC-10) -------------------------------------------------------


def test_one_sack_waits_for_the_reordering_window() -> None:
    """RFC 8985 §6.2: segment 0 was sent with segment 1, which is SACKed
    100 ms later; it may only be reordered, for min_RTT/4 = 25 ms more
    (+2 ms timer slack), then it is lost and resent in recovery."""
    x = setup(write=20 * MSS)
    x.deliver(seq=1, ack=1, options=sack((s(1), s(2))))
    x.expect(ACK, seq=s(10), length=MSS)  # the pipe went down: one new segment
    assert c(x).timers.describe()["reorder"] == pytest.approx(x.now + 0.027)
    x.advance(0.026)
    x.expect_nothing()
    x.advance(0.001)
    x.expect(ACK, seq=s(0), length=MSS)
    assert c(x).cc.in_recovery and x.counters["rack_recovery"] == 1


def test_three_sacked_segments_need_no_window() -> None:
    """With DupThresh (3) segments SACKed and no reordering seen, the
    window is zero (Linux tcp_rack_reo_wnd()): lost at once."""
    x = setup()
    x.deliver(seq=1, ack=1, options=sack((s(1), s(2))))
    x.deliver(seq=1, ack=1, options=sack((s(1), s(3))))
    x.expect_nothing()
    x.deliver(seq=1, ack=1, options=sack((s(1), s(4))))
    x.expect(ACK, seq=s(0), length=MSS)


def test_segments_sent_after_the_delivered_one_are_not_lost() -> None:
    """RACK only judges segments sent before the newest delivered one:
    SACKing segment 1 says nothing about segments 2 to 9."""
    x = setup()
    x.deliver(seq=1, ack=1, options=sack((s(1), s(2))))
    x.advance(0.5)
    sent = x.take_segments_sent()
    assert sent[0].seq == s(0)  # the reordering timer: segment 0 only
    assert all(seg.seq != s(2) for seg in sent[:2])


def test_reordering_seen_keeps_the_window() -> None:
    """Once a segment never resent arrives below one SACKed before, the
    network reorders: the window applies even with three SACKed."""
    x = setup()
    x.deliver(seq=1, ack=1, options=sack((s(2), s(3))))
    x.deliver(seq=1, ack=1, options=sack((s(1), s(3))))  # segment 1 came late
    rack = c(x)._rack
    assert rack is not None and rack.reordering_seen
    x.deliver(seq=1, ack=1, options=sack((s(1), s(4))))
    x.expect_nothing()  # waits reo_wnd instead
    x.advance(0.027)
    x.expect(ACK, seq=s(0), length=MSS)


def test_dsack_widens_the_window_once_per_round() -> None:
    """RFC 8985 §6.2 step 4: D-SACKs in a round trip add one min_RTT/4."""
    x = setup()
    rack = c(x)._rack
    assert rack is not None
    x.deliver(seq=1, ack=s(2), options=sack((s(0), s(1))))
    x.deliver(seq=1, ack=s(3), options=sack((s(1), s(2))))
    assert rack.reo_wnd_mult == 2 and rack.reo_wnd_persist == 16
    rtt = c(x).rtt
    assert rack.reo_wnd(False, 1.0, rtt.min_rtt) == pytest.approx(0.05)


def test_lying_sack_blocks_mark_nothing() -> None:
    """Blocks beyond SND.MAX, reversed or below SND.UNA deliver nothing."""
    x = setup()
    top = s(10)
    for block in ((s(9), top + 1), (s(3), s(2)), (s(5), s(5))):
        x.deliver(seq=1, ack=1, options=sack(block))
    rack = c(x)._rack
    assert rack is not None and rack.sacked_out == 0
    x.expect_nothing()


# -- PRR (CC-12, CC-13) -------------------------------------------------


def test_prr_sends_one_for_two_delivered_above_ssthresh() -> None:
    """RFC 6937: pipe 9 > ssthresh 5, RecoverFS 10: ceil(5/10 * delivered)
    segments in all, so one new segment per two SACKed (the last SACK finds
    the pipe at ssthresh: PRR-SSRB, nothing more delivered than sent)."""
    x = setup(write=30 * MSS)
    x.deliver(seq=1, ack=1, options=sack((s(1), s(2))))
    x.expect(ACK, seq=s(10), length=MSS)
    x.advance(0.027)
    x.expect(ACK, seq=s(0), length=MSS)
    sent = []
    for k in range(3, 11):
        x.advance(0.01)
        x.deliver(seq=1, ack=1, options=sack((s(1), s(k))))
        sent.append([seg.seq for seg in x.take_segments_sent()])
    assert sent == [[], [s(11)], [], [s(12)], [], [s(13)], [], []]


def test_prr_ssrb_sends_what_is_delivered_up_to_ssthresh() -> None:
    """Four lost: the pipe falls to ssthresh; then one segment out per
    segment delivered, lost ones first, and one more when SND.UNA moves."""
    x = setup(write=20 * MSS)
    x.deliver(seq=1, ack=1, options=sack((s(4), s(5))))
    x.expect(ACK, seq=s(10), length=MSS)
    x.deliver(seq=1, ack=1, options=sack((s(4), s(6))))
    x.expect(ACK, seq=s(11), length=MSS)
    x.deliver(seq=1, ack=1, options=sack((s(4), s(7))))
    x.expect(ACK, seq=s(0), length=MSS)
    x.expect_nothing()
    rack = c(x)._rack
    assert rack is not None and rack.lost_out == 4 and rack.pipe() == 6
    x.deliver(seq=1, ack=1, options=sack((s(4), s(8))))
    x.expect_nothing()
    x.deliver(seq=1, ack=1, options=sack((s(4), s(9))))
    x.expect(ACK, seq=s(1), length=MSS)
    x.deliver(seq=1, ack=s(2), options=sack((s(4), s(9))))  # SND.UNA moves: +1
    assert [seg.seq for seg in x.take_segments_sent()] == [s(2), s(3)]


def test_without_prr_recovery_holds_the_pipe_to_ssthresh() -> None:
    """Config.prr off (RACK on): cwnd = ssthresh in recovery (RFC 6675)."""
    x = setup(
        Config.linux(
            delayed_ack=False, quick_acks=0, prr=False, congestion_control="newreno-abc", hz=None
        ),
        write=20 * MSS,
    )
    for k in (2, 3, 4):
        x.deliver(seq=1, ack=1, options=sack((s(1), s(k))))
    assert c(x).cc.in_recovery and c(x).cc.cwnd == c(x).cc.ssthresh == 5 * MSS


def test_leaving_recovery_sets_cwnd_to_ssthresh() -> None:
    x = setup(write=20 * MSS)
    for k in (2, 3, 4):
        x.deliver(seq=1, ack=1, options=sack((s(1), s(k))))
    x.deliver(seq=1, ack=c(x).cc.recover)
    assert not c(x).cc.in_recovery and c(x).cc.cwnd == 5 * MSS


# -- the transmit log ------------------------------------------------------


def test_rto_marks_everything_lost_and_go_back_n_resends() -> None:
    x = setup(segments=3)
    fire_probe(x)
    x.take_segments_sent()
    x.advance(c(x).rtt.rto)
    x.expect(ACK, seq=s(0), length=MSS)
    rack = c(x)._rack
    assert rack is not None and rack.loss_high is not None
    assert rack.lost_out == 3 and rack.retrans_out == 1 and rack.pipe() == 1


def test_log_counts() -> None:
    r = Rack()
    for i in range(4):
        r.sent(s(i), s(i + 1), 0.0, MSS)
    delivered, dsack = r.on_ack(s(1), ((s(2), s(3)),), s(4), 0.1, 0.1)
    assert (delivered, dsack) == (2, False) and len(r.log) == 3 and r.sacked_out == 1
    assert r.pipe() == 2
    lost, wait = r.detect_loss(0.1, 0.0)
    assert (lost, wait) == (1, 0.0) and r.first_lost() is r.log[0]
    r.resent(s(1), s(2), 0.2)
    assert r.pipe() == 2 and r.first_lost() is None
    assert r.on_ack(s(4), (), s(4), 0.3, 0.1) == (2, False)
    assert r.log == [] and r.pipe() == r.lost_out == r.retrans_out == r.sacked_out == 0


def test_slow_start_counts_sacked_bytes_once() -> None:
    """RFC 3465 byte counting as Linux counts it with SACK (acked_sacked):
    an ACK that covers bytes SACKed before grows cwnd only by what it newly
    delivered (upstream limited-transmit-sack: 10 -> 11 segments, not 13)."""
    x = setup(write=15 * MSS)
    x.deliver(seq=1, ack=1, options=sack((s(1), s(2))))
    x.deliver(seq=1, ack=1, options=sack((s(1), s(3))))
    assert c(x).cc.cwnd == 10 * MSS
    x.deliver(seq=1, ack=s(3))
    assert c(x).cc.cwnd == 11 * MSS


def test_without_sack_dupacked_segments_count_once() -> None:
    """The same without SACK (Linux's Reno emulation): two DupAcks stand
    for two segments delivered; the ACK that covers them and one more grows
    cwnd by one segment, not three (upstream limited-transmit-no-sack)."""
    x = Exchange(config=LINUX)
    x.passive_open(TcpOptions(mss=MSS), rtt=0.1)
    c(x).send(bytes(15 * MSS), x.now)
    assert len(x.take_segments_sent()) == 10
    x.advance(0.1)
    x.deliver(seq=1, ack=1)
    x.deliver(seq=1, ack=1)
    assert [seg.seq for seg in x.take_segments_sent()] == [s(10), s(11)]  # limited transmit
    x.deliver(seq=1, ack=s(3))
    assert c(x).cc.cwnd == 11 * MSS
    assert [seg.seq for seg in x.take_segments_sent()] == [s(12), s(13)]


def test_tso_segments_are_logged_per_smss() -> None:
    """With the device cutting segments (Config.send_size, TSO), the log
    still holds one record per SMSS, as the peer SACKs them: a SACK of the
    second MSS of a 10-MSS super-segment delivers it (and arms the
    reordering timer for the first)."""
    tso = Config.linux(delayed_ack=False, quick_acks=0, send_size=10 * MSS, hz=None)
    x = setup(tso, segments=1, write=10 * MSS)  # one super-segment on the wire
    rack = c(x)._rack
    assert rack is not None and len(rack.log) == 10
    x.deliver(seq=1, ack=1, options=sack((s(1), s(2))))
    assert rack.sacked_out == 1 and "reorder" in c(x).timers.describe()
