"""The Linux profile's RTO estimator (Linux tcp_rtt_estimator(),
__tcp_set_rto()) beside RFC 6298's (D-11)."""

from __future__ import annotations

import pytest

from finwait.tcp.config import Config
from finwait.tcp.rto import RttEstimator
from finwait.tcp.timers import tick_expiry

from .harness import Exchange


def steady(est: RttEstimator, rtt: float, rounds: int) -> None:
    for i in range(rounds):
        est.sample(rtt, una=100 * (i + 1), nxt=100 * (i + 2))


def test_first_sample_gives_three_rtts() -> None:
    est = RttEstimator(1.0, 0.2, 120.0, linux=True)
    est.sample(0.1, una=1, nxt=100)
    assert est.rto == pytest.approx(0.3)  # "make sure rto = 3*rtt"


def test_steady_path_keeps_srtt_plus_rto_min() -> None:
    """The floor is on the variance term: a steady 100 ms path keeps an RTO
    of 300 ms (upstream scripts: "RTO = RTT + 200ms"); RFC 6298 with the
    same floor lets it fall to 200 ms."""
    linux = RttEstimator(1.0, 0.2, 120.0, linux=True)
    rfc = RttEstimator(1.0, 0.2, 120.0)
    linux.sample(0.1, una=1, nxt=100)
    rfc.sample(0.1)
    steady(linux, 0.1, 30)
    for _ in range(30):
        rfc.sample(0.1)
    assert linux.rto == pytest.approx(0.3, abs=1e-6)
    assert rfc.rto == pytest.approx(0.2, abs=1e-6)


def test_falling_rtt_moves_the_deviation_less() -> None:
    """A sample below SRTT changes the deviation eight times less than one
    above it by the same amount."""
    down = RttEstimator(1.0, 0.0, 120.0, linux=True)
    up = RttEstimator(1.0, 0.0, 120.0, linux=True)
    for est in (down, up):
        est.sample(0.1, una=1, nxt=100)
        steady(est, 0.1, 20)
    base = down.rttvar
    down.sample(0.02, una=5000, nxt=5100)
    up.sample(0.18, una=5000, nxt=5100)
    assert up.rttvar - base > 5 * abs(down.rttvar - base)


def test_profile_selects_it() -> None:
    assert Config.linux().rto_linux and not Config().rto_linux


@pytest.mark.parametrize(
    ("now", "delay", "hz", "fires"),
    [
        (2.2, 0.29375, 250, 2.528),  # 74 ticks: level 1, buckets of 8 ticks
        (2.2, 0.29375, 1000, 2.496),  # 294 ticks: level 1, buckets of 8 ms
        (0.02, 0.21, 250, 0.236),  # 53 ticks: level 0, the next tick after
        (0.0, 1.0, 1000, 1.024),  # 1000 ticks: level 2, buckets of 64 ms
    ],
)
def test_tick_expiry_on_the_timer_wheel(now: float, delay: float, hz: int, fires: float) -> None:
    """Linux timers fire on a tick, in the timer wheel's bucket, never early."""
    assert tick_expiry(now, delay, hz) == pytest.approx(fires)


def rexmit_times(cfg: Config) -> list[float]:
    x = Exchange(config=cfg)
    x.established(snd_nxt=1, rcv_nxt=1)
    assert x.conn is not None
    x.conn.send(b"x" * 100, x.now)
    x.take_segments_sent()
    start = x.now
    times: list[float] = []
    while len(times) < 2:
        x.advance(0.001)
        if x.take_segments_sent():
            times.append(round(x.now - start, 3))
    return times


def test_retransmissions_on_linux_ticks() -> None:
    """With ``hz`` the RTO (200 ms, then 400 ms) fires when a Linux
    kernel's would: 200 ms is 50 ticks at 250 Hz (level 0: the tick after),
    200 at 1000 Hz (level 1: the end of an 8-tick bucket); the backed-off
    400 ms is level 1 at both.  Without, exactly on time."""
    assert rexmit_times(Config()) == [0.2, 0.6]
    assert rexmit_times(Config(hz=250)) == [0.204, 0.608]
    assert rexmit_times(Config(hz=1000)) == [0.208, 0.616]
    assert Config.linux().hz == 1000 and Config().hz is None
