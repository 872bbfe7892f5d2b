"""The sender's use of SACK (RFC 2018, RFC 6675): what counts as a
duplicate ACK, which holes are resent, and what a lying receiver can do.

The engine sends eight MSS-sized segments (relative seq 1, 537, 1073, ...);
the scripted peer answers with cumulative ACKs and SACK blocks."""

from __future__ import annotations

from finwait.tcp.config import Config
from finwait.wire.segment import ACK, TcpOptions

from .harness import Exchange

MSS = 536
SACK_OK = TcpOptions(sack_permitted=True)


def seg_start(i: int) -> int:
    return 1 + i * MSS


def sack(*blocks: tuple[int, int]) -> TcpOptions:
    return TcpOptions(sack_blocks=tuple(blocks))


def flight(x: Exchange, segments: int = 8, options: TcpOptions = SACK_OK) -> None:
    x.established(snd_nxt=1, rcv_nxt=1, peer_syn_options=options)
    assert x.conn is not None
    x.conn.cc.cwnd = segments * MSS  # past slow start: the whole flight goes at once
    x.conn.send(bytes(segments * MSS), x.now)
    assert [s.seq for s in x.take_segments_sent()] == [seg_start(i) for i in range(segments)]


def test_repeated_acks_without_sack_news_are_not_duplicates() -> None:
    """RFC 6675 §2: with SACK in use, a repeated ACK that SACKs nothing new
    (here, the answers a receiver gives to injected out-of-window segments)
    is not a DupAck and sets off no fast retransmit."""
    x = Exchange()
    flight(x)
    for _ in range(10):
        x.deliver(seq=1, ack=1)
    x.expect_nothing()
    assert x.conn is not None and x.conn.cc.dupacks == 0
    assert "fast_retransmit" not in x.counters


def test_without_sack_the_same_acks_are_duplicates() -> None:
    """The defence removed: no SACK negotiated, RFC 5681 §2 counts them."""
    x = Exchange()
    flight(x, options=TcpOptions())
    for _ in range(3):
        x.deliver(seq=1, ack=1)
    x.expect(ACK, seq=1, ack=1, length=MSS)
    assert x.counters["fast_retransmit"] == 1


def test_sack_news_counts_and_the_third_retransmits_the_first_hole() -> None:
    x = Exchange()
    flight(x)
    x.deliver(seq=1, ack=1, options=sack((seg_start(1), seg_start(2))))
    x.deliver(seq=1, ack=1, options=sack((seg_start(1), seg_start(2))))  # nothing new
    x.deliver(seq=1, ack=1, options=sack((seg_start(1), seg_start(3))))
    x.expect_nothing()
    assert x.conn is not None and x.conn.cc.dupacks == 2
    x.deliver(seq=1, ack=1, options=sack((seg_start(1), seg_start(4))))
    x.expect(ACK, seq=1, ack=1, length=MSS)
    assert x.conn.cc.in_recovery


def test_is_lost_enters_recovery_before_three_dupacks() -> None:
    """RFC 6675 §5: more than 2 SMSS SACKed above SND.UNA means it is lost,
    even if (stretch ACKs, lost ACKs) fewer than three DupAcks came."""
    x = Exchange()
    flight(x)
    x.deliver(seq=1, ack=1, options=sack((seg_start(1), seg_start(4))))
    x.expect(ACK, seq=1, ack=1, length=MSS)
    assert x.conn is not None and x.conn.cc.in_recovery and x.conn.cc.dupacks == 1


def test_several_holes_are_resent_in_one_recovery_never_sacked_bytes() -> None:
    """Segments 0, 2 and 4 lost; the receiver SACKs 1, 3, 5, 6, 7.  The
    third DupAck resends hole 0, each partial ACK the next hole (2, then 4),
    and no SACKed segment is sent again."""
    x = Exchange()
    flight(x)
    one = (seg_start(1), seg_start(2))
    three = (seg_start(3), seg_start(4))
    five_on = (seg_start(5), seg_start(8))
    x.deliver(seq=1, ack=1, options=sack(one))
    x.deliver(seq=1, ack=1, options=sack(three, one))
    x.expect_nothing()
    x.deliver(seq=1, ack=1, options=sack(five_on, three, one))
    s = x.expect(ACK, seq=seg_start(0), ack=1, length=MSS)  # the third DupAck: hole 0
    x.deliver(seq=1, ack=1, options=sack((seg_start(7), seg_start(8)), five_on, three))
    x.expect_nothing()  # nothing new SACKed: not a DupAck
    # The partial ACK for hole 0 (segment 1 SACKed already): resend hole 2.
    x.deliver(seq=1, ack=seg_start(2), options=sack(five_on, three))
    s = x.expect(ACK, seq=seg_start(2), ack=1, length=MSS)
    x.deliver(seq=1, ack=seg_start(4), options=sack(five_on))
    s = x.expect(ACK, seq=seg_start(4), ack=1, length=MSS)
    x.deliver(seq=1, ack=seg_start(8))
    assert x.conn is not None and not x.conn.cc.in_recovery
    assert x.counters["fast_retransmit"] == 3
    del s


def test_dupacks_in_recovery_send_the_next_hole_before_new_data() -> None:
    x = Exchange()
    flight(x)
    x.deliver(seq=1, ack=1, options=sack((seg_start(1), seg_start(4))))
    x.expect(ACK, seq=seg_start(0), ack=1, length=MSS)  # IsLost(SND.UNA)
    x.deliver(
        seq=1, ack=1, options=sack((seg_start(5), seg_start(8)), (seg_start(1), seg_start(4)))
    )
    x.expect(ACK, seq=seg_start(4), ack=1, length=MSS)  # the next hole, at once
    assert x.counters["fast_retransmit"] == 2


def test_retransmission_stops_short_of_sacked_bytes() -> None:
    """A hole narrower than an MSS is resent as exactly the hole."""
    x = Exchange()
    flight(x)
    x.deliver(seq=1, ack=1, options=sack((101, seg_start(4))))
    x.expect(ACK, seq=1, ack=1, length=100)


def test_invalid_sack_blocks_are_ignored() -> None:
    """Blocks below SND.UNA (D-SACK), beyond SND.MAX, reversed or empty tell
    nothing: no DupAck, nothing held."""
    x = Exchange()
    flight(x)
    top = seg_start(8)
    for blocks in [
        ((0, 1),),  # below SND.UNA
        ((top, top + 100),),  # unsent
        ((seg_start(3), seg_start(2)),),  # reversed
        ((seg_start(2), seg_start(2)),),  # empty
        ((seg_start(7), top + 1),),  # runs past SND.MAX
    ]:
        x.deliver(seq=1, ack=1, options=sack(*blocks))
    x.expect_nothing()
    assert x.conn is not None and x.conn.cc.dupacks == 0
    assert not x.conn._sb


def test_scoreboard_is_bounded_against_a_lying_receiver() -> None:
    """A receiver SACKing every other byte cannot grow the sender's memory
    past the configured number of ranges."""
    x = Exchange(config=Config(delayed_ack=False, max_ooo_segments=16))
    flight(x)
    for k in range(0, 8 * MSS - 10, 8):
        lo = 2 + k
        x.deliver(seq=1, ack=1, options=sack((lo, lo + 1), (lo + 2, lo + 3), (lo + 4, lo + 5)))
    assert x.conn is not None and x.conn._sb is not None
    assert len(x.conn._sb) == 16


def test_rto_forgets_the_scoreboard() -> None:
    """RFC 2018 §8: the receiver may renege; after a timeout everything
    from SND.UNA is sent again, SACKed or not."""
    x = Exchange()
    flight(x, segments=3)
    x.deliver(seq=1, ack=1, options=sack((seg_start(1), seg_start(3))))
    x.take_segments_sent()
    assert x.conn is not None
    x.advance(x.conn.rtt.rto + 0.01)
    x.expect(ACK, seq=1, ack=1, length=MSS)
    assert not x.conn._sb
    x.deliver(seq=1, ack=seg_start(1))
    assert [s.seq for s in x.take_segments_sent()][:1] == [seg_start(1)]  # resent though SACKed
