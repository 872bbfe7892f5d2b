"""Every defence of the engine, checked twice: once as it ships (the check
passes), and once with the defence removed (the same check must fail).  The
second half is what makes the first worth having: a test that still passes
without the rule it guards guards nothing.

Defences: RFC 5961 §3 (in-window RST), §4 (SYN in a synchronized state),
§5 (ACK range) and the challenge-ACK rate limit (Linux tcp_invalid_ratelimit,
0.5 s per connection); RFC 6528 ISNs; RFC 1337 (RST in TIME-WAIT); the
orphaned FIN-WAIT-2 timeout (Linux tcp_fin_timeout, 60 s); the bounded
out-of-order queue (SHLD-31); the bounded SYN and accept queues (RFC 4987
§3.2); the connection-table limit with a counted refusal.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from finwait.host import Host
from finwait.tcp.config import Config
from finwait.tcp.connection import Connection
from finwait.tcp.state import State
from finwait.tcp.verdict import Verdict
from finwait.wire.segment import ACK, FIN, PSH, RST, SYN, Segment
from tcp.harness import E_ADDR, E_PORT, P_ADDR, TEST_CONFIG, Exchange

Check = Callable[[Config], None]


def seed(config: Config = TEST_CONFIG) -> Exchange:
    """The seed's connection, seen from host A: SND.NXT 248, RCV.NXT 50."""
    x = Exchange(config=config)
    x.established(snd_nxt=248, rcv_nxt=50)
    return x


# -- the checks ---------------------------------------------------------------


def rst_in_window_not_exact(config: Config) -> None:
    """RFC 5961 §3.2: an in-window RST not at RCV.NXT gets a challenge ACK."""
    x = seed(config)
    x.deliver(seq=51, flags=RST)
    x.expect(ACK, seq=248, ack=50)
    assert x.state is State.ESTABLISHED
    assert x.counters["challenge_ack_rst"] == 1


def syn_in_synchronized_state(config: Config) -> None:
    """RFC 5961 §4.2: any SYN in a synchronized state gets a challenge ACK."""
    x = seed(config)
    x.deliver(seq=60, flags=SYN)
    x.expect(ACK, seq=248, ack=50)
    assert x.state is State.ESTABLISHED
    assert x.counters["challenge_ack_syn"] == 1


def ack_too_old_carries_no_data(config: Config) -> None:
    """RFC 5961 §5.2: an ACK below SND.UNA - MAX.SND.WND is dropped with an
    ACK, and the data riding on it is not delivered (blind data injection)."""
    x = seed(config)
    x.deliver(seq=50, ack=248 - 70000, flags=PSH | ACK, payload=b"evil")
    x.expect(ACK, seq=248, ack=50)
    assert x.conn is not None and x.conn.readable == 0
    assert x.counters["ack_too_old"] == 1


def challenge_acks_rate_limited(config: Config) -> None:
    """Linux tcp_invalid_ratelimit: one challenge ACK per 0.5 s per connection."""
    x = seed(config)
    for i in range(100):  # 100 spoofed SYNs in one second
        x.now = i * 0.01
        x.deliver(seq=60 + i, flags=SYN)
    acks = x.take_segments_sent()
    assert len(acks) == 2, len(acks)  # t = 0 and t = 0.5
    assert x.counters["ack_ratelimited"] == 98


def isns_rfc6528(config: Config) -> None:
    """RFC 6528 §3: ISN = M + F(4-tuple, secret); M a 4 µs clock."""
    h = Host([E_ADDR], config, isn_key=b"secret-one......")
    iss = []
    for i in range(50):
        c = h.connect(P_ADDR, 80, float(i), sport=40000 + i)
        iss.append(c.iss)
    assert len(set(iss)) == 50
    # Not M + a constant: the differences are not the clock's 250,000 ticks.
    steps = {(b - a) % 2**32 for a, b in itertools.pairwise(iss)}
    assert len(steps) > 40
    same = Host([E_ADDR], config, isn_key=b"secret-one......")
    a = same._isn(E_ADDR, 40000, P_ADDR, 80, 0.0)
    b = same._isn(E_ADDR, 40000, P_ADDR, 80, 2.0)
    assert (b - a) % 2**32 == 500_000  # same 4-tuple: advances with the clock
    other = Host([E_ADDR], config, isn_key=b"secret-two......")
    assert other._isn(E_ADDR, 40000, P_ADDR, 80, 0.0) != a  # the secret matters


def rst_ignored_in_time_wait(config: Config) -> None:
    """RFC 1337 (TW-4): a RST does not cut TIME-WAIT short."""
    x = seed(config)
    x.close_first()
    x.deliver(seq=50, ack=249, flags=FIN | ACK)
    x.expect(ACK, seq=249, ack=51)
    assert x.state is State.TIME_WAIT
    x.deliver(seq=51, flags=RST)
    assert x.state is State.TIME_WAIT
    x.deliver(seq=50, ack=249, flags=FIN | ACK)  # still there to re-ACK a lost ACK
    x.expect(ACK, seq=249, ack=51)


def orphaned_fin_wait_2_times_out(config: Config) -> None:
    """Linux tcp_fin_timeout: a peer that never sends its FIN after a
    close(discard=True) cannot hold the connection past 60 s."""
    x = seed(config)
    assert x.conn is not None
    x.conn.close(x.now, discard=True)
    x.expect(FIN | ACK, seq=248, ack=50)
    x.deliver(seq=50, ack=249)
    assert x.state is State.FIN_WAIT_2
    x.advance(59.9)
    assert x.state is State.FIN_WAIT_2
    x.advance(0.2)
    assert x.conn.state is State.CLOSED
    assert x.counters["fin_wait_2_timeout"] == 1
    assert not x.host.conns


def ooo_queue_bounded(config: Config) -> None:
    """SHLD-31: 5,000 one-byte segments far ahead hold at most
    max_ooo_segments blocks and never more bytes than the window."""
    x = seed(config)
    assert x.conn is not None
    for i in range(5000):
        x.deliver(seq=50 + 2 + 2 * i, ack=248, payload=b"z")
    assert len(x.conn._ooo) <= 256
    assert x.conn._ooo.held_bytes <= x.conn.rcv_wnd
    assert x.counters["ooo_queue_full"] >= 5000 - 256


def syn_queue_bounded(config: Config) -> None:
    """RFC 4987 §3.2: half-open connections are bounded by the backlog."""
    x = Exchange(config=config)
    x.listener = x.host.listen(E_PORT, backlog=8)
    for i in range(1000):
        x.deliver(seq=i, flags=SYN, sport=1024 + i)
    assert len(x.host.conns) == 8
    assert x.counters["syn_queue_full"] == 992


def accept_queue_bounded(config: Config) -> None:
    """Linux tcp_check_req(): with the accept queue full, the final ACK is
    dropped (the client retransmits it) rather than the queue growing."""
    x = Exchange(config=config)
    x.listener = x.host.listen(E_PORT, backlog=2)
    for i in range(4):
        x.deliver(seq=1000, flags=SYN, sport=2000 + i)
        x.deliver(seq=1001, ack=1, sport=2000 + i)
    assert len(x.listener.accept_queue) == 2
    assert x.counters["accept_queue_full"] == 2
    assert len(x.host.conns) == 4  # the other two wait in SYN-RECEIVED


def connection_table_limited(config: Config) -> None:
    """A Host's table has a limit; a refusal is counted (and raised to a user)."""
    h = Host([E_ADDR], config, max_connections=10)
    h.listen(E_PORT, backlog=1000)
    for i in range(50):
        h.receive(Segment(P_ADDR, E_ADDR, 3000 + i, E_PORT, i, 0, SYN, 65535), 0.0)
    assert len(h.conns) == 10
    assert h.counters["connection_table_full"] == 40
    with pytest.raises(OSError, match="table full"):
        h.connect(P_ADDR, 9, 0.0)


# -- how each defence is removed ----------------------------------------------


def _rfc793_rst(mp: pytest.MonkeyPatch) -> None:
    orig = Connection._on_rst

    def any_in_window_rst_resets(self: Connection, seg: Segment, now: float) -> None:
        orig(self, seg._replace(seq=self.rcv_nxt), now)

    mp.setattr(Connection, "_on_rst", any_in_window_rst_resets)


def _rfc793_syn(mp: pytest.MonkeyPatch) -> None:
    orig = Connection._challenge_ack

    def syn_resets(self: Connection, seg: Segment, now: float, verdict: Verdict) -> None:
        if verdict is Verdict.CHALLENGE_ACK_SYN:
            self.abort(now)  # RFC 793: a SYN in the window is an error, reset
        else:
            orig(self, seg, now, verdict)

    mp.setattr(Connection, "_challenge_ack", syn_resets)


def _no_ack_range(mp: pytest.MonkeyPatch) -> None:
    orig = Connection._step_ack

    def any_old_ack(self: Connection, seg: Segment, now: float, ack_only: bool = False) -> bool:
        self.max_snd_wnd = 2**31 - 1  # every ACK below SND.UNA is "recent enough"
        return bool(orig(self, seg, now, ack_only))

    mp.setattr(Connection, "_step_ack", any_old_ack)


def _host_attr(name: str, value: Any) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(mp: pytest.MonkeyPatch) -> None:
        orig = Host.__init__

        def init(self: Host, *a: Any, **kw: Any) -> None:
            orig(self, *a, **kw)
            setattr(self, name, value)

        mp.setattr(Host, "__init__", init)

    return patch


def _listener_backlog_ignored(mp: pytest.MonkeyPatch) -> None:
    orig = Host.listen

    def listen(self: Host, port: int, addr: str = "", backlog: int = 128) -> Any:
        return orig(self, port, addr, 10**9)

    mp.setattr(Host, "listen", listen)


def _accept_queue_unchecked(mp: pytest.MonkeyPatch) -> None:
    from finwait import host

    orig = host.Host.receive

    def receive(self: Host, seg: Segment, now: float) -> None:
        for lst in self.listeners.values():
            lst.backlog = 10**9 if seg.flags & ACK else 2
        orig(self, seg, now)

    mp.setattr(host.Host, "receive", receive)


def _no_isn_hash(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(Host, "_hash32", lambda self, tag, *parts: 0)


def _config(**kw: Any) -> Callable[[Config], Config]:
    return lambda c: Config(**{**{f: getattr(c, f) for f in c.__dataclass_fields__}, **kw})


class Defence(NamedTuple):
    check: Check
    remove_by_patch: Callable[[pytest.MonkeyPatch], None] | None = None
    remove_by_config: Callable[[Config], Config] | None = None


DEFENCES: dict[str, Defence] = {
    "rfc5961-rst": Defence(rst_in_window_not_exact, _rfc793_rst),
    "rfc5961-syn": Defence(syn_in_synchronized_state, _rfc793_syn),
    "rfc5961-ack": Defence(ack_too_old_carries_no_data, _no_ack_range),
    "challenge-ack-rate-limit": Defence(
        challenge_acks_rate_limited, remove_by_config=_config(challenge_ack_interval=0.0)
    ),
    "rfc6528-isn": Defence(isns_rfc6528, _no_isn_hash),
    "rfc1337": Defence(rst_ignored_in_time_wait, remove_by_config=_config(rfc1337=False)),
    "fin-wait-2-timeout": Defence(
        orphaned_fin_wait_2_times_out, remove_by_config=_config(fin_wait_2_timeout=None)
    ),
    "ooo-bound": Defence(ooo_queue_bounded, remove_by_config=_config(max_ooo_segments=10**9)),
    "syn-queue-bound": Defence(syn_queue_bounded, _listener_backlog_ignored),
    "accept-queue-bound": Defence(accept_queue_bounded, _accept_queue_unchecked),
    "connection-table-limit": Defence(
        connection_table_limited, _host_attr("max_connections", 10**9)
    ),
}


@pytest.mark.parametrize("name", DEFENCES)
def test_defence_holds(name: str) -> None:
    DEFENCES[name].check(TEST_CONFIG)


@pytest.mark.parametrize("name", DEFENCES)
def test_check_fails_with_the_defence_removed(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    d = DEFENCES[name]
    config = TEST_CONFIG
    if d.remove_by_config is not None:
        config = d.remove_by_config(TEST_CONFIG)
    if d.remove_by_patch is not None:
        d.remove_by_patch(monkeypatch)
    with pytest.raises(AssertionError):
        d.check(config)


def test_challenge_ack_interval_is_configurable() -> None:
    x = seed(Config(delayed_ack=False, challenge_ack_interval=2.0))
    for i in range(100):
        x.now = i * 0.05  # 5 s of spoofed SYNs
        x.deliver(seq=60 + i, flags=SYN)
    assert len(x.take_segments_sent()) == 3  # t = 0, 2, 4
