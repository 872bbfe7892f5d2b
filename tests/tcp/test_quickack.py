"""The Linux profile's quick ACKs (Config.quick_acks, Linux quick-ACK mode):
at the start of a connection data is ACKed at once, not after the delayed-ACK
timer; an interactive exchange (we answer within the delay) falls back to
delayed ACKs; a bare FIN is ACKed at once, a FIN carrying data with the
delay.  The RFC profile delays from the first segment (RFC 1122 §4.2.3.2)."""

from __future__ import annotations

from finwait.tcp.config import Config
from finwait.wire.segment import ACK, FIN, PSH, RST

from .harness import Exchange

LINUX = Config.linux()
RFC = Config()


def _open(config: Config) -> Exchange:
    x = Exchange(config=config)
    x.passive_open()
    return x


def test_first_data_acked_at_once_in_the_linux_profile() -> None:
    x = _open(LINUX)
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=b"a" * 100)
    x.expect(ACK, seq=1, ack=101)
    x.deliver(seq=101, ack=1, flags=PSH | ACK, payload=b"b" * 100)
    x.expect(ACK, seq=1, ack=201)


def test_rfc_profile_delays_the_first_ack() -> None:
    x = _open(RFC)
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=b"a" * 100)
    x.expect_nothing()
    x.advance(RFC.delayed_ack_timeout)
    x.expect(ACK, seq=1, ack=101)


def test_quick_acks_run_out() -> None:
    x = _open(Config.linux(quick_acks=2))
    for i in range(2):
        x.deliver(seq=1 + 10 * i, ack=1, flags=PSH | ACK, payload=b"a" * 10)
        x.expect(ACK, seq=1, ack=11 + 10 * i)
    x.deliver(seq=21, ack=1, flags=PSH | ACK, payload=b"a" * 10)
    x.expect_nothing()  # the third waits for the delayed-ACK timer
    x.advance(LINUX.delayed_ack_timeout)
    x.expect(ACK, seq=1, ack=31)


def test_interactive_exchange_delays_acks_until_the_timer_fires_alone() -> None:
    x = _open(LINUX)
    assert x.conn is not None
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=b"q" * 10)
    x.expect(ACK, seq=1, ack=11)
    x.advance(0.005)
    x.conn.send(b"r" * 10, x.now)  # a reply within the delay: pingpong
    x.expect(PSH | ACK, seq=1, ack=11, length=10)
    x.deliver(seq=11, ack=11, flags=PSH | ACK, payload=b"q" * 10)
    x.expect_nothing()
    x.advance(LINUX.delayed_ack_timeout)
    x.expect(ACK, seq=11, ack=21)  # the timer fired with nothing to carry it
    x.deliver(seq=21, ack=11, flags=PSH | ACK, payload=b"q" * 10)
    x.expect(ACK, seq=11, ack=31)  # so quick ACKs again


def test_bare_fin_acked_at_once_fin_with_data_delayed() -> None:
    x = _open(LINUX)
    x.deliver(seq=1, ack=1, flags=FIN | ACK)
    x.expect(ACK, seq=1, ack=2)
    y = _open(LINUX)
    y.deliver(seq=1, ack=1, flags=FIN | PSH | ACK, payload=b"a" * 100)
    y.expect_nothing()
    y.advance(LINUX.delayed_ack_timeout)
    y.expect(ACK, seq=1, ack=102)


def test_linux_profile_values() -> None:
    assert LINUX.quick_acks == 16 and LINUX.initial_window_segments == 10
    assert RFC.quick_acks == 0
    assert Config.linux(quick_acks=3).quick_acks == 3


def test_abort_rst_carries_ack_in_the_linux_profile() -> None:
    x = _open(LINUX)
    assert x.conn is not None
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=b"a" * 10)
    x.expect(ACK, seq=1, ack=11)
    x.conn.abort(x.now)
    x.expect(RST | ACK, seq=1, ack=11)  # Linux tcp_send_active_reset()
    y = _open(RFC)
    assert y.conn is not None
    y.conn.abort(y.now)
    y.expect(RST, seq=1)  # RFC 9293 §3.10.5: <SEQ=SND.NXT><CTL=RST>


def _slow_start_burst(config: Config) -> int:
    """Segments sent after the peer ACKs two of the first ten."""
    x = Exchange(config=config)
    x.passive_open()
    assert x.conn is not None
    x.conn.send(bytes(30 * 536), x.now)
    first = x.take_segments_sent()
    assert len(first) == 10 and all(len(s.payload) == 536 for s in first)  # IW10
    x.deliver(seq=1, ack=1 + 2 * 536)
    return len(x.take_segments_sent())


def test_slow_start_counts_bytes_in_the_linux_profile() -> None:
    # Two segments ACKed: cwnd 10 -> 12 (RFC 3465, Linux tcp_slow_start()),
    # eight in flight, four new segments; RFC 5681's one SMSS per ACK: three.
    assert _slow_start_burst(Config.linux(delayed_ack=False)) == 4
    assert _slow_start_burst(Config(initial_window_segments=10, delayed_ack=False)) == 3
