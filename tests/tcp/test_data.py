"""Carrying data: acceptability, reassembly, windows, retransmission and
congestion control (RFC 9293 §3.8, §3.10.7.4; RFC 5681; RFC 6298)."""

from __future__ import annotations

import pytest

from finwait.tcp.config import Config
from finwait.tcp.state import State
from finwait.wire.segment import ACK, FIN, PSH, TcpOptions

from .harness import Exchange

MSS = 536  # the peer offers no MSS option


def test_delayed_ack_every_second_full_segment() -> None:
    x = Exchange(config=Config())
    x.established(snd_nxt=1, rcv_nxt=1)
    x.deliver(seq=1, ack=1, payload=bytes(MSS))
    x.expect_nothing()
    x.deliver(seq=1 + MSS, ack=1, payload=bytes(MSS))
    x.expect(ACK, seq=1, ack=1 + 2 * MSS)
    x.deliver(seq=1 + 2 * MSS, ack=1, payload=b"tail")
    x.expect_nothing()
    x.advance(0.039)
    x.expect_nothing()
    x.advance(0.002)
    x.expect(ACK, seq=1, ack=1 + 2 * MSS + 4)


@pytest.mark.parametrize(
    ("seq", "length", "acceptable"),
    [
        (50, 0, True),  # SEG.LEN 0, window > 0: RCV.NXT <= SEG.SEQ < RCV.NXT+RCV.WND
        (49, 0, False),
        (50 + 262144 - 1, 0, True),
        (50 + 262144, 0, False),
        (40, 20, True),  # starts before, ends inside: trimmed (SA-1.5)
        (30, 20, False),  # ends at RCV.NXT-1
        (50 + 262144 - 1, 5, True),  # starts at the last byte of the window
        (50 + 262144, 5, False),
    ],
)
def test_four_case_acceptability(seq: int, length: int, acceptable: bool) -> None:
    x = Exchange()
    x.established(snd_nxt=248, rcv_nxt=50)
    assert x.conn is not None and x.conn.rcv_wnd == 262144
    x.deliver(seq=seq, ack=248, payload=b"z" * length)
    if acceptable and length == 0:
        x.expect_nothing()
    else:
        s = x.expect(ACK, seq=248)
        assert (s.ack != 50) == (acceptable and seq <= 50 and seq + length > 50)
    assert x.counters.get("unacceptable_segment", 0) == (0 if acceptable else 1)


def test_acceptability_across_the_wrap() -> None:
    x = Exchange(engine_iss=2**32 - 100, peer_iss=2**32 - 10)
    x.established(snd_nxt=248, rcv_nxt=50)  # RCV.NXT has wrapped past zero
    assert x.conn is not None and x.conn.rcv_nxt == 40
    x.deliver(seq=40, ack=2**32 - 100 + 248, flags=PSH | ACK, payload=b"wrap")
    x.expect(ACK, seq=2**32 - 100 + 248, ack=44)
    x.deliver(seq=2**32 - 5, ack=2**32 - 100 + 248, payload=b"old")
    x.expect(ACK, seq=2**32 - 100 + 248, ack=44)  # old: unacceptable, ACKed


def test_zero_window_acceptability_and_must_66() -> None:
    """SEG.LEN > 0 with RCV.WND = 0 is never acceptable, yet its ACK is
    processed (MUST-66); a zero-length segment must sit at RCV.NXT."""
    x = Exchange(config=Config(delayed_ack=False, recv_buffer=1000))
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.send(b"q" * 100, x.now)
    x.expect(PSH | ACK, seq=1, ack=1, length=100)
    x.deliver(seq=1, ack=1, payload=bytes(1000))  # fills the buffer
    s = x.expect(ACK, seq=101, ack=1001)
    assert s.window == 0
    x.deliver(seq=1001, ack=101, payload=b"more")  # beyond a zero window, but ACKs our data
    x.expect(ACK, seq=101, ack=1001)
    assert x.conn.snd_una == 101
    x.deliver(seq=1002, ack=101)
    x.expect(ACK, seq=101, ack=1001)  # zero-length, zero window, SEQ != RCV.NXT
    x.conn.recv()
    s = x.expect(ACK, seq=101, ack=1001)  # window update once the app reads
    assert s.window == 1000


def test_out_of_order_reassembly_with_sack_blocks() -> None:
    x = Exchange(config=Config(delayed_ack=False))
    x.passive_open(peer_syn_options=TcpOptions(sack_permitted=True))
    assert x.conn is not None and x.conn.sack_ok
    x.deliver(seq=11, ack=1, payload=b"B" * 10)
    s = x.expect(ACK, seq=1, ack=1)
    assert s.options.sack_blocks == ((11, 21),)
    x.deliver(seq=31, ack=1, payload=b"D" * 10)
    s = x.expect(ACK, seq=1, ack=1)
    assert s.options.sack_blocks[0] == (31, 41)  # most recent first (RFC 2018 §4)
    x.deliver(seq=21, ack=1, payload=b"C" * 10)
    s = x.expect(ACK, seq=1, ack=1)
    assert s.options.sack_blocks == ((11, 41),)
    x.deliver(seq=1, ack=1, payload=b"A" * 10)
    s = x.expect(ACK, seq=1, ack=41)
    assert s.options.sack_blocks == ()
    assert x.conn.recv() == b"A" * 10 + b"B" * 10 + b"C" * 10 + b"D" * 10


def test_out_of_order_queue_is_bounded() -> None:
    x = Exchange(config=Config(delayed_ack=False, max_ooo_segments=4))
    x.established(snd_nxt=1, rcv_nxt=1)
    for i in range(10):
        x.deliver(seq=100 + 10 * i, ack=1, payload=b"x")
    assert x.conn is not None and len(x.conn._ooo) == 4
    assert x.counters["ooo_queue_full"] == 6


def test_old_segment_never_changes_the_send_window() -> None:
    """SA-4.5: SND.WL1/SND.WL2 keep a reordered segment from touching SND.WND."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=100)
    assert x.conn is not None
    x.deliver(seq=100, ack=1, window=8000)
    assert x.conn.snd_wnd == 8000
    x.deliver(seq=90, ack=1, window=10, payload=b"0123456789")  # old, reordered
    x.expect(ACK, seq=1, ack=100)
    assert x.conn.snd_wnd == 8000


@pytest.mark.parametrize(("ack", "reason"), [(500, "ack_of_unsent_data")])
def test_ack_of_unsent_data_is_answered_and_dropped(ack: int, reason: str) -> None:
    x = Exchange()
    x.established(snd_nxt=248, rcv_nxt=50)
    x.deliver(seq=50, ack=ack, flags=PSH | ACK, payload=b"data")
    x.expect(ACK, seq=248, ack=50)  # the data is not taken
    assert x.counters[reason] == 1


def test_retransmission_timeout_resends_from_snd_una() -> None:
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.send(b"a" * 300, x.now)
    x.expect(PSH | ACK, seq=1, ack=1, length=300)
    x.advance(x.conn.rtt.rto)
    x.expect(PSH | ACK, seq=1, ack=1, length=300)
    x.deliver(seq=1, ack=301)
    assert x.conn.snd_una == 301 and x.conn.next_deadline() is None


def test_initial_window_and_slow_start() -> None:
    """CC-1: IW = 4 segments for SMSS 536; CC-2: +1 SMSS per ACK."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.send(bytes(20 * MSS), x.now)
    first = x.take_segments_sent()
    assert [len(s.payload) for s in first] == [MSS] * 4
    x.deliver(seq=1, ack=1 + MSS)
    assert [len(s.payload) for s in x.take_segments_sent()] == [MSS] * 2


def test_fast_retransmit_on_third_dupack_and_fin_is_not_a_dupack() -> None:
    """CC-5, CC-6."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.send(bytes(4 * MSS), x.now)
    assert len(x.take_segments_sent()) == 4
    x.deliver(seq=1, ack=1)
    x.deliver(seq=1, ack=1)
    x.deliver(seq=1, ack=1, flags=FIN | ACK)  # a FIN: never a duplicate ACK
    x.expect(ACK, seq=1 + 4 * MSS, ack=2)
    assert x.conn.cc.dupacks == 2 and not x.conn.cc.in_recovery
    x.deliver(seq=2, ack=1)
    s = x.expect(ACK, seq=1, ack=2, length=MSS)  # the third: fast retransmit
    assert x.conn.cc.in_recovery
    assert x.conn.cc.ssthresh == 2 * MSS  # max(FlightSize/2, 2*SMSS)
    del s
    x.deliver(seq=2, ack=1 + 4 * MSS)  # full ACK leaves recovery
    assert not x.conn.cc.in_recovery
    assert x.state is State.CLOSE_WAIT


def test_zero_window_probe_is_answered() -> None:
    """§3.8.6.1: the sender probes a zero window and resumes when it opens."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.deliver(seq=1, ack=1, window=0)
    x.conn.send(b"waiting", x.now)
    x.expect_nothing()
    x.advance(x.conn.rtt.rto)
    x.expect(ACK, seq=0, ack=1)  # Linux-style probe: SND.UNA - 1
    x.deliver(seq=1, ack=1, window=100)
    x.expect(PSH | ACK, seq=1, ack=1, length=7)


def test_send_buffer_is_bounded() -> None:
    x = Exchange(config=Config(delayed_ack=False, send_buffer=1000))
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    assert x.conn.send(bytes(5000), x.now) == 1000
    assert x.conn.send(b"x", x.now) == 0


def test_limited_transmit_sends_new_data_on_the_first_two_dupacks() -> None:
    """RFC 3042: with cwnd at two segments, the first two DupAcks each let one
    new segment out (cwnd itself unchanged), so the third DupAck can come."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.cc.cwnd = 2 * MSS
    x.conn.send(bytes(6 * MSS), x.now)
    assert [s.seq for s in x.take_segments_sent()] == [1, 1 + MSS]
    x.deliver(seq=1, ack=1)
    x.expect(ACK, seq=1 + 2 * MSS, ack=1, length=MSS)
    x.deliver(seq=1, ack=1)
    x.expect(ACK, seq=1 + 3 * MSS, ack=1, length=MSS)
    assert x.conn.cc.cwnd == 2 * MSS and not x.conn.cc.in_recovery
    x.deliver(seq=1, ack=1)
    x.expect(ACK, seq=1, ack=1, length=MSS)  # the third: fast retransmit
    assert x.conn.cc.in_recovery


@pytest.mark.parametrize(("segments", "dupacks"), [(2, 1), (3, 2)])
def test_early_retransmit_for_a_small_flight_with_nothing_more_to_send(
    segments: int, dupacks: int
) -> None:
    """RFC 5827: fewer than four segments outstanding and no new data, the
    threshold is (outstanding segments - 1) DupAcks, not three and an RTO."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.send(bytes(segments * MSS), x.now)
    assert len(x.take_segments_sent()) == segments
    for _ in range(dupacks - 1):
        x.deliver(seq=1, ack=1)
    x.expect_nothing()
    x.deliver(seq=1, ack=1)
    x.expect(ACK, seq=1, ack=1, length=MSS)
    assert x.conn.cc.in_recovery and x.counters["fast_retransmit"] == 1


def test_no_early_retransmit_for_one_segment() -> None:
    """One segment outstanding draws no DupAck from a receiver: a repeated
    ACK then is something else, and does not set off a retransmission."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.send(bytes(MSS), x.now)
    x.take_segments_sent()
    x.deliver(seq=1, ack=1)
    x.deliver(seq=1, ack=1)
    x.expect_nothing()
    assert "fast_retransmit" not in x.counters


def test_pure_ack_stays_inside_a_window_the_peer_shrank() -> None:
    """The peer takes 300 bytes in flight away (its buffer pruned: ACK at
    SND.UNA, window 0) and keeps sending: our ACKs must carry SEQ = SND.UNA +
    SND.WND, the right edge it accepts (Linux tcp_acceptable_seq()), not
    SND.MAX beyond it — there the ACK is unacceptable and ignored, and with
    both windows closed neither side moves (a live transfer hung 30 s)."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.send(bytes(300), x.now)
    x.expect(PSH | ACK, seq=1, ack=1, length=300)
    x.deliver(seq=1, ack=1, window=0)  # nothing acknowledged, window closed
    x.deliver(seq=1, ack=1, window=0, flags=PSH | ACK, payload=b"more")
    x.expect(ACK, seq=1, ack=5)  # not seq=301 (SND.MAX)
    x.deliver(seq=5, ack=1, window=100, flags=PSH | ACK, payload=b"data")
    x.expect(ACK, seq=101, ack=9)  # the edge moved: SND.UNA + 100
