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
    __slots__ = (
        "_backoff", "_base", "_mdev", "_mdev_max", "_rtt_seq", "linux", "min_rtt", "rto",
        "rto_max", "rto_min", "rttvar", "srtt",
    )  # fmt: skip

    def __init__(self, initial: float, rto_min: float, rto_max: float, linux: bool = False) -> None:
        self.srtt: float | None = None
        self.min_rtt: float | None = None  # the least sample (RACK's min_RTT, RFC 8985)
        self.rttvar = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max
        self._base = initial  # §2.1: RTO before any sample
        self._backoff = 0
        # The current RTO, kept up to date (read for every segment sent): here
        # _update() with no backoff, written out, as every connection makes one.
        rto = initial if initial > rto_min else rto_min
        self.rto = rto if rto < rto_max else rto_max
        # linux: Linux's estimator (tcp_rtt_estimator(), __tcp_set_rto()): RTO
        # = SRTT + RTTVAR where RTTVAR, four mean deviations, never falls below
        # rto_min within a round trip (so a steady path gets SRTT + 200 ms)
        # and a falling RTT moves it eight times less; otherwise RFC 6298 §2's
        # max(SRTT + 4·RTTVAR, rto_min).
        self.linux = linux
        self._mdev = 0.0  # Linux mdev_us: 4 x the mean deviation
        self._mdev_max = 0.0
        self._rtt_seq: int | None = None

    def sample(self, rtt: float, una: int | None = None, nxt: int | None = None) -> None:
        """A round-trip measurement R (§2.2, §2.3); clears the backoff.
        ``una``/``nxt`` (SND.UNA after the ACK, SND.NXT): where Linux's
        estimator starts a new round trip; without them every sample does."""
        if rtt < 0.0:
            rtt = 0.0
        if self.linux:
            self._sample_linux(rtt, una, nxt)
            return
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

    def _sample_linux(self, m: float, una: int | None, nxt: int | None) -> None:
        """Linux tcp_rtt_estimator() and __tcp_set_rto(), in seconds."""
        floor = self.rto_min
        if self.srtt is None:
            self.srtt = self.min_rtt = m
            self._mdev = 2 * m  # "make sure rto = 3*rtt"
            self.rttvar = self._mdev_max = max(self._mdev, floor)
            self._rtt_seq = nxt
        else:
            err = m - self.srtt
            self.srtt += err / 8
            if err < 0:
                err = -err - self._mdev / 4
                if err > 0:
                    err /= 8  # a falling RTT moves the deviation less
            else:
                err -= self._mdev / 4
            self._mdev += err
            if self._mdev > self._mdev_max:
                self._mdev_max = self._mdev
                if self._mdev_max > self.rttvar:
                    self.rttvar = self._mdev_max
            if m < self.min_rtt:  # type: ignore[operator]
                self.min_rtt = m
            seq = self._rtt_seq
            if una is None or seq is None or ((una - seq) & 0xFFFFFFFF) - 1 < 0x7FFFFFFF:
                # a round trip is over (SND.UNA passed the mark): decay RTTVAR
                if self._mdev_max < self.rttvar:
                    self.rttvar -= (self.rttvar - self._mdev_max) / 4
                self._rtt_seq = nxt
                self._mdev_max = floor
        self._base = self.srtt + self.rttvar
        self._backoff = 0
        self._update()

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
