"""A device that takes no packet (LX-18): what the engine does when its
transmissions fail, as Linux's TCP does when tcp_transmit_skb() gets
NET_XMIT_DROP from a queue of limit 0 (``Host.device_drops``).

The handshake happens at t = 0 (an RTT sample of 0: the RTO is its 200 ms
floor); timers fire at the exact time (no ``hz``)."""

from __future__ import annotations

from pytest import approx

from finwait.tcp.config import Config
from finwait.tcp.connection import Connection
from finwait.tcp.events import TimedOut
from finwait.tcp.state import State
from finwait.tcp.timers import PERSIST, RETRANSMIT
from finwait.wire.segment import ACK, PSH, TcpOptions

from .harness import Exchange

MSS = 1000


def setup(**changes: object) -> Exchange:
    x = Exchange(config=Config(delayed_ack=False, **changes))  # type: ignore[arg-type]
    x.passive_open(TcpOptions(mss=MSS))
    return x


def c(x: Exchange) -> Connection:
    assert x.conn is not None
    return x.conn


def test_a_refused_write_is_not_sent_and_probed_every_500_ms() -> None:
    """Nothing in flight: the segment is not sent (SND.NXT stays), no
    retransmission timer runs; the probe timer (the RTO, 200 ms here) and
    then every 500 ms without backoff try again, and once the device takes
    packets the next try sends the data."""
    x = setup()
    x.host.device_drops = True
    c(x).send(b"a" * 100, x.now)
    x.expect_nothing()
    conn = c(x)
    assert conn.snd_nxt == conn.snd_max == 1
    at = conn.timers.at
    assert at[RETRANSMIT] is None and at[PERSIST] == approx(0.2)
    x.advance(0.2)
    assert conn._probes == 1 and at[PERSIST] == approx(0.7) and conn.rtt.backoff == 0
    x.advance(1.0)
    assert conn._probes == 3 and at[PERSIST] == approx(1.7)
    x.expect_nothing()
    x.host.device_drops = False
    x.advance(0.5)
    x.expect(ACK | PSH, seq=1, ack=1, length=100)
    assert at[PERSIST] is None and at[RETRANSMIT] is not None


def test_user_timeout_counts_from_the_first_probe() -> None:
    """With a 2 s user timeout, the connection ends 2 s after the first
    probe (t = 0.2), not 2 s after the write: probes at 0.2, 0.7, 1.2,
    1.7, the end at 2.2."""
    x = setup(user_timeout=2.0)
    x.host.device_drops = True
    c(x).send(b"a" * 100, x.now)
    x.advance(2.19)
    assert c(x).state is State.ESTABLISHED and c(x)._probes == 4
    x.advance(0.02)
    assert c(x).state is State.CLOSED
    assert any(isinstance(e, TimedOut) for e in x.take_events())
    x.expect_nothing()


def test_the_probe_clamps_to_the_user_timeout() -> None:
    """The last wait is cut to what is left of the user timeout
    (tcp_clamp_probe0_to_user_timeout()): 1.2 s from the first probe at
    t = 0.2 ends it at 1.4, not at the 500 ms step after it (1.7)."""
    x = setup(user_timeout=1.2)
    x.host.device_drops = True
    c(x).send(b"a" * 100, x.now)
    x.advance(1.39)
    assert c(x).state is State.ESTABLISHED
    x.advance(0.02)
    assert c(x).state is State.CLOSED


def test_a_refused_retransmission_does_not_back_off() -> None:
    """Data in flight, then the device refuses: the RTO's resend fails and
    is tried again every 500 ms with the RTO as it was; the first resend
    that goes backs it off once."""
    x = setup()
    c(x).send(b"a" * 100, x.now)
    x.expect(ACK | PSH, seq=1, ack=1, length=100)
    x.host.device_drops = True
    x.advance(0.2)  # the RTO: refused
    x.expect_nothing()
    conn = c(x)
    assert conn.rtt.backoff == 0 and conn.timers.at[RETRANSMIT] == approx(0.7)
    x.advance(1.0)
    assert conn.rtt.backoff == 0 and conn.timers.at[RETRANSMIT] == approx(1.7)
    x.host.device_drops = False
    x.advance(0.5)
    x.expect(ACK | PSH, seq=1, ack=1, length=100)
    assert conn.rtt.backoff == 1 and conn.timers.at[RETRANSMIT] == approx(2.1)


def test_acks_are_lost_but_count_as_sent() -> None:
    """Data arrives while the device refuses: it is taken, the ACK is lost
    on the way out and not owed any more (Linux acknowledges before it
    transmits); the next segment sent carries the new RCV.NXT."""
    x = setup()
    x.host.device_drops = True
    x.deliver(seq=1, ack=1, flags=ACK | PSH, payload=b"b" * 10)
    x.expect_nothing()
    assert c(x).recv() == b"b" * 10 and c(x).rcv_nxt == 11
    assert x.host.counters["local_drop"] == 1
    x.host.device_drops = False
    c(x).send(b"a", x.now)
    x.expect(ACK | PSH, seq=1, ack=11, length=1)


def test_a_refused_fast_retransmit_is_not_counted() -> None:
    """Linux profile with SACK: a segment RACK deems lost is resent only if
    the device takes it; refused, it stays lost and not retransmitted (as
    the upstream cubic-rack-reo-timeout-retrans-failed-incoming-data
    asserts against Linux)."""
    cfg = Config.linux(delayed_ack=False, quick_acks=0, hz=None)
    x = Exchange(config=cfg)
    x.passive_open(TcpOptions(mss=MSS, sack_permitted=True))
    x.advance(0.1)
    c(x).send(bytes(2 * MSS), x.now)
    assert len(x.take_segments_sent()) == 2
    x.host.device_drops = True
    x.advance(0.1)
    x.deliver(seq=1, ack=1, options=TcpOptions(sack_blocks=((1 + MSS, 1 + 2 * MSS),)))
    x.advance(0.05)  # past RACK's reordering timer, before the RTO (t = 0.3)
    rack = c(x)._rack
    assert rack is not None
    assert (rack.lost_out, rack.retrans_out, rack.sacked_out) == (1, 0, 1)
    assert c(x).cc.in_recovery and x.host.counters["local_drop"] >= 1
    x.expect_nothing()
