"""Between the sender and the device: pacing and refused transmissions.

``sender.py`` decides what may be sent; this module decides whether it can
leave now.  Two conditions of the device, both Linux's:

* **Pacing** (CC-16; ``Config.pacing``, or a device that is Linux's fq
  queueing discipline, ``Outbox.paces``): each data segment leaves no sooner
  than its length at the pacing rate after the one before
  (``tcp_update_pacing_rate()``, ``tcp_update_skb_after_send()``); a held
  segment waits for the PACE timer (``_on_pace``).
* **A device that takes no packet** (LX-18; ``Outbox.drops``, ``tc qdisc
  add dev D root pfifo limit 0``): the transmission fails as Linux's does
  when ``tcp_transmit_skb()`` gets ``NET_XMIT_DROP``: the segment is not
  sent, and with nothing in flight the probe timer tries again every 500 ms
  (``_local_drop``, ``_resource_probe``).

``_push`` asks ``_hold_back`` before each segment only when one of them is
on, so neither costs anything otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import seqnum
from .recovery import Recovery
from .tcb import HALF, MASK
from .timers import PACE, PERSIST, RETRANSMIT, tick_expiry

_lt = seqnum.lt
RESOURCE_PROBE_INTERVAL = 0.5  # Linux TCP_RESOURCE_PROBE_INTERVAL (HZ/2)
GSO_MAX = 65536 - 1 - 320  # sk_gso_max_size - 1 - MAX_TCP_HEADER: the largest piece
PACING_SHIFT = 10  # sk_pacing_shift: a piece is about 1 ms of the pacing rate
TSO_RTT_LOG = 9  # net.ipv4.tcp_tso_rtt_log


class Pacer:
    """A connection's pacing schedule (CC-16): when the next piece may leave
    (Linux's tcp_wstamp_ns), data segments sent (data_segs_out), and the
    piece being sent: its start, size, largest size, rate and credit."""

    __slots__ = ("at", "base", "credit", "limit", "rate", "segs_out", "size", "start")

    def __init__(self) -> None:
        self.at = 0.0
        self.segs_out = self.base = self.size = self.limit = 0
        self.start = -1.0
        self.rate = self.credit = 0.0


class Transmit(Recovery):
    """Pacing and refused transmissions; see the module docstring."""

    if not TYPE_CHECKING:  # the slots are Connection's; mypy checks the annotations
        __slots__ = ()

    def _hold_back(self, now: float, n: int) -> bool:
        """Whether the next segment (``n`` bytes of data) cannot go now: the
        device refuses it (LX-18), or pacing holds it (CC-16)."""
        if self._box.drops:
            return self._local_drop(now)
        return self._pace(now, n)

    def _pace(self, now: float, n: int) -> bool:
        """Pacing (CC-16; Linux tcp_update_skb_after_send(), the departure
        times sch_fq keeps): segments leave in pieces, as Linux's TSO
        buffers do (``_tso_bytes``); a piece may start at ``Pacer.at``, and
        held, the PACE timer is armed and True returned.  Once ten data
        segments have gone, each piece moves ``Pacer.at`` on by its length at
        the pacing rate, less up to half of that for the time it started
        late (Linux's credit for OS jitter)."""
        p = self._pacer
        if p is None:
            p = self._pacer = Pacer()
        if now == p.start and p.size + n <= p.limit:
            p.size += n  # the same piece: it leaves with it
        elif now < p.at - 1e-9:
            self.timers.at[PACE] = p.at
            return True
        else:  # a new piece
            p.rate = rate = self._pacing_rate()
            p.credit, p.start, p.size = now - p.at, now, n
            p.base, p.limit = p.segs_out, self._tso_bytes(rate)
        p.segs_out = p.base + max(-(-p.size // self.smss), 1)
        t = p.start
        if p.segs_out >= 10 and p.rate and p.size:
            gap = p.size / p.rate
            t += gap - min(gap / 2, p.credit)
        p.at = t
        return False

    def _tso_bytes(self, rate: float) -> int:
        """The size of a piece: Linux's tcp_tso_autosize() of the pacing
        rate, about a millisecond of it (more on a path under 16 ms), at
        least ``Config.pacing_min_segs`` segments (tcp_min_tso_segs)."""
        smss = self.smss
        size = GSO_MAX
        if rate:
            size = int(rate) >> PACING_SHIFT
            rtt = self.rtt
            min_rtt = rtt.min_rtt if rtt.min_rtt is not None else rtt.srtt or 0.0
            r = int(min_rtt * 1e6) >> TSO_RTT_LOG
            if r < 32:
                size += GSO_MAX >> r
            size = min(size, GSO_MAX)
        return max(size // smss, self.config.pacing_min_segs) * smss

    def _pacing_rate(self) -> float:
        """Linux's sk_pacing_rate in bytes a second (tcp_update_pacing_rate()):
        SMSS times max(cwnd, segments out) over SRTT, times pacing_ss_ratio %
        while cwnd is below half ssthresh, else pacing_ca_ratio %; 0 (no
        pacing) before an RTT sample."""
        srtt = self.rtt.srtt
        if not srtt:
            return 0.0
        cc, smss, cfg = self.cc, self.smss, self.config
        cwnd = cc.cwnd // smss
        ratio = cfg.pacing_ss_ratio if cwnd < cc.ssthresh // smss // 2 else cfg.pacing_ca_ratio
        rack = self._rack
        if rack is not None:
            out = len(rack.log)
        else:
            out = -(-((self.snd_max - self.snd_una) & MASK) // smss)
        return smss * ratio / 100 * max(cwnd, out) / srtt

    def _on_pace(self, now: float) -> None:
        """The PACE timer: send what pacing held, lost segments first."""
        rack = self._rack
        if rack is not None and (self.cc.in_recovery or rack.lost_out):
            self._rack_retransmit(now)
        self._push(now)

    def _local_drop(self, now: float) -> bool:
        """The device refused the next segment (LX-18; Linux tcp_write_xmit()
        when tcp_transmit_skb() fails): it is not sent, SND.NXT stays.  With
        nothing in flight no retransmission timer will come, so the probe
        timer is armed (``tcp_check_probe_timer()``: max(RTO, 200 ms)), which
        then tries every 500 ms (``_resource_probe``)."""
        self._count("local_drop")
        at = self.timers.at
        if self.snd_una == self.snd_max and at[PERSIST] is None and at[RETRANSMIT] is None:
            at[PERSIST] = self._timer_at(now, max(self.rtt.rto, self.config.rto_min))
        return True  # (so that _push reads: refused, stop)

    def _timer_at(self, now: float, delay: float) -> float:
        """When a timer armed now for ``delay`` fires (on Linux's ticks with
        Config.hz)."""
        hz = self.config.hz
        return now + delay if hz is None else tick_expiry(now, delay, hz)

    def _resource_probe(self, now: float) -> None:
        """The probe timer while the device refuses what we send (LX-18;
        Linux tcp_probe_timer() and tcp_send_probe0() when the probe gets
        NET_XMIT_DROP): with data waiting and none in flight, count a probe
        and try again in 500 ms (``TCP_RESOURCE_PROBE_INTERVAL``), without
        backing off, never past the user timeout, which counts from the
        first probe; at the user timeout, or after ``data_retries`` probes,
        the connection times out."""
        if self.snd_una != self.snd_max or not self._unsent():
            self._probes, self._probe_start = 0, None
            return
        ut = self.config.user_timeout
        start = self._probe_start
        if start is None:
            self._probe_start = start = now
        elif ut is not None and now - start >= ut - 1e-9:
            self._time_out(now, "user_timeout")
            return
        if self._probes >= self.config.data_retries:
            self._time_out(now, "retransmission_timeout")
            return
        self._push(now, override=True)  # tcp_write_wakeup(): the device refuses it again
        if self.snd_una != self.snd_max:  # it went: the device takes segments again
            self._probes, self._probe_start = 0, None
            return
        self._probes += 1
        wait = RESOURCE_PROBE_INTERVAL
        if ut is not None:  # tcp_clamp_probe0_to_user_timeout()
            hz = self.config.hz
            wait = min(wait, max(ut - (now - start), 2 / hz if hz else 0.0))
        self.timers.at[PERSIST] = self._timer_at(now, wait)

    def _unsent(self) -> bool:
        """Data or our FIN waits to be sent."""
        unsent = (self._snd_base + len(self._sndbuf) - self.snd_nxt) & MASK
        if 0 < unsent < HALF:
            return True
        fin = self._fin_seq
        return fin is not None and not _lt(fin, self.snd_nxt)
