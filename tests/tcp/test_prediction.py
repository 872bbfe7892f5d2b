"""Header prediction takes no decision of its own (RFC 9293 §3.10.7.4).

Three packet exchanges where an earlier fast path, which re-implemented
steps one, five and seven, did something the full path does not.  Each
segment the peer sends here is one the fast path takes (ESTABLISHED, ACK
only, SEQ = RCV.NXT), and the engine must answer as §3.10.7.4 says.
tests/tcp/test_differential.py compares the two paths over random runs."""

from __future__ import annotations

from finwait.wire.segment import ACK, PSH

from .harness import Exchange
from .test_sack import MSS, flight, sack, seg_start


def test_sack_blocks_on_in_order_data_are_duplicate_acks() -> None:
    """RFC 6675 §2: an ACK that SACKs new octets is a DupAck even when the
    segment carries data.  Three such data segments from the peer, each
    SACKing one more segment of ours, give a fast retransmit of SND.UNA."""
    x = Exchange()
    flight(x)
    for i in range(3):
        blocks = sack((seg_start(1), seg_start(2 + i)))
        x.deliver(seq=1 + 100 * i, ack=1, flags=PSH | ACK, payload=bytes(100), options=blocks)
    assert x.conn is not None and x.conn.cc.dupacks == 3 and x.conn.cc.in_recovery
    assert x.counters["dupack"] == 3 and x.counters["fast_retransmit"] == 1
    sent = x.take_segments_sent()
    resent = [s for s in sent if s.seq == 1 and len(s.payload) == MSS]
    assert len(resent) == 1, [s.describe() for s in sent]


def test_window_update_obeys_snd_wl1() -> None:
    """Step five: the window is taken only from a segment newer than the one
    it was last taken from (SND.WL1 < SEG.SEQ, or equal and SND.WL2 =<
    SEG.ACK).  The peer's ACK at SEQ 101 (in the window, no text) set the
    window to 65535; its data at SEQ 1 that follows is older and its window
    of 200 is not used: the engine sends its initial window, not 200 bytes."""
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    x.deliver(seq=101, ack=1, window=65535)  # acceptable, zero length, beyond RCV.NXT
    x.expect_nothing()
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=bytes(100), window=200)
    x.expect(ACK, seq=1, ack=101)
    assert x.conn is not None and x.conn.snd_wnd == 65535
    x.conn.send(bytes(4 * MSS), x.now)
    for i in range(3):
        x.expect(ACK, seq=seg_start(i), ack=101, length=MSS)
    x.expect(PSH | ACK, seq=seg_start(3), ack=101, length=MSS)
    x.expect_nothing()


def test_ack_rides_on_data_sent_in_answer() -> None:
    """In-order data whose SACK block makes it the first DupAck lets one new
    segment out (limited transmit, RFC 3042); that segment carries the ACK of
    the data (RFC 9293 §3.10.7.4 seventh: "piggybacked"), no pure ACK first."""
    x = Exchange()
    flight(x)
    assert x.conn is not None
    x.conn.send(bytes(2 * MSS), x.now)  # queued behind the full congestion window
    x.expect_nothing()
    x.deliver(
        seq=1, ack=1, flags=PSH | ACK, payload=bytes(100),
        options=sack((seg_start(1), seg_start(2))),
    )  # fmt: skip
    x.expect(ACK, seq=seg_start(8), ack=101, length=MSS)
    x.expect_nothing()
