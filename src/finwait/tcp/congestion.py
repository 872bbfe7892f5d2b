"""Congestion control: the interface the sender drives, and NewReno.

:class:`CongestionControl` is what ``sender.py`` and ``recovery.py`` call: on each ACK of new
data, on entering and leaving fast recovery, on a DupAck in recovery, on a
retransmission timeout and after an idle period; it keeps ``cwnd`` and
``ssthresh`` and the loss-recovery bookkeeping the sender reads
(``dupacks``, ``in_recovery``, ``recover``).  The sender decides what counts
as a duplicate ACK (RFC 5681 §2, RFC 6675 §2; never a FIN) and does the
retransmitting; an algorithm only keeps the numbers.  ``ALGORITHMS`` maps
``Config.congestion_control`` names to implementations.  Before each ACK of
new data the sender reports the time, the RTT sample the ACK gave (if any),
the ACK and SND.MAX (:meth:`on_ack_sample`): what a delay- or time-based
algorithm needs; NewReno ignores it.

:class:`NewReno` is RFC 5681 with NewReno fast recovery (RFC 6582):
byte-counted slow start and congestion avoidance, fast retransmit on the
third duplicate ACK, recovery until the ACK of everything outstanding when
loss was detected, and the loss window after an RTO.

:class:`Cubic` is CUBIC (RFC 9438) with HyStart++ (RFC 9406) in slow start:
the Linux profile's algorithm, as Linux's default is CUBIC.
"""

from __future__ import annotations

from typing import Protocol


class CongestionControl(Protocol):
    """What the sender needs of a congestion-control algorithm."""

    smss: int
    iw: int  # the initial window, bytes
    cwnd: int
    ssthresh: int
    dupacks: int  # DupAcks counted since the last ACK of new data
    in_recovery: bool
    recover: int  # RFC 6582 "recover": SND.MAX when recovery began
    samples: bool  # on_ack_sample does something (NewReno's does nothing)

    def on_ack_sample(self, now: float, rtt: float | None, ack: int, snd_max: int) -> None: ...

    def on_new_ack(self, acked: int) -> None: ...

    def enter_recovery(self, flight: int) -> None:
        """Loss detected: set ssthresh (from ``flight``, or cwnd) and enter
        recovery.  The RACK path (``sender._enter_rack_recovery``) passes
        cwnd, as Linux computes ssthresh from cwnd, then sets cwnd itself
        (PRR); it also calls this for the ssthresh after a loss repaired by
        a tail-loss probe, restoring cwnd, ``recover`` and ``in_recovery``."""

    def on_dupack_in_recovery(self) -> None: ...

    def on_partial_ack(self, acked: int) -> None: ...

    def on_full_ack(self, flight: int) -> None: ...

    def on_timeout(self, flight: int) -> None: ...

    def on_idle(self) -> None: ...


def initial_window(smss: int, segments: int | None = None) -> int:
    """RFC 5681 §3.1 IW, or ``segments``·SMSS when given (Linux: 10, RFC 6928)."""
    if segments is not None:
        return segments * smss
    if smss > 2190:
        return 2 * smss
    if smss > 1095:
        return 3 * smss
    return 4 * smss


class NewReno:
    __slots__ = ("cwnd", "dupacks", "in_recovery", "iw", "recover", "samples", "smss", "ssthresh")

    def __init__(self, smss: int, iw_segments: int | None = None) -> None:
        self.smss = smss
        self.iw = initial_window(smss, iw_segments)
        self.cwnd = self.iw
        self.ssthresh = 1 << 30  # "arbitrarily high" (§3.1)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = 0  # RFC 6582 "recover": SND.MAX when recovery began
        self.samples = type(self).on_ack_sample is not NewReno.on_ack_sample

    def on_ack_sample(self, now: float, rtt: float | None, ack: int, snd_max: int) -> None:
        """Time and RTT of an ACK of new data: NewReno needs neither."""

    def on_new_ack(self, acked: int) -> None:
        """An ACK of new data outside recovery (§3.1)."""
        self.dupacks = 0
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.smss)  # slow start, RFC 3465 L=1
        else:
            self.cwnd += max(1, self.smss * self.smss // self.cwnd)

    def enter_recovery(self, flight: int) -> None:
        """Third duplicate ACK (§3.2 steps 2-3)."""
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self.cwnd = self.ssthresh + 3 * self.smss
        self.in_recovery = True

    def on_dupack_in_recovery(self) -> None:
        self.cwnd += self.smss  # §3.2 step 4: inflate

    def on_partial_ack(self, acked: int) -> None:
        """RFC 6582 §3.2 step 5: deflate by the amount acked, add back one SMSS."""
        self.cwnd = max(self.cwnd - acked + self.smss, self.smss)

    def on_full_ack(self, flight: int) -> None:
        """RFC 6582 §3.2 step 3: leave recovery."""
        self.cwnd = min(self.ssthresh, max(flight, self.smss) + self.smss)
        self.in_recovery = False
        self.dupacks = 0

    def on_timeout(self, flight: int) -> None:
        """§3.1, equation (4): loss window after an RTO."""
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self.cwnd = self.smss
        self.in_recovery = False
        self.dupacks = 0

    def on_idle(self) -> None:
        """§4.1: restart window after an idle period longer than the RTO."""
        self.cwnd = min(self.cwnd, self.iw)


def reno_delivered(acked: int, dupacks: int, smss: int) -> int:
    """Bytes an ACK newly delivers, as Linux counts them without SACK
    (``tcp_remove_reno_sacks()``): each DupAck already stood for one segment
    that left the network, so an ACK of n segments after d DupAcks delivers
    max(n - d, 1).  Linux grows cwnd by what is delivered, not by what is
    acknowledged (``tcp_cong_control()``)."""
    if not dupacks:
        return acked
    segs = -(-acked // smss)
    return min(acked, max(segs - dupacks, 1) * smss)


class NewRenoAbc(NewReno):
    """NewReno with appropriate byte counting in slow start (RFC 3465) as
    Linux counts (``tcp_slow_start()``): cwnd grows by every byte an ACK
    newly covers, not by at most one SMSS, up to ssthresh.  A receiver that
    ACKs every second segment then doubles cwnd per round trip, as RFC 3465
    §2.1 intends; the Linux profile's algorithm."""

    __slots__ = ()

    def on_new_ack(self, acked: int) -> None:
        acked = reno_delivered(acked, self.dupacks, self.smss)
        self.dupacks = 0
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + acked, max(self.ssthresh, self.cwnd + self.smss))
        else:
            self.cwnd += max(1, self.smss * self.smss // self.cwnd)


# RFC 9438 §5: C and beta_cubic; §4.3: alpha_cubic for the Reno-friendly region.
CUBIC_C = 0.4
CUBIC_BETA = 0.7
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)

# RFC 9406 §4.3's constants.
HYSTART_MIN_RTT_THRESH = 0.004
HYSTART_MAX_RTT_THRESH = 0.016
HYSTART_MIN_RTT_DIVISOR = 8
HYSTART_N_RTT_SAMPLE = 8
HYSTART_CSS_GROWTH_DIVISOR = 4
HYSTART_CSS_ROUNDS = 5
HYSTART_L = 8  # segments an ACK may add in slow start when not paced

INF = float("inf")


class Cubic(NewReno):
    """CUBIC (RFC 9438, CC-8) with HyStart++ (RFC 9406, CC-9).

    Windows are in bytes, as everywhere in the sender; the cubic function
    works in segments (RFC 9438 §4.1), converted with SMSS.

    Slow start (cwnd < ssthresh) counts bytes, at most L·SMSS per ACK, and
    runs HyStart++: the ACKs of a round (one window of data, ended by the
    ACK of the SND.MAX noted when the round began) give RTT samples; once a
    round has N_RTT_SAMPLE of them and its least is at least RttThresh above
    the last round's, slow start gives way to Conservative Slow Start (CSS,
    growth divided by CSS_GROWTH_DIVISOR), which ends in congestion
    avoidance after CSS_ROUNDS rounds (ssthresh = cwnd), or returns to slow
    start if the RTT falls back below the baseline (a spurious exit).

    Congestion avoidance: at the first ACK of an epoch, K = cbrt((W_max -
    cwnd)/C); each ACK then moves cwnd towards W_cubic(t + RTT) = C·(t+RTT -
    K)³ + W_max (§4.2), by (target - cwnd)/cwnd segments per segment ACKed,
    the target clamped to [cwnd, 1.5·cwnd] (§4.4).  W_est, the window Reno
    would have (§4.3: alpha_cubic per window, 1 once W_est reaches W_max),
    takes over when it is the larger (the Reno-friendly region).

    A congestion event (third DupAck, RTO) sets W_max to cwnd — less, with
    fast convergence, when cwnd had not regained the previous W_max (§4.7:
    W_max = cwnd·(1 + beta)/2) — and ssthresh = max(cwnd·beta_cubic, 2·SMSS)
    (§4.6).  Fast recovery itself (inflation, partial ACKs) is NewReno's.
    """

    # RFC 9406's L: the most an ACK may add in slow start, in segments
    # (8 when not paced); None: no bound, as Linux's tcp_slow_start().
    ss_limit: int | None = HYSTART_L

    __slots__ = (
        "_acc", "_css_baseline", "_css_rounds", "_cur_min", "_epoch", "_k", "_last_min",
        "_now", "_rtt", "_samples", "_w_est", "_window_end", "in_css", "w_max",
    )  # fmt: skip

    def __init__(self, smss: int, iw_segments: int | None = None) -> None:
        super().__init__(smss, iw_segments)
        self.w_max = 0.0  # segments; 0: no congestion event yet
        self._k = 0.0
        self._epoch: float | None = None  # start of the current avoidance epoch
        self._w_est = 0.0  # segments
        self._acc = 0.0  # fraction of a byte carried between ACKs
        self._now = 0.0
        self._rtt: float | None = None  # the least RTT seen (RFC 9438 §4.2's RTT)
        # HyStart++ (RFC 9406 §4.2)
        self._window_end: int | None = None
        self._last_min = INF
        self._cur_min = INF
        self._samples = 0
        self.in_css = False
        self._css_baseline = INF
        self._css_rounds = 0

    # -- the clock and RTT of each ACK ----------------------------------

    def on_ack_sample(self, now: float, rtt: float | None, ack: int, snd_max: int) -> None:
        self._now = now
        if rtt is not None:
            rtt = max(rtt, 0.0)
            self._rtt = rtt if self._rtt is None else min(self._rtt, rtt)
        if self.cwnd >= self.ssthresh or self.in_recovery:
            return
        # HyStart++ round tracking: a round ends when its last byte is ACKed.
        if self._window_end is None or ((ack - self._window_end) & 0xFFFFFFFF) < 0x80000000:
            self._last_min = self._cur_min
            self._cur_min = INF
            self._samples = 0
            self._window_end = snd_max
            if self.in_css:
                self._css_rounds += 1
                if self._css_rounds >= HYSTART_CSS_ROUNDS:
                    self._leave_slow_start()  # §4.2: CSS_ROUNDS rounds of CSS: avoidance
                    return
        if rtt is None:
            return
        self._cur_min = min(self._cur_min, rtt)
        self._samples += 1
        if self._samples < HYSTART_N_RTT_SAMPLE:
            return
        if not self.in_css:
            if self._last_min != INF and self._cur_min != INF:
                thresh = max(
                    HYSTART_MIN_RTT_THRESH,
                    min(self._last_min / HYSTART_MIN_RTT_DIVISOR, HYSTART_MAX_RTT_THRESH),
                )
                if self._cur_min >= self._last_min + thresh:
                    self.in_css = True  # the RTT rose: slow start is overshooting
                    self._css_baseline = self._cur_min
                    self._css_rounds = 0
        elif self._cur_min < self._css_baseline:
            self.in_css = False  # a spurious exit: back to slow start
            self._css_baseline = INF

    def _leave_slow_start(self) -> None:
        self.ssthresh = self.cwnd
        self.in_css = False
        self._css_baseline = INF

    # -- growth ---------------------------------------------------------

    def on_new_ack(self, acked: int) -> None:
        smss = self.smss
        if self.ss_limit is None:  # the Linux profile: count what was delivered
            acked = reno_delivered(acked, self.dupacks, smss)
        self.dupacks = 0
        if self.cwnd < self.ssthresh:
            limit = self.ss_limit
            inc = acked if limit is None else min(acked, limit * smss)
            if self.in_css:
                inc //= HYSTART_CSS_GROWTH_DIVISOR
            room = self.ssthresh - self.cwnd
            if inc <= room:
                self.cwnd += inc
                return
            # Slow start reaches ssthresh: the rest of the ACK counts in
            # avoidance (Linux tcp_slow_start() hands it back likewise).
            self.cwnd = self.ssthresh
            acked = max(acked - room, 0)
        self._avoid(acked)

    def w_cubic(self, t: float) -> float:
        """RFC 9438 §4.2, equation (1): the window (segments) t seconds into
        the epoch."""
        return CUBIC_C * (t - self._k) ** 3 + self.w_max

    def _avoid(self, acked: int) -> None:
        """Congestion avoidance (§4.2-§4.4) for ``acked`` bytes newly ACKed."""
        smss = self.smss
        cwnd = self.cwnd / smss
        if self._epoch is None:
            self._epoch = self._now
            self._w_est = cwnd
            if cwnd < self.w_max:
                self._k = ((self.w_max - cwnd) / CUBIC_C) ** (1 / 3)
            else:
                self._k = 0.0
                self.w_max = cwnd
        t = self._now - self._epoch
        rtt = self._rtt if self._rtt is not None else 0.0
        target = min(max(self.w_cubic(t + rtt), cwnd), 1.5 * cwnd)
        segs = acked / smss
        alpha = 1.0 if self._w_est >= self.w_max else CUBIC_ALPHA
        self._w_est += alpha * segs / cwnd
        if self.w_cubic(t) < self._w_est:
            new = max(self._w_est, cwnd)  # the Reno-friendly region (§4.3)
        else:
            new = cwnd + (target - cwnd) / cwnd * segs  # concave or convex (§4.4, §4.5)
        grow = (new - cwnd) * smss + self._acc
        whole = int(grow)
        self._acc = grow - whole
        self.cwnd += whole

    # -- congestion events ----------------------------------------------

    def _reduce(self) -> None:
        """§4.6-§4.7: W_max (with fast convergence), ssthresh, a new epoch."""
        smss = self.smss
        cwnd = self.cwnd / smss
        if self.w_max and cwnd < self.w_max:
            self.w_max = cwnd * (1 + CUBIC_BETA) / 2  # fast convergence
        else:
            self.w_max = cwnd
        self.ssthresh = max(int(self.cwnd * CUBIC_BETA), 2 * smss)
        self._epoch = None
        self._acc = 0.0
        self.in_css = False
        self._css_baseline = INF

    def enter_recovery(self, flight: int) -> None:
        """Third DupAck: reduce by beta_cubic, then NewReno's fast recovery."""
        self._reduce()
        self.cwnd = self.ssthresh + 3 * self.smss
        self.in_recovery = True

    def on_full_ack(self, flight: int) -> None:
        """RFC 6582 §3.2 step 3, its second option: cwnd = ssthresh, as Linux
        ends a window reduction (``tcp_end_cwnd_reduction()``); the first
        option would collapse cwnd when the ACK leaves nothing in flight."""
        self.cwnd = self.ssthresh
        self.in_recovery = False
        self.dupacks = 0

    def on_timeout(self, flight: int) -> None:
        """§4.8: an RTO is a congestion event; cwnd restarts from one segment."""
        self._reduce()
        self.cwnd = self.smss
        self.in_recovery = False
        self.dupacks = 0

    def on_idle(self) -> None:
        super().on_idle()
        self._epoch = None  # §5.8: no credit for time spent idle


# Linux tcp_cubic.c's fixed-point constants (beta 717/1024, C = 410/1024
# scaled for the time unit 1/1024 s) and the scheduler tick its clock counts.
LINUX_BETA = 717
LINUX_BETA_SCALE = 8 * (1024 + LINUX_BETA) // 3 // (1024 - LINUX_BETA)  # 15
LINUX_CUBE_RTT_SCALE = 410
LINUX_CUBE_FACTOR = (1 << 40) // 410
LINUX_HZ = 1000  # Config.linux()'s hz


class CubicLinux(Cubic):
    """CUBIC as Linux runs it (``tcp_cubic.c``).  The Linux profile's.

    Slow start: every byte an ACK covers counts, however many
    (``tcp_slow_start()`` has no L); one ACK of ten segments doubles an
    initial window of ten.  Growth counts what an ACK delivered
    (:func:`reno_delivered`).

    Congestion avoidance is Linux's ``bictcp_update()`` and
    ``tcp_cong_avoid_ai()`` in whole segments: a count ``cnt`` of segments
    ACKed per one-segment increase, recomputed from the cubic function only
    when cwnd changed or ``HZ/32`` ticks passed (the clock is jiffies, here
    ``hz`` per second), at most 20 while no loss set W_max, never below 2,
    lowered by the Reno estimate (one segment per ``cwnd·15/8`` ACKed).  An
    RTO forgets W_max, the epoch and the least RTT (``cubictcp_state()`` on
    entering Loss), so the avoidance after it starts from cwnd at 1/20 per
    ACK, as the kernel's, not from the RFC's W_max."""

    __slots__ = (
        "_ack_cnt", "_cnt", "_cwnd_cnt", "_last_cwnd", "_last_time", "_origin", "_tcp_cwnd",
    )  # fmt: skip
    ss_limit = None
    hz = LINUX_HZ

    def __init__(self, smss: int, iw_segments: int | None = None) -> None:
        super().__init__(smss, iw_segments)
        self._forget()
        self._cwnd_cnt = 0  # tp->snd_cwnd_cnt

    def _forget(self) -> None:
        """``bictcp_reset()``."""
        self.w_max = 0.0
        self._epoch = None
        self._cnt = 0
        self._ack_cnt = 0
        self._tcp_cwnd = 0
        self._last_cwnd = 0
        self._last_time = 0
        self._origin = 0
        self._k = 0.0

    def _avoid(self, acked: int) -> None:
        smss = self.smss
        segs, rest = divmod(acked + int(self._acc), smss)
        self._acc = float(rest)
        if segs <= 0:
            return
        cwnd = max(self.cwnd // smss, 1)
        hz = self.hz
        now = int(self._now * hz + 1e-6)  # tcp_jiffies32
        # bictcp_update()
        self._ack_cnt += segs
        if self._last_cwnd != cwnd or now - self._last_time > hz // 32:
            if self._epoch is None or now != self._last_time:
                self._last_cwnd = cwnd
                self._last_time = now
                if self._epoch is None:
                    self._epoch = float(now)
                    self._ack_cnt = segs
                    self._tcp_cwnd = cwnd
                    w_max = int(self.w_max)
                    if w_max <= cwnd:
                        self._k = 0.0
                        self._origin = cwnd
                    else:
                        self._k = float(round((LINUX_CUBE_FACTOR * (w_max - cwnd)) ** (1 / 3)))
                        self._origin = w_max
                t = now - int(self._epoch)
                if self._rtt is not None:
                    t += -int(-self._rtt * hz // 1)  # usecs_to_jiffies(delay_min): rounds up
                t = (t << 10) // hz
                k = int(self._k)
                delta = (LINUX_CUBE_RTT_SCALE * abs(t - k) ** 3) >> 40
                target = self._origin - delta if t < k else self._origin + delta
                cnt = cwnd // (target - cwnd) if target > cwnd else 100 * cwnd
                if not self.w_max and cnt > 20:
                    cnt = 20  # the first epoch: 5 % per RTT
                self._cnt = cnt
            # tcp_friendliness
            per = (cwnd * LINUX_BETA_SCALE) >> 3
            while self._ack_cnt > per:
                self._ack_cnt -= per
                self._tcp_cwnd += 1
            if self._tcp_cwnd > cwnd:
                self._cnt = min(self._cnt, cwnd // (self._tcp_cwnd - cwnd))
            self._cnt = max(self._cnt, 2)
        # tcp_cong_avoid_ai()
        w = self._cnt
        if self._cwnd_cnt >= w:
            self._cwnd_cnt = 0
            self.cwnd += smss
        self._cwnd_cnt += segs
        if self._cwnd_cnt >= w:
            more = self._cwnd_cnt // w
            self._cwnd_cnt -= more * w
            self.cwnd += more * smss

    def _reduce(self) -> None:
        """``cubictcp_recalc_ssthresh()``: W_max in whole segments."""
        cwnd = self.cwnd // self.smss
        w_max = int(self.w_max)
        super()._reduce()
        self.w_max = float(cwnd * (1024 + LINUX_BETA) // 2048 if cwnd < w_max else cwnd)
        self._cwnd_cnt = 0

    def on_timeout(self, flight: int) -> None:
        """``tcp_enter_loss()``: ssthresh from W_max as any loss, then the
        Loss state resets CUBIC (W_max, epoch, least RTT) and the count."""
        super().on_timeout(flight)
        self._forget()
        self._rtt = None
        self._cwnd_cnt = 0


ALGORITHMS: dict[str, type[NewReno]] = {
    "newreno": NewReno,
    "newreno-abc": NewRenoAbc,
    "cubic": Cubic,
    "cubic-linux": CubicLinux,
}


def make(name: str, smss: int, iw_segments: int | None) -> CongestionControl:
    """The algorithm ``name`` (a key of ``ALGORITHMS``) for a new connection."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r}") from None
    return cls(smss, iw_segments)
