"""Opening: LISTEN, SYN-SENT, SYN-RECEIVED (§3.10.7.1-3), options (RFC 7323, 2018)."""

from __future__ import annotations

import pytest

from finwait.tcp.config import Config
from finwait.tcp.state import State
from finwait.wire.segment import ACK, FIN, PSH, RST, SYN, TcpOptions

from .harness import E_ADDR, E_PORT, P_ADDR, P_PORT, Exchange


def syn_sent(**kw: object) -> Exchange:
    x = Exchange(engine_iss=100, peer_iss=300, **kw)  # type: ignore[arg-type]
    x.conn = x.host.connect(P_ADDR, P_PORT, x.now, src=E_ADDR, sport=E_PORT)
    x.expect(SYN, seq=100)
    assert x.state is State.SYN_SENT
    return x


def test_active_open_three_way_handshake() -> None:
    x = syn_sent()
    x.deliver(seq=300, ack=101, flags=SYN | ACK)
    x.expect(ACK, seq=101, ack=301)
    assert x.state is State.ESTABLISHED
    assert "Connected" in x.event_types()


def test_syn_carries_our_options_and_syn_ack_only_offered_ones() -> None:
    x = Exchange(config=Config())
    x.conn = x.host.connect(P_ADDR, P_PORT, x.now, src=E_ADDR, sport=E_PORT)
    syn = x.expect(SYN, seq=0)
    assert syn.options.mss == 1460 and syn.options.sack_permitted
    assert syn.options.wscale is not None and syn.options.timestamps is not None
    # A peer that offers nothing: every option is off in both directions (TS-1, TS-5).
    x.deliver(seq=0, ack=1, flags=SYN | ACK, window=5000)
    ack = x.expect(ACK, seq=1, ack=1)
    assert ack.options.timestamps is None
    assert x.conn.snd_wscale == 0 and x.conn.rcv_wscale == 0 and not x.conn.ts_ok
    assert x.conn.smss == 536  # RFC 9293 §3.7.1 default when the SYN has no MSS
    assert x.conn.snd_wnd == 5000


def test_passive_open_offers_only_what_the_syn_offered() -> None:
    x = Exchange(config=Config())
    x.listen()
    x.deliver(seq=0, flags=SYN, options=TcpOptions(mss=1000, wscale=20, timestamps=(77, 0)))
    synack = x.expect(SYN | ACK, seq=0, ack=1)
    assert synack.options.wscale is not None  # the peer offered it
    assert synack.options.timestamps is not None and synack.options.timestamps[1] == 77
    assert not synack.options.sack_permitted  # the peer did not offer SACK
    x.deliver(seq=1, ack=1, window=100, options=TcpOptions(timestamps=(78, 5)))
    assert x.listener is not None
    conn = x.listener.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.snd_wscale == 14  # TS-2: a shift above 14 is taken as 14
    assert conn.snd_wnd == 100 << 14  # TS-3: scaled after the SYN
    assert conn.smss == 1000 - 12  # RFC 6691: timestamps take 12 bytes of each segment


def test_simultaneous_open() -> None:
    """SA-SS-5, MUST-10: SYN without ACK in SYN-SENT -> SYN-RECEIVED."""
    x = syn_sent()
    x.deliver(seq=300, flags=SYN)
    x.expect(SYN | ACK, seq=100, ack=301)
    assert x.state is State.SYN_RECEIVED
    x.deliver(seq=301, ack=101)  # the peer's ACK of our SYN
    assert x.state is State.ESTABLISHED


def test_simultaneous_open_with_crossing_syn_acks() -> None:
    x = syn_sent()
    x.deliver(seq=300, flags=SYN)
    x.expect(SYN | ACK, seq=100, ack=301)
    x.deliver(seq=300, ack=101, flags=SYN | ACK)  # its SYN,ACK: the SYN is old
    x.expect(ACK, seq=101, ack=301)
    assert x.state is State.SYN_RECEIVED
    x.deliver(seq=301, ack=101)
    assert x.state is State.ESTABLISHED


@pytest.mark.parametrize("ack", [100, 102, 5])
def test_syn_sent_unacceptable_ack_gets_rst(ack: int) -> None:
    """SA-SS-1."""
    x = syn_sent()
    x.deliver(seq=300, ack=ack, flags=SYN | ACK)
    x.expect(RST, seq=ack)
    assert x.state is State.SYN_SENT


def test_syn_sent_unacceptable_ack_with_rst_is_dropped() -> None:
    x = syn_sent()
    x.deliver(seq=300, ack=5, flags=RST | ACK)
    x.expect_nothing()
    assert x.state is State.SYN_SENT


def test_syn_sent_rst_with_acceptable_ack_is_refused() -> None:
    """SA-SS-3."""
    x = syn_sent()
    x.deliver(seq=0, ack=101, flags=RST | ACK)
    x.expect_nothing()
    assert x.state is State.CLOSED
    ev = [e for e in x.take_events() if type(e).__name__ == "Reset"]
    assert ev and ev[0].refused  # type: ignore[attr-defined]


def test_syn_sent_rst_without_ack_is_dropped() -> None:
    x = syn_sent()
    x.deliver(seq=0, flags=RST)
    assert x.state is State.SYN_SENT


@pytest.mark.parametrize("flags", [FIN, ACK, FIN | ACK])
def test_syn_sent_neither_syn_nor_rst_is_dropped(flags: int) -> None:
    """SA-SS-6: a FIN is never processed in SYN-SENT."""
    x = syn_sent()
    x.deliver(seq=300, ack=101, flags=flags)
    x.expect_nothing()
    assert x.state is State.SYN_SENT


def test_syn_ack_carrying_data_and_fin() -> None:
    x = syn_sent()
    x.deliver(seq=300, ack=101, flags=SYN | ACK | FIN | PSH, payload=b"hello")
    x.expect(ACK, seq=101, ack=307)
    assert x.state is State.CLOSE_WAIT
    assert x.conn is not None and x.conn.recv() == b"hello"


def test_syn_retransmitted_with_backoff_then_timed_out() -> None:
    x = syn_sent(config=Config(delayed_ack=False, syn_retries=2))
    x.advance(1.0)
    x.expect(SYN, seq=100)
    x.advance(2.0)
    x.expect(SYN, seq=100)
    x.advance(4.0)
    x.expect_nothing()
    assert x.state is State.CLOSED
    assert "TimedOut" in x.event_types()


def test_close_in_syn_sent_sends_nothing() -> None:
    """CL-3; the later SYN,ACK gets the CLOSED-state RST."""
    x = syn_sent()
    assert x.conn is not None
    x.conn.close(x.now)
    x.expect_nothing()
    assert x.state is State.CLOSED
    x.deliver(seq=300, ack=101, flags=SYN | ACK)
    x.expect(RST, seq=101)


def test_listen_rst_ignored_ack_reset_bare_fin_dropped() -> None:
    """SA-LI-1, SA-LI-2, SA-LI-4."""
    x = Exchange()
    x.listen()
    x.deliver(seq=5, flags=RST)
    x.expect_nothing()
    x.deliver(seq=5, ack=77, flags=FIN | ACK)
    x.expect(RST, seq=77)
    x.deliver(seq=5, flags=FIN)
    x.expect_nothing()
    assert x.counters["fin_without_ack"] == 1
    assert not x.host.conns


def test_syn_received_bad_ack_gets_rst() -> None:
    """SA-4.3."""
    x = Exchange(engine_iss=100)
    x.listen()
    x.deliver(seq=0, flags=SYN)
    x.expect(SYN | ACK, seq=100, ack=1)
    x.deliver(seq=1, ack=555)
    x.expect(RST, seq=555)


def test_syn_received_rst_returns_to_listen() -> None:
    """SA-2.4: passive SYN-RECEIVED + RST -> the listener carries on, silently."""
    x = Exchange()
    x.listen()
    x.deliver(seq=0, flags=SYN)
    x.expect(SYN | ACK, seq=0, ack=1)
    x.deliver(seq=1, flags=RST)
    x.expect_nothing()
    assert not x.host.conns
    x.deliver(seq=1000, flags=SYN)  # the listener still works
    x.expect(SYN | ACK, seq=0, ack=1001)


def test_retransmitted_syn_in_syn_received_resends_syn_ack() -> None:
    x = Exchange()
    x.listen()
    x.deliver(seq=0, flags=SYN)
    x.expect(SYN | ACK, seq=0, ack=1)
    x.deliver(seq=0, flags=SYN)
    x.expect(SYN | ACK, seq=0, ack=1)


def test_syn_ack_retransmitted_then_passive_connection_dropped() -> None:
    x = Exchange(config=Config(delayed_ack=False, syn_retries=1))
    x.listen()
    x.deliver(seq=0, flags=SYN)
    x.expect(SYN | ACK, seq=0, ack=1)
    x.advance(1.0)
    x.expect(SYN | ACK, seq=0, ack=1)
    x.advance(5.0)
    assert not x.host.conns


def test_close_in_syn_received_sends_fin_after_syn_ack() -> None:
    """CL-4: nothing queued -> FIN, FIN-WAIT-1."""
    x = Exchange()
    x.listen()
    x.deliver(seq=0, flags=SYN)
    x.expect(SYN | ACK, seq=0, ack=1)
    conn = next(iter(x.host.conns.values()))
    x.conn = conn
    conn.close(x.now)
    x.expect(FIN | ACK, seq=1, ack=1)
    assert x.state is State.FIN_WAIT_1
    x.deliver(seq=1, ack=2)
    assert x.state is State.FIN_WAIT_2


def test_syn_queue_is_bounded() -> None:
    x = Exchange()
    x.listener = x.host.listen(E_PORT, backlog=2)
    for i in range(5):
        x.deliver(seq=1000 * i, flags=SYN, sport=50000 + i)
    assert len(x.host.conns) == 2
    assert x.counters["syn_queue_full"] == 3


def test_new_syn_reopens_time_wait() -> None:
    """SA-3.3 as Linux: a SYN above the old RCV.NXT ends TIME-WAIT."""
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=101, flags=FIN | ACK)
    x.expect(ACK, seq=101, ack=301)
    assert x.state is State.TIME_WAIT
    x.deliver(seq=5000, flags=SYN)
    synack = x.expect(SYN | ACK, seq=101 + 65537, ack=5001)
    assert synack.seq == 101 + 65537
    assert x.counters["time_wait_reopened"] == 1


def test_old_syn_in_time_wait_gets_challenge_ack() -> None:
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=101, flags=FIN | ACK)
    x.expect(ACK, seq=101, ack=301)
    x.deliver(seq=200, flags=SYN)
    x.expect(ACK, seq=101, ack=301)
    assert x.state is State.TIME_WAIT


def test_isn_advances_with_clock_and_differs_per_tuple() -> None:
    from finwait.host import Host

    h = Host([E_ADDR], isn_key=b"k" * 16)
    a = h._isn(E_ADDR, 1, P_ADDR, 80, 0.0)
    b = h._isn(E_ADDR, 1, P_ADDR, 80, 1.0)
    c = h._isn(E_ADDR, 2, P_ADDR, 80, 0.0)
    assert (b - a) % 2**32 == 250_000  # 4 µs ticks (RFC 6528 §3)
    assert a != c
    assert Host([E_ADDR], isn_key=b"j" * 16)._isn(E_ADDR, 1, P_ADDR, 80, 0.0) != a
