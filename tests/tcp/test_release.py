"""The release in all its shapes, as packet exchanges (RFC 9293 §3.6, Figures 12 and 13).

Numbers are relative (ISS = IRS = 0) and follow the seed: the engine is host
A with SND.NXT = 248 (247 bytes sent) and RCV.NXT = 50 (49 bytes received).
"""

from __future__ import annotations

import itertools

import pytest

from finwait.tcp.config import Config
from finwait.tcp.state import State
from finwait.wire.segment import ACK, FIN, PSH, RST, SYN

from .harness import TEST_CONFIG, Exchange

MSL = TEST_CONFIG.msl


def seed() -> Exchange:
    x = Exchange()
    x.established(snd_nxt=248, rcv_nxt=50)
    return x


def test_passive_close_is_the_seed_figure() -> None:
    """Test 1: B's FIN seq=50 ack=248; A ACKs 51; half-close data; A's FIN; B's ACK."""
    x = seed()
    x.deliver(seq=50, ack=248, flags=FIN | ACK)
    x.expect(ACK, seq=248, ack=51)  # the FIN consumed sequence number 50
    assert x.state is State.CLOSE_WAIT
    assert x.event_types() == ["EndOfStream"]
    # Half-closed: A may still send, B still receives.
    assert x.conn is not None
    x.conn.send(b"0123456789", x.now)
    x.expect(PSH | ACK, seq=248, ack=51, length=10)
    x.deliver(seq=51, ack=258)
    x.conn.close(x.now)
    x.expect(FIN | ACK, seq=258, ack=51)
    assert x.state is State.LAST_ACK
    x.deliver(seq=51, ack=259)
    assert x.state is State.CLOSED
    assert "Closed" in x.event_types()
    x.advance(10 * MSL)
    x.expect_nothing()  # no TIME-WAIT for the passive closer


def test_passive_close_without_half_close_data_keeps_seq_248() -> None:
    """Seed step 3: a pure ACK consumes no sequence number, so A's FIN is still 248."""
    x = seed()
    x.deliver(seq=50, ack=248, flags=FIN | ACK)
    x.expect(ACK, seq=248, ack=51)
    assert x.conn is not None
    x.conn.close(x.now)
    x.expect(FIN | ACK, seq=248, ack=51)
    x.deliver(seq=51, ack=249)
    assert x.state is State.CLOSED


def test_active_four_step_close_with_half_close_data() -> None:
    """Test 2."""
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    assert x.conn is not None
    x.conn.close(x.now)
    x.expect(FIN | ACK, seq=100, ack=300)
    assert x.state is State.FIN_WAIT_1
    x.deliver(seq=300, ack=101)
    assert x.state is State.FIN_WAIT_2
    assert x.event_types() == ["CloseAcknowledged"]
    x.deliver(seq=300, ack=101, flags=PSH | ACK, payload=b"x" * 20)
    x.expect(ACK, seq=101, ack=320)
    assert x.conn.recv() == b"x" * 20
    x.deliver(seq=320, ack=101, flags=FIN | ACK)
    x.expect(ACK, seq=101, ack=321)
    assert x.state is State.TIME_WAIT
    x.advance(2 * MSL - 0.001)
    assert x.state is State.TIME_WAIT
    x.advance(0.001)
    assert x.state is State.CLOSED
    x.expect_nothing()


def test_three_segment_close_passes_through_fin_wait_2_in_one_input() -> None:
    """Test 3: FIN,ACK that acknowledges our FIN; one ACK out; the trace
    records FIN-WAIT-2 as a transient step (RFC step order)."""
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.take_events()
    x.deliver(seq=300, ack=101, flags=FIN | ACK)
    x.expect(ACK, seq=101, ack=301)
    x.expect_nothing()
    states = [str(e.new) for e in x.take_events() if type(e).__name__ == "StateChanged"]
    assert states == ["FIN-WAIT-2", "TIME-WAIT"]


def test_engine_three_segment_close_when_app_closes_promptly() -> None:
    """LX-1: with delayed ACK on, the ACK of the peer's FIN waits; a prompt
    close() sends one FIN,ACK that carries it."""
    x = Exchange(config=Config())
    x.established(snd_nxt=248, rcv_nxt=50)
    x.deliver(seq=50, ack=248, flags=FIN | ACK)
    x.expect_nothing()  # the ACK is delayed
    x.advance(0.01)
    assert x.conn is not None
    x.conn.close(x.now)
    x.expect(FIN | ACK, seq=248, ack=51)
    x.expect_nothing()
    x.deliver(seq=51, ack=249)
    assert x.state is State.CLOSED


def test_delayed_ack_of_fin_goes_out_within_500ms() -> None:
    x = Exchange(config=Config())
    x.established(snd_nxt=248, rcv_nxt=50)
    x.deliver(seq=50, ack=248, flags=FIN | ACK)
    x.expect_nothing()
    x.advance(0.5)
    x.expect(ACK, seq=248, ack=51)


def test_simultaneous_close_through_closing() -> None:
    """Test 4."""
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=100, flags=FIN | ACK)  # the FINs crossed
    x.expect(ACK, seq=101, ack=301)
    assert x.state is State.CLOSING
    x.deliver(seq=301, ack=101)
    assert x.state is State.TIME_WAIT


def test_simultaneous_close_peer_ack_lost_fin_retransmitted() -> None:
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=100, flags=FIN | ACK)
    x.expect(ACK, seq=101, ack=301)
    x.advance(1.0)  # RTO
    x.expect(FIN | ACK, seq=100, ack=301)  # same SEQ
    x.deliver(seq=301, ack=101)
    assert x.state is State.TIME_WAIT


def test_lost_fin_in_fin_wait_1_backs_off_then_times_out() -> None:
    """Test 5."""
    cfg = Config(delayed_ack=False, data_retries=3)
    x = Exchange(config=cfg)
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    assert x.conn is not None
    x.advance(100)
    # Retransmissions of exactly the same FIN, with doubling intervals.
    fins = [s for s in x.sent if s.flags & FIN]
    assert len(fins) == 3
    assert all((s.seq, s.ack, s.flags) == (100, 300, FIN | ACK) for s in fins)
    assert x.state is State.CLOSED
    assert "TimedOut" in x.event_types()
    with pytest.raises(Exception, match=r"does not exist|reset"):
        x.conn.send(b"late", x.now)


def test_fin_retransmission_intervals_double() -> None:
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    times = [x.now]
    for _ in range(4):
        deadline = x.host.next_deadline()
        assert deadline is not None
        x.advance(deadline - x.now)
        times.append(x.now)
        x.expect(FIN | ACK, seq=100, ack=300)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for a, b in itertools.pairwise(gaps):
        assert b == pytest.approx(2 * a)


def test_send_refused_after_close() -> None:
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    assert x.conn is not None
    with pytest.raises(Exception, match="closing"):
        x.conn.send(b"more", x.now)
    assert x.state is State.FIN_WAIT_1
    x.conn.close(x.now)  # CL-6: "ok", and never a second FIN
    x.expect_nothing()


def test_lost_fin_in_last_ack() -> None:
    """Test 6."""
    x = seed()
    x.deliver(seq=50, ack=248, flags=FIN | ACK)
    x.expect(ACK, seq=248, ack=51)
    assert x.conn is not None
    x.conn.send(b"0123456789", x.now)
    x.expect(PSH | ACK, seq=248, ack=51, length=10)
    x.deliver(seq=51, ack=258)
    x.conn.close(x.now)
    x.expect(FIN | ACK, seq=258, ack=51)
    x.deliver(seq=50, ack=258, flags=FIN | ACK)  # a duplicate of the old FIN
    x.expect(ACK, seq=259, ack=51)
    x.advance(1.0)
    x.expect(FIN | ACK, seq=258, ack=51)
    x.deliver(seq=51, ack=259)
    assert x.state is State.CLOSED


def time_wait() -> Exchange:
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=101)
    x.deliver(seq=300, ack=101, flags=PSH | ACK, payload=b"x" * 20)
    x.expect(ACK, seq=101, ack=320)
    x.deliver(seq=320, ack=101, flags=FIN | ACK)
    x.expect(ACK, seq=101, ack=321)
    assert x.state is State.TIME_WAIT
    return x


def test_time_wait_restarts_on_retransmitted_fin() -> None:
    """Test 7."""
    x = time_wait()
    t0 = x.now
    x.advance(30)
    x.deliver(seq=320, ack=101, flags=FIN | ACK)
    x.expect(ACK, seq=101, ack=321)
    x.advance(t0 + 2 * MSL - x.now)
    assert x.state is State.TIME_WAIT
    x.advance(30 - 0.001)
    assert x.state is State.TIME_WAIT
    x.advance(0.002)
    assert x.state is State.CLOSED


@pytest.mark.parametrize("seq", [321, 330, 9999])
def test_rst_in_time_wait_is_ignored(seq: int) -> None:
    """Test 8 (RFC 1337)."""
    x = time_wait()
    assert x.conn is not None
    deadline = x.conn.next_deadline()
    x.deliver(seq=seq, flags=RST)
    x.expect_nothing()
    assert x.state is State.TIME_WAIT
    assert x.conn.next_deadline() == deadline


def test_rst_in_time_wait_kills_it_without_rfc1337() -> None:
    """The defence can be switched off, and then the RST does kill TIME-WAIT
    (the check that the test above can fail)."""
    x = Exchange(config=Config(delayed_ack=False, rfc1337=False))
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=101, flags=FIN | ACK)
    x.expect(ACK, seq=101, ack=301)
    x.deliver(seq=301, flags=RST)
    assert x.state is State.CLOSED


def test_time_wait_other_segments_change_nothing() -> None:
    """TW-6: an old ACK in TIME-WAIT gets the step-one ACK, the timer stays."""
    x = time_wait()
    assert x.conn is not None
    deadline = x.conn.next_deadline()
    x.deliver(seq=321, ack=101)
    x.expect_nothing()
    assert x.conn.next_deadline() == deadline


@pytest.mark.parametrize("where", ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT"])
def test_fin_without_ack_is_dropped_and_counted(where: str) -> None:
    """Test 9: the seed's "malicious" FIN: no reply, no state change."""
    x = Exchange()
    x.established(snd_nxt=248, rcv_nxt=50)
    rcv = 50
    if where in ("FIN-WAIT-1", "FIN-WAIT-2"):
        x.close_first()
        if where == "FIN-WAIT-2":
            x.deliver(seq=50, ack=249)
    elif where == "CLOSE-WAIT":
        x.deliver(seq=50, ack=248, flags=FIN | ACK)
        x.expect(ACK, seq=248, ack=51)
        rcv = 51
    assert str(x.state) == where
    assert x.conn is not None
    before = x.conn.rcv_nxt
    x.deliver(seq=rcv, flags=FIN)
    x.expect_nothing()
    assert str(x.state) == where
    assert x.conn.rcv_nxt == before
    assert x.counters["fin_without_ack"] == 1
    if where == "ESTABLISHED":
        x.deliver(seq=50, ack=248, flags=FIN | ACK)  # the real one proceeds normally
        x.expect(ACK, seq=248, ack=51)
        assert x.state is State.CLOSE_WAIT


def test_rst_validation_rfc5961() -> None:
    """Test 10."""
    x = Exchange()
    x.established(snd_nxt=248, rcv_nxt=50)
    x.deliver(seq=60, flags=RST)
    x.expect(ACK, seq=248, ack=50)  # challenge ACK
    assert x.state is State.ESTABLISHED
    x.deliver(seq=500000, flags=RST)
    x.expect_nothing()
    x.deliver(seq=50, flags=RST)
    x.expect_nothing()
    assert x.state is State.CLOSED
    assert x.event_types() == ["Reset"]


@pytest.mark.parametrize("where", ["FIN-WAIT-2", "CLOSE-WAIT", "LAST-ACK"])
def test_exact_rst_closes_in_other_states(where: str) -> None:
    x = Exchange()
    x.established(snd_nxt=248, rcv_nxt=50)
    rcv = 50
    if where == "FIN-WAIT-2":
        x.close_first()
        x.deliver(seq=50, ack=249)
    else:
        x.deliver(seq=50, ack=248, flags=FIN | ACK)
        x.expect(ACK, seq=248, ack=51)
        rcv = 51
        if where == "LAST-ACK":
            assert x.conn is not None
            x.conn.close(x.now)
            x.expect(FIN | ACK, seq=248, ack=51)
    assert str(x.state) == where
    x.deliver(seq=rcv, flags=RST)
    x.expect_nothing()
    assert x.state is State.CLOSED


@pytest.mark.parametrize("where", ["ESTABLISHED", "CLOSE-WAIT"])
def test_syn_in_synchronized_state_gets_challenge_ack(where: str) -> None:
    """Test 11 (RFC 5961 §4)."""
    x = Exchange()
    x.established(snd_nxt=248, rcv_nxt=50)
    rcv = 50
    if where == "CLOSE-WAIT":
        x.deliver(seq=50, ack=248, flags=FIN | ACK)
        x.expect(ACK, seq=248, ack=51)
        rcv = 51
    x.deliver(seq=7, flags=SYN)
    x.expect(ACK, seq=248, ack=rcv)
    x.advance(1.0)  # past the challenge-ACK rate limit
    x.deliver(seq=55, flags=SYN)
    x.expect(ACK, seq=248, ack=rcv)
    assert str(x.state) == where


def test_challenge_acks_are_rate_limited() -> None:
    x = Exchange()
    x.established(snd_nxt=248, rcv_nxt=50)
    x.deliver(seq=7, flags=SYN)
    x.expect(ACK, seq=248, ack=50)
    x.deliver(seq=8, flags=SYN)
    x.expect_nothing()
    assert x.counters["ack_ratelimited"] == 1


def test_out_of_order_fin_waits_for_the_gap() -> None:
    """Test 12."""
    x = seed()
    x.deliver(seq=60, ack=248, flags=FIN | ACK)
    x.expect(ACK, seq=248, ack=50)  # duplicate ACK
    assert x.state is State.ESTABLISHED
    assert "EndOfStream" not in x.event_types()
    x.deliver(seq=50, ack=248, flags=PSH | ACK, payload=b"0123456789")
    x.expect(ACK, seq=248, ack=61)
    assert x.state is State.CLOSE_WAIT
    assert x.event_types() == ["DataReceived", "EndOfStream"]
    assert x.conn is not None and x.conn.recv() == b"0123456789"


def test_out_of_order_data_then_fin() -> None:
    x = seed()
    x.deliver(seq=55, ack=248, flags=FIN | PSH | ACK, payload=b"56789")
    x.expect(ACK, seq=248, ack=50)
    x.deliver(seq=50, ack=248, flags=PSH | ACK, payload=b"01234")
    x.expect(ACK, seq=248, ack=61)
    assert x.state is State.CLOSE_WAIT
    assert x.conn is not None and x.conn.recv() == b"0123456789"


def test_data_and_fin_in_one_segment() -> None:
    """Test 13."""
    x = seed()
    x.deliver(seq=50, ack=248, flags=FIN | PSH | ACK, payload=b"0123456789")
    x.expect(ACK, seq=248, ack=61)
    x.expect_nothing()
    assert x.state is State.CLOSE_WAIT
    assert x.event_types() == ["DataReceived", "EndOfStream"]


def test_abort_and_the_closed_port() -> None:
    """Test 14."""
    x = seed()
    assert x.conn is not None
    x.conn.abort(x.now)
    x.expect(RST, seq=248)
    assert x.state is State.CLOSED
    ev = x.take_events()
    assert any(type(e).__name__ == "Reset" and e.local for e in ev)  # type: ignore[attr-defined]
    x.deliver(seq=50, ack=248)
    x.expect(RST, seq=248)
    x.deliver(seq=1000, flags=SYN, sport=41000, dport=81)  # nobody listens on 81
    x.expect(RST | ACK, seq=0, ack=1001)
    x.deliver(seq=1000, flags=RST, sport=41000, dport=81)
    x.expect_nothing()


def test_fin_and_data_to_closed_port_acks_seg_len() -> None:
    """SA-CL-4: FIN + 5 bytes at seq X gets ack X+6."""
    x = Exchange()
    x.deliver(seq=700, flags=FIN, payload=b"12345")
    x.expect(RST | ACK, seq=0, ack=706)


def test_close_with_unread_data_and_discard_sends_rst() -> None:
    """LX-5 / RFC 2525 §2.17: "close and discard" with unread data resets."""
    x = seed()
    x.deliver(seq=50, ack=248, flags=PSH | ACK, payload=b"unread")
    x.expect(ACK, seq=248, ack=56)
    assert x.conn is not None
    x.conn.close(x.now, discard=True)
    x.expect(RST, seq=248)
    assert x.state is State.CLOSED
    assert x.counters["abort_on_close"] == 1


def test_data_after_discarding_close_sends_rst() -> None:
    """LX-7: after close(discard=True), new data from the peer resets."""
    x = seed()
    assert x.conn is not None
    x.conn.close(x.now, discard=True)
    x.expect(FIN | ACK, seq=248, ack=50)
    x.deliver(seq=50, ack=249, flags=PSH | ACK, payload=b"late")
    x.expect(RST, seq=249)
    assert x.state is State.CLOSED


def test_half_close_engine_keeps_receiving_after_its_fin() -> None:
    """CL-0a: the engine closes first and receives a large stream afterwards."""
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=101)
    assert x.conn is not None
    got = b""
    seq = 300
    for i in range(10):
        data = bytes([i]) * 500
        x.deliver(seq=seq, ack=101, flags=ACK, payload=data)
        seq += 500
        x.expect(ACK, seq=101, ack=seq)
        got += x.conn.recv()
    assert got == b"".join(bytes([i]) * 500 for i in range(10))
    assert x.state is State.FIN_WAIT_2


def test_half_closed_fin_wait_2_waits_for_the_fin_indefinitely() -> None:
    """LX-8: after a plain half-close (shutdown(SHUT_WR)) Linux waits as long
    as it takes; so does the engine, whatever the peer retransmits."""
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=101)
    x.advance(3600)
    x.deliver(seq=290, ack=101, payload=bytes(10))  # a duplicate
    x.expect(ACK, seq=101, ack=300)
    assert x.state is State.FIN_WAIT_2


def test_orphaned_fin_wait_2_times_out_when_peer_stays_silent() -> None:
    x = Exchange(config=Config(delayed_ack=False, fin_wait_2_timeout=60.0))
    x.established(snd_nxt=100, rcv_nxt=300)
    assert x.conn is not None
    x.conn.close(x.now, discard=True)
    x.expect(FIN | ACK, seq=100, ack=300)
    x.deliver(seq=300, ack=101)
    x.advance(59.9)
    assert x.state is State.FIN_WAIT_2
    x.advance(0.2)
    assert x.state is State.CLOSED
    assert x.counters["fin_wait_2_timeout"] == 1
