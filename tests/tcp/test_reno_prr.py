"""Fast recovery with PRR in the Linux profile when the peer cannot SACK
(CC-15, Linux tcp_is_reno()), packet by packet.

The peer offers MSS 1000 and no SACK; the engine runs Config.linux() with
NewReno's halving (ssthresh 5 from a cwnd of 10; the profile's CUBIC takes
7, as tests/scripts/reno-prr.pkt checks against the kernel), no delayed
ACKs, timers at the exact time.  Ten segments go at t = 0.1 s, one RTT
(100 ms) after the SYN."""

from __future__ import annotations

from finwait.tcp.config import Config
from finwait.tcp.connection import Connection
from finwait.wire.segment import TcpOptions

from .harness import Exchange

MSS = 1000
LINUX = Config.linux(delayed_ack=False, quick_acks=0, congestion_control="newreno-abc", hz=None)


def s(i: int) -> int:
    """Relative sequence number of segment ``i`` (0-based)."""
    return 1 + i * MSS


def setup(config: Config = LINUX) -> Exchange:
    """Handshake without SACK, thirty segments queued, ten sent at t = 0.1;
    returns one RTT later."""
    x = Exchange(config=config)
    x.passive_open(TcpOptions(mss=MSS), rtt=0.1)
    conn = x.conn
    assert conn is not None and not conn.sack_ok
    conn.send(bytes(30 * MSS), x.now)
    assert [seg.seq for seg in x.take_segments_sent()] == [s(i) for i in range(10)]
    x.advance(0.1)
    return x


def c(x: Exchange) -> Connection:
    assert x.conn is not None
    return x.conn


def sent_per_dupack(x: Exchange, n: int) -> list[list[int]]:
    out = []
    for _ in range(n):
        x.advance(0.01)
        x.deliver(seq=1, ack=1)
        out.append([seg.seq for seg in x.take_segments_sent()])
    return out


def test_third_dupack_resends_the_head_and_prr_paces_the_rest() -> None:
    """Each DupAck stands for a segment delivered: the first two let a new
    segment out, the third deems SND.UNA lost and resends it; then PRR
    sends ceil(5/10 * delivered) in all while the pipe is above ssthresh,
    and nothing once it is down to ssthresh with nothing more delivered
    than sent."""
    x = setup()
    assert sent_per_dupack(x, 3) == [[s(10)], [s(11)], [s(0)]]
    cc = c(x).cc
    assert cc.in_recovery and cc.ssthresh == 5 * MSS and cc.recover == s(12)
    assert sent_per_dupack(x, 6) == [[], [s(12)], [], [s(13)], [], []]
    assert "tlp" not in x.counters


def test_partial_ack_resends_the_next_segment() -> None:
    """An ACK below the recovery point deems the new SND.UNA lost: it goes
    at once, and new data with it while the pipe is below ssthresh."""
    x = setup()
    sent_per_dupack(x, 9)
    x.deliver(seq=1, ack=s(5))
    assert [seg.seq for seg in x.take_segments_sent()] == [s(5), s(14)]
    rack = c(x)._rack
    assert rack is not None and rack.lost_out == 1 and rack.sacked_out == 5


def test_ack_of_the_recovery_point_holds_recovery_then_cwnd_is_ssthresh() -> None:
    """RFC 6582 §3.2 / Linux: an ACK of exactly ``recover`` stays in
    recovery; one beyond ends it with cwnd = ssthresh."""
    x = setup()
    sent_per_dupack(x, 9)
    x.deliver(seq=1, ack=s(12))
    assert c(x).cc.in_recovery
    x.take_segments_sent()
    x.deliver(seq=1, ack=s(13))
    cc = c(x).cc
    assert not cc.in_recovery and cc.cwnd == cc.ssthresh == 5 * MSS


def test_no_loss_probe_without_sack() -> None:
    """TLP needs SACK (Linux tcp_schedule_loss_probe()): a quiet tail waits
    for the retransmission timeout (t = 0.4 s; with SACK a probe would go
    at 0.302 s, 2 SRTT + 2 ms after the flight)."""
    x = setup()
    x.advance(0.15)
    x.expect_nothing()
    x.advance(0.1)
    assert [seg.seq for seg in x.take_segments_sent()] == [s(0)]
    assert "tlp" not in x.counters and x.counters["rto"] == 1


def test_rfc_profile_keeps_newreno_without_sack() -> None:
    """The default profile counts DupAcks as RFC 5681 (no transmit log)."""
    x = setup(Config(delayed_ack=False, initial_window_segments=10))
    assert c(x)._rack is None
    assert sent_per_dupack(x, 3) == [[s(10)], [s(11)], [s(0)]]
