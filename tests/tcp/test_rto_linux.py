"""The Linux profile's RTO estimator (Linux tcp_rtt_estimator(),
__tcp_set_rto()) beside RFC 6298's (D-11)."""

from __future__ import annotations

import pytest

from finwait.tcp.config import Config
from finwait.tcp.rto import RttEstimator


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
