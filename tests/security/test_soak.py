"""Randomized simulated connections (see soak.py): 300 in the normal suite,
10,000 under ``-m soak`` (about a minute on the 2-core CI machine)."""

from __future__ import annotations

import pytest

from .soak import soak


def _run(n: int, seed: int) -> None:
    r = soak(n, seed)
    assert not r.failures, "\n".join(r.failures[:10])
    assert r.runs == n
    assert r.outcomes["closed"] > n  # most releases are graceful on both sides
    assert r.bytes_checked > 0


def test_soak_small() -> None:
    _run(300, seed=7)


@pytest.mark.soak
def test_soak_10000() -> None:
    _run(10_000, seed=2024)
