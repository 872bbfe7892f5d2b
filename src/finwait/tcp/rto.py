"""Retransmission timeout estimation (RFC 6298).

SRTT and RTTVAR from samples (Karn's algorithm is the caller's job: never
feed a sample from a retransmitted segment unless it was timed by TSecr,
RFC 7323 §4), RTO with a configurable floor and ceiling, and exponential
backoff (§5.5) that the next valid sample undoes.
"""

from __future__ import annotations

ALPHA = 1 / 8  # RFC 6298 §2.3
BETA = 1 / 4
K = 4
CLOCK_G = 0.001  # our timer granularity G (1 ms)


class RttEstimator:
    __slots__ = ("_backoff", "_base", "min_rtt", "rto", "rto_max", "rto_min", "rttvar", "srtt")

    def __init__(self, initial: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.min_rtt: float | None = None  # the least sample (RACK's min_RTT, RFC 8985)
        self.rttvar = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max
        self._base = initial  # §2.1: RTO before any sample
        self._backoff = 0
        self.rto = 0.0  # the current RTO, kept up to date (read for every segment sent)
        self._update()

    def sample(self, rtt: float) -> None:
        """A round-trip measurement R (§2.2, §2.3); clears the backoff."""
        if rtt < 0.0:
            rtt = 0.0
        srtt = self.srtt
        if srtt is None:
            self.srtt = self.min_rtt = srtt = rtt
            self.rttvar = rttvar = rtt / 2
        else:
            self.rttvar = rttvar = (1 - BETA) * self.rttvar + BETA * abs(srtt - rtt)
            self.srtt = srtt = (1 - ALPHA) * srtt + ALPHA * rtt
            if rtt < self.min_rtt:  # type: ignore[operator]
                self.min_rtt = rtt
        var = K * rttvar
        self._base = base = srtt + (var if var > CLOCK_G else CLOCK_G)
        self._backoff = 0
        # _update() with no backoff, written out: this runs on every ACK.
        rto = base if base > self.rto_min else self.rto_min
        self.rto = rto if rto < self.rto_max else self.rto_max

    @property
    def backoff(self) -> int:
        return self._backoff

    @backoff.setter
    def backoff(self, n: int) -> None:
        self._backoff = n
        self._update()

    def _update(self) -> None:
        """The current RTO: the base, clamped (§2.4, §2.5), doubled per backoff."""
        rto = min(max(self._base, self.rto_min), self.rto_max)
        self.rto = min(rto * (1 << self._backoff), self.rto_max)

    def back_off(self) -> None:
        """§5.5: the timer expired; double the RTO (bounded by the ceiling)."""
        if self._backoff < 30:
            self._backoff += 1
            self._update()
