"""A connection's timers: one structure of named absolute deadlines.

RFC 9293 §3.8 names the timers a TCB needs; finwait keeps ten, each an
absolute deadline in seconds or ``None`` when not armed:

* ``RETRANSMIT`` — RFC 6298 §5 (and the SYN's, §3.8.1);
* ``PERSIST`` — zero-window probing, §3.8.6.1;
* ``DELAYED_ACK`` — RFC 1122 §4.2.3.2, RFC 9293 §3.8.6.3;
* ``KEEPALIVE`` — §3.8.4;
* ``FIN_WAIT_2`` — an orphaned FIN-WAIT-2 (Linux ``tcp_fin_timeout``);
* ``TIME_WAIT`` — 2×MSL, §3.10.8;
* ``USER_TIMEOUT`` — §3.8.3;
* ``LOSS_PROBE`` — the tail-loss probe timeout, PTO (RFC 8985 §7.2);
* ``REORDER`` — RACK's reordering timer (RFC 8985 §6.3);
* ``PACE`` — when pacing lets the next segment go (``Config.pacing``).

``arm`` sets a deadline, ``arm_once`` sets it only when not armed,
``cancel`` disarms, ``next`` is the earliest armed deadline (what the Host
schedules), ``fire`` disarms a timer that is due and says so, and ``clear``
disarms them all (on entering TIME-WAIT, where only the 2×MSL timer is
re-armed, and when the TCB is deleted).
"""

from __future__ import annotations

RETRANSMIT = 0
PERSIST = 1
DELAYED_ACK = 2
KEEPALIVE = 3
FIN_WAIT_2 = 4
TIME_WAIT = 5
USER_TIMEOUT = 6
LOSS_PROBE = 7
REORDER = 8
PACE = 9
NAMES = ("retransmit", "persist", "delayed_ack", "keepalive", "fin_wait_2", "time_wait",
         "user_timeout", "loss_probe", "reorder", "pace")  # fmt: skip

_NONE: list[float | None] = [None] * len(NAMES)


class Timers:
    """Ten named deadlines; see the module docstring."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: list[float | None] = _NONE[:]  # indexed by RETRANSMIT .. PACE

    def arm(self, which: int, when: float) -> None:
        self.at[which] = when

    def arm_once(self, which: int, when: float) -> None:
        """Arm ``which`` unless it is armed already."""
        at = self.at
        if at[which] is None:
            at[which] = when

    def cancel(self, which: int) -> None:
        self.at[which] = None

    def armed(self, which: int) -> bool:
        return self.at[which] is not None

    def deadline(self, which: int) -> float | None:
        return self.at[which]

    def next(self) -> float | None:
        """The earliest armed deadline, or None."""
        best: float | None = None
        for t in self.at:
            if t is not None and (best is None or t < best):
                best = t
        return best

    def fire(self, which: int, now: float) -> bool:
        """True (and ``which`` disarmed) when ``which`` is due at ``now``."""
        at = self.at
        t = at[which]
        if t is None or now < t:
            return False
        at[which] = None
        return True

    def clear(self) -> None:
        self.at[:] = _NONE

    def describe(self) -> dict[str, float]:
        """The armed deadlines by name (for tests and debugging)."""
        return {NAMES[i]: t for i, t in enumerate(self.at) if t is not None}


def tick_expiry(now: float, delay: float, hz: int) -> float:
    """When a Linux timer armed at ``now`` for ``delay`` seconds fires, on a
    kernel ticking ``hz`` times a second: the delay is rounded up to whole
    ticks (``usecs_to_jiffies()``), and the timer wheel puts the expiry in
    a bucket of its level — 8**level ticks, level 0 below 63 ticks, each
    level 8 times wider — rounded up to the bucket's end, never early
    (``calc_index()``).  Tick 0 is at time 0."""
    clk = int(now * hz + 1e-9)
    ticks = max(1, -int(-(delay * hz - 1e-9) // 1))
    expires = clk + ticks
    shift = 0
    start = 63
    while ticks >= start and shift < 24:
        shift += 3
        start <<= 3
    return (((expires >> shift) + 1) << shift) / hz
