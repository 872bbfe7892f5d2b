"""The simulator's one source of randomness: a seeded SplitMix64 generator.

Every random choice in a simulation run (link loss, duplication, reordering,
corruption, payload bytes, host secrets) comes from one integer seed, so the
same seed gives a byte-identical trace.  The core packages may not import
``random`` (docs/design.md), and ``random.Random`` would also tie the traces to
CPython's Mersenne Twister; SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) is ten lines, passes BigCrush,
and is cheap to derive independent streams from: ``derive(label)`` gives each
link and each purpose its own stream, so switching duplication on does not
change which segments are lost.
"""

from __future__ import annotations

import hashlib

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # the golden-ratio increment of SplitMix64
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def _mix(z: int) -> int:
    """SplitMix64's output function (a variant of MurmurHash3's finalizer)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _fnv1a(text: str) -> int:
    # Python's hash() of a str is salted per process; FNV-1a is stable.
    h = _FNV_OFFSET
    for byte in text.encode():
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


class Rng:
    """A seeded SplitMix64 stream: ``random()``, ``randrange(n)``, ``bernoulli(p)``."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64

    def next_u64(self) -> int:
        self._state = (self._state + _GAMMA) & _MASK64
        return _mix(self._state)

    def random(self) -> float:
        """A float uniform in [0, 1), with 53 random bits."""
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def randrange(self, n: int) -> int:
        """An int uniform in [0, n), without modulo bias (rejection sampling)."""
        if n <= 0:
            raise ValueError(f"randrange({n}): n must be positive")
        if n > _MASK64:
            raise ValueError(f"randrange({n}): n must fit in 64 bits")
        # Largest multiple of n in [0, 2**64): draws at or above it are rejected.
        limit = (1 << 64) - (1 << 64) % n
        while True:
            x = self.next_u64()
            if x < limit:
                return x % n

    def bernoulli(self, p: float) -> bool:
        """True with probability ``p``.  p <= 0 and p >= 1 draw nothing, so a
        disabled behaviour leaves the stream untouched."""
        if p <= 0.0:
            return False
        if p >= 1.0:
            return True
        return self.random() < p

    def randbytes(self, n: int) -> bytes:
        """``n`` pseudo-random bytes: SHAKE-256 (FIPS 202) seeded with 256 bits
        of this stream, so megabytes of payload cost one C call, not a
        Python loop per eight bytes."""
        if n < 0:
            raise ValueError(f"randbytes({n}): n must not be negative")
        seed = b"".join(self.next_u64().to_bytes(8, "little") for _ in range(4))
        return hashlib.shake_256(seed).digest(n)

    def derive(self, label: str) -> Rng:
        """An independent stream named ``label``; does not advance this one."""
        return Rng(_mix(self._state ^ _fnv1a(label)))
