"""SYN cookies (RFC 4987 §3.6, Linux syncookies.c) as packet exchanges: a
full SYN queue answers statelessly, a returning ACK with a valid cookie makes
the connection (MSS, and window scale and SACK through the timestamp), a
forged, stale or misdirected one is refused and counted."""

from __future__ import annotations

import pytest

from finwait.host import Host
from finwait.tcp import cookies, seqnum
from finwait.tcp.config import Config
from finwait.tcp.cookies import SynCookies
from finwait.tcp.state import State
from finwait.wire.segment import ACK, PSH, RST, SYN, Segment, TcpOptions
from tcp.harness import E_ADDR, E_PORT, P_ADDR, Exchange

TS_SYN = TcpOptions(mss=1400, wscale=9, sack_permitted=True, timestamps=(1000, 0))


def full_queue(x: Exchange, backlog: int = 1) -> None:
    """A listener whose SYN queue is full of one half-open connection."""
    x.listener = x.host.listen(E_PORT, backlog=backlog)
    for i in range(backlog):
        x.deliver(seq=77, flags=SYN, sport=50000 + i)
    x.take_segments_sent()
    assert x.counters.get("syncookies_sent", 0) == 0


def test_full_syn_queue_answers_with_a_cookie_and_keeps_no_state() -> None:
    x = Exchange()
    full_queue(x)
    before = len(x.host.conns)
    x.deliver(seq=5000, flags=SYN, sport=41000, options=TS_SYN)
    (synack,) = x.take_segments_sent()
    assert synack.flags == SYN | ACK and synack.ack == 5001
    assert len(x.host.conns) == before
    assert x.counters["syncookies_sent"] == 1
    assert x.counters["syn_queue_full"] == 1
    # MSS 1400 rounds down to the table's 1300; our own MSS is offered as usual.
    assert synack.options.mss == Config().mss
    assert synack.options.wscale is not None  # carried in the timestamp
    assert synack.options.sack_permitted
    assert synack.options.timestamps is not None
    assert synack.options.timestamps[1] == 1000


def handshake_with_cookie(x: Exchange, options: TcpOptions, sport: int = 41000) -> Segment:
    x.deliver(seq=5000, flags=SYN, sport=sport, options=options)
    (synack,) = x.take_segments_sent()
    assert synack.flags == SYN | ACK
    ts = None
    if synack.options.timestamps is not None:
        ts = TcpOptions(timestamps=(1001, synack.options.timestamps[0]))
    x.deliver(seq=5001, ack=synack.seq + 1, sport=sport, window=1000, options=ts or TcpOptions())
    return synack


def test_valid_cookie_ack_makes_the_connection_with_the_remembered_options() -> None:
    x = Exchange()
    full_queue(x)
    synack = handshake_with_cookie(x, TS_SYN)
    assert x.counters["syncookies_ok"] == 1
    assert x.listener is not None
    conn = x.listener.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.iss == synack.seq and conn.irs == 5000
    assert conn.peer_mss == 1300  # Linux msstab: the largest entry <= 1400
    assert conn.snd_wscale == 9 and conn.sack_ok and conn.ts_ok
    assert conn.snd_wnd == 1000 << 9
    x.take_segments_sent()
    # It carries data both ways like any other connection.
    x.deliver(seq=5001, ack=synack.seq + 1, sport=41000, flags=PSH | ACK, payload=b"hello",
              options=TcpOptions(timestamps=(1002, 0)))  # fmt: skip
    assert conn.recv() == b"hello"
    assert conn.send(b"world", x.now) == 5
    out = [s for s in x.take_segments_sent() if s.payload]
    assert out and out[0].payload == b"world" and out[0].seq == synack.seq + 1


def test_without_timestamps_the_cookie_carries_no_window_scale() -> None:
    x = Exchange()
    full_queue(x)
    synack = handshake_with_cookie(x, TcpOptions(mss=1460, wscale=7, sack_permitted=True))
    assert synack.options.wscale is None and not synack.options.sack_permitted
    assert synack.options.timestamps is None
    assert x.listener is not None
    conn = x.listener.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.snd_wscale == 0 and conn.rcv_wscale == 0 and not conn.sack_ok
    assert conn.peer_mss == 1460


def test_forged_cookie_acks_are_refused_counted_and_reset() -> None:
    x = Exchange()
    full_queue(x)
    x.deliver(seq=5000, flags=SYN, sport=41000)
    (synack,) = x.take_segments_sent()
    for guess in range(1, 2001):
        x.deliver(seq=5001, ack=synack.seq + 1 + guess * 7919, sport=41000)
    assert x.counters["syncookies_failed"] == 2000
    assert x.counters.get("syncookies_ok", 0) == 0
    rsts = x.take_segments_sent()
    assert len(rsts) == 2000 and all(s.flags == RST for s in rsts)
    assert len(x.host.conns) == 1  # only the half-open one that filled the queue


@pytest.mark.parametrize(
    ("change", "why"),
    [({"sport": 41001}, "another 4-tuple"), ({"seq": 5002}, "another IRS")],
)
def test_cookie_is_bound_to_the_four_tuple_and_the_peer_isn(
    change: dict[str, int], why: str
) -> None:
    x = Exchange()
    full_queue(x)
    x.deliver(seq=5000, flags=SYN, sport=41000)
    (synack,) = x.take_segments_sent()
    kw = {"seq": 5001, "sport": 41000} | change
    x.deliver(x.seg(kw["seq"], synack.seq + 1, sport=kw["sport"]))
    assert x.counters["syncookies_failed"] == 1, why
    assert x.counters.get("syncookies_ok", 0) == 0


def test_cookie_expires_after_two_counter_periods() -> None:
    x = Exchange()
    full_queue(x)
    x.now = 10.0
    x.deliver(seq=5000, flags=SYN, sport=41000)
    (synack,) = x.take_segments_sent()
    x.now = 10.0 + 61.0  # next period: still good (a slow final ACK)
    x.deliver(seq=5001, ack=synack.seq + 1, sport=41000)
    assert x.counters["syncookies_ok"] == 1
    x.deliver(seq=6000, flags=SYN, sport=41001)
    (synack2,) = x.take_segments_sent()
    x.now += cookies.MAX_AGE * cookies.PERIOD - 1  # two counter ticks later: stale
    x.deliver(seq=6001, ack=synack2.seq + 1, sport=41001)
    assert x.counters["syncookies_ok"] == 1
    assert x.counters["syncookies_failed"] == 1


def test_acks_are_not_checked_as_cookies_without_a_recent_overflow() -> None:
    x = Exchange()
    x.listen()
    x.deliver(seq=5001, ack=12345, sport=41000)
    x.expect(RST, seq=12345)
    assert "syncookies_failed" not in x.counters and x.counters["ack_to_listener"] == 1


def test_without_syncookies_a_full_queue_shuts_out_legitimate_clients() -> None:
    """The defence removed: the same flood leaves a legitimate SYN unanswered."""
    h = Host([E_ADDR], Config(delayed_ack=False), syncookies=False)
    h.listen(E_PORT, backlog=1)
    h.receive(Segment(P_ADDR, E_ADDR, 50000, E_PORT, 1, 0, SYN, 65535), 0.0)
    h.take_segments()
    h.receive(Segment(P_ADDR, E_ADDR, 41000, E_PORT, 5000, 0, SYN, 65535), 0.0)
    assert h.take_segments() == []
    assert h.counters["syn_queue_full"] == 1 and "syncookies_sent" not in h.counters


def test_accept_queue_full_drops_a_valid_cookie_ack() -> None:
    x = Exchange()
    full_queue(x)
    handshake_with_cookie(x, TcpOptions(), sport=41000)
    assert x.counters["syncookies_ok"] == 1  # the accept queue (backlog 1) now holds it
    handshake_with_cookie(x, TcpOptions(), sport=41001)
    assert x.counters["accept_queue_full"] == 1
    assert x.counters["syncookies_ok"] == 1


def test_random_guesses_match_the_cookie_bound() -> None:
    """An off-path attacker's random ACK passes with probability 2*4/2**32."""
    c = SynCookies(b"k" * 16)
    four = (E_ADDR, E_PORT, P_ADDR, 41000)
    good = c.make(four, 5000, cookies.counter(0.0), 2)
    assert c.check(four, 5000, good, 0.0) == 2
    hits = sum(
        c.check(four, 5000, (good + 0x9E3779B9 * i) & seqnum.MASK, 0.0) is not None
        for i in range(1, 20001)
    )
    assert hits == 0  # expected 20000 * 2**-29 ≈ 4e-5


@pytest.mark.parametrize(("mss", "v6", "index"), [(None, False, 0), (535, False, 0), (536, False, 0),
                         (1460, False, 3), (9000, False, 3), (1300, False, 1), (1280, True, 0),
                         (1500, True, 2), (9000, True, 3)])  # fmt: skip
def test_mss_index_rounds_down_to_the_table(mss: int | None, v6: bool, index: int) -> None:
    assert cookies.mss_index(mss, v6) == index
