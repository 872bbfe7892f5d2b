"""The Linux profile's receiver: segments that reach past the receive window.

RFC 9293 §3.10.7.4 accepts the part of a segment inside RCV.WND and trims
the rest (SA-1.5); a segment with data or a FIN is unacceptable in a zero
window.  Linux (tcp_sequence(), tcp_data_queue()) takes a segment that
overruns the window whole when nothing unread waits in the receive queue
and drops it whole when something does (LX-14), and accepts a FIN that is
all that lies beyond the window: a bare FIN enters a zero window (LX-15).
Each unit is on in ``Config.linux()`` and off in the RFC profile.
"""

from __future__ import annotations

import pytest

from finwait.tcp.config import Config
from finwait.tcp.state import State
from finwait.wire.segment import ACK, FIN, PSH

from .harness import Exchange

LINUX = Config(delayed_ack=False, recv_buffer=1000, over_window_when_empty=True,
               fin_beyond_window=True)  # fmt: skip
RFC = Config(delayed_ack=False, recv_buffer=1000)


def opened(cfg: Config) -> Exchange:
    x = Exchange(config=cfg)
    x.passive_open()
    return x


def test_profile_turns_both_on() -> None:
    cfg = Config.linux()
    assert cfg.over_window_when_empty and cfg.fin_beyond_window
    assert not Config().over_window_when_empty and not Config().fin_beyond_window


def test_over_window_segment_into_an_empty_queue_is_taken_whole() -> None:
    """LX-14: 1500 bytes into a 1000-byte window with nothing unread: all
    of it is accepted and ACKed; the window is then closed."""
    x = opened(LINUX)
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=bytes(1500))
    s = x.expect(ACK, seq=1, ack=1501)
    assert s.window == 0
    assert x.conn is not None and x.conn.recv() == bytes(1500)
    assert x.counters.get("over_window_taken") == 1


def test_rfc_profile_trims_to_the_window() -> None:
    """SA-1.5: the RFC profile keeps the 1000 bytes in the window."""
    x = opened(RFC)
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=bytes(1500))
    x.expect(ACK, seq=1, ack=1001)
    assert x.conn is not None and len(x.conn.recv()) == 1000
    assert x.counters.get("trimmed_to_window") == 1


@pytest.mark.parametrize(("cfg", "ack"), [(LINUX, 501), (RFC, 1001)])
def test_over_window_segment_with_data_waiting(cfg: Config, ack: int) -> None:
    """LX-14: with 500 bytes unread, a segment reaching past the window's
    edge is dropped whole and answered with an ACK (the RFC profile takes
    the 500 bytes that fit)."""
    x = opened(cfg)
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=bytes(500))
    x.expect(ACK, seq=1, ack=501)
    x.deliver(seq=501, ack=1, flags=PSH | ACK, payload=bytes(1000))
    x.expect(ACK, seq=1, ack=ack)
    assert x.conn is not None and len(x.conn.recv()) == ack - 1


def test_segment_beyond_the_right_edge_is_still_dropped() -> None:
    """Only a segment starting in the window (or at its edge) may overrun."""
    x = opened(LINUX)
    x.deliver(seq=1002, ack=1, flags=PSH | ACK, payload=bytes(10))
    x.expect(ACK, seq=1, ack=1)
    assert x.conn is not None and x.conn.recv() == b""


@pytest.mark.parametrize(("cfg", "ack", "state"),
                         [(LINUX, 1002, State.CLOSE_WAIT), (RFC, 1001, State.ESTABLISHED)])  # fmt: skip
def test_bare_fin_into_a_zero_window(cfg: Config, ack: int, state: State) -> None:
    """LX-15: the window is closed by 1000 unread bytes; a bare FIN at
    RCV.NXT is accepted (ACK RCV.NXT+1, CLOSE-WAIT) in the Linux profile,
    unacceptable in the RFC's (an ACK of RCV.NXT, MUST-66)."""
    x = opened(cfg)
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=bytes(1000))
    s = x.expect(ACK, seq=1, ack=1001)
    assert s.window == 0
    x.deliver(seq=1001, ack=1, flags=FIN | ACK)
    s = x.expect(ACK, seq=1, ack=ack)
    assert s.window == 0
    assert x.state is state


def test_data_with_fin_into_a_zero_window_is_dropped() -> None:
    """LX-15 covers a FIN alone past the edge: data with it is dropped, FIN
    and all, as Linux does with something unread in the queue."""
    x = opened(LINUX)
    x.deliver(seq=1, ack=1, flags=PSH | ACK, payload=bytes(1000))
    x.expect(ACK, seq=1, ack=1001)
    x.deliver(seq=1001, ack=1, flags=FIN | PSH | ACK, payload=bytes(10))
    x.expect(ACK, seq=1, ack=1001)
    assert x.state is State.ESTABLISHED
