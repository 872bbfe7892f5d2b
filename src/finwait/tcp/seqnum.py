"""32-bit modular sequence-number arithmetic (RFC 9293 §3.4, RFC 1982).

Sequence numbers are plain ``int`` values in ``[0, 2**32)``; every comparison
between two of them goes through these functions, never a bare ``<``: the
space wraps, and the distance between two numbers is only meaningful modulo
2**32.  Nothing here raises on any input (smoltcp panicked on hostile
sequence numbers; we do not).
"""

from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32 (``n`` may be negative)."""
    return (a + n) & MASK


def sub(a: int, b: int) -> int:
    """Signed distance ``a - b`` in ``[-2**31, 2**31)``."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def lt(a: int, b: int) -> bool:
    """``a`` comes before ``b``."""
    return ((a - b) & MASK) >= HALF


def le(a: int, b: int) -> bool:
    return a == b or ((a - b) & MASK) >= HALF


def gt(a: int, b: int) -> bool:
    return ((b - a) & MASK) >= HALF


def ge(a: int, b: int) -> bool:
    return a == b or ((b - a) & MASK) >= HALF


def in_window(x: int, start: int, size: int) -> bool:
    """``start <= x < start + size`` in sequence space (false when ``size`` is 0)."""
    return ((x - start) & MASK) < size


def between(lo: int, x: int, hi: int) -> bool:
    """``lo <= x <= hi`` in sequence space, with ``lo <= hi`` assumed."""
    return ((x - lo) & MASK) <= ((hi - lo) & MASK)
