"""The seeded PRNG: reproducible, unbiased enough, independent derived streams."""

from __future__ import annotations

import pytest

from finwait.sim.rng import Rng


def test_splitmix64_reference_values() -> None:
    # First outputs of SplitMix64 from state 0 (Vigna's reference splitmix64.c).
    rng = Rng(0)
    assert [rng.next_u64() for _ in range(3)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]


def test_same_seed_same_stream_different_seed_different_stream() -> None:
    a, b, c = Rng(42), Rng(42), Rng(43)
    xs = [a.random() for _ in range(100)]
    assert xs == [b.random() for _ in range(100)]
    assert xs != [c.random() for _ in range(100)]
    assert all(0.0 <= x < 1.0 for x in xs)


def test_randrange_stays_in_bounds_and_covers_the_range() -> None:
    rng = Rng(7)
    draws = [rng.randrange(6) for _ in range(6000)]
    assert set(draws) == set(range(6))
    # Each face about 1000 times; 5 sigma is about 144.
    for face in range(6):
        assert abs(draws.count(face) - 1000) < 150


@pytest.mark.parametrize("n", [0, -1, 1 << 64])
def test_randrange_rejects_bad_bounds(n: int) -> None:
    with pytest.raises(ValueError):
        Rng(1).randrange(n)


def test_bernoulli_frequency_and_disabled_behaviour_draws_nothing() -> None:
    rng = Rng(3)
    hits = sum(rng.bernoulli(0.3) for _ in range(10_000))
    assert abs(hits - 3000) < 5 * 46  # sd = sqrt(10000 * 0.3 * 0.7) ~ 46
    a, b = Rng(9), Rng(9)
    assert not a.bernoulli(0.0)
    assert a.bernoulli(1.0)
    assert a.next_u64() == b.next_u64()


def test_derive_is_independent_and_does_not_advance_the_parent() -> None:
    parent, twin = Rng(5), Rng(5)
    x = parent.derive("loss")
    y = parent.derive("dup")
    assert parent.next_u64() == twin.next_u64()
    assert x.next_u64() != y.next_u64()
    assert Rng(5).derive("loss").next_u64() == Rng(5).derive("loss").next_u64()


def test_randbytes() -> None:
    assert len(Rng(1).randbytes(13)) == 13
    assert Rng(1).randbytes(13) == Rng(1).randbytes(13)
    assert Rng(1).randbytes(0) == b""
    with pytest.raises(ValueError):
        Rng(1).randbytes(-1)
