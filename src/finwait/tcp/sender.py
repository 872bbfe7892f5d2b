"""How finwait sends: the send half of the TCB.

Read RFC 9293 §3.8 (retransmission, window management), §3.10.7.4 fifth
(the ACK field), RFC 5681 / RFC 6582 (congestion control, NewReno; the
numbers are in ``congestion.py``), RFC 6675 (SACK-based loss recovery; the
scoreboard is ``scoreboard.py``), RFC 3042 and RFC 5827 (limited transmit,
early retransmit), RFC 6298 (RTO; the estimator is ``rto.py``) and RFC 7323
(timestamps for RTT).

The path of a byte: ``Connection.send`` appends it to the send buffer
(``_sndbuf``, the bytes from ``_snd_base`` = SND.UNA on, acknowledged bytes
cut from the front) and calls :meth:`Sender._push`, which cuts segments of at
most SMSS from SND.NXT while the usable window (min(SND.WND, cwnd)) allows,
with sender SWS avoidance and Nagle, and places our FIN after the last byte
(``_fin_seq``, set by CLOSE through ``_queue_fin``).  Every burst arms
the retransmission timer.  ACKs come back through
:meth:`Sender._step_ack`: a new ACK releases bytes, samples the RTT, grows
cwnd and restarts the timer (``_on_new_ack``); the window update obeys
SND.WL1/SND.WL2.  A timeout goes back to SND.UNA (go-back-N, SND.MAX kept)
and collapses cwnd (``_on_rexmit_timeout``); a zero window is probed
(``_on_persist``).

Loss recovery short of a timeout is in ``recovery.py`` (the base class,
:class:`~finwait.tcp.recovery.Recovery`): what a duplicate ACK does
(``_maybe_dupack``: fast retransmit, fast recovery with NewReno and SACK,
limited and early retransmit), and with RACK on (the Linux profile, with
SACK) RFC 8985's RACK-TLP and RFC 6937's PRR instead (``_rack_ack``; the
transmit log is ``rack.py``).  The hooks here: ``_push`` asks
``_send_window`` when recovery bounds the window and logs each segment
with RACK; ``_sent_burst`` arms the loss probe; ``_on_new_ack`` hands a new
ACK in recovery to ``_newreno_ack``; ``_step_ack`` hands the ACK to
``_maybe_dupack`` or ``_rack_ack``; ``_on_rexmit_timeout`` ends it all
(Linux's Loss state).  The RACK timers fire from ``Connection.on_timer``.

Sequence numbers are plain ints compared only through ``seqnum``.  SND.MAX
(the highest sequence sent) is kept besides SND.NXT: after a retransmission
timeout SND.NXT goes back to SND.UNA and ACKs up to SND.MAX stay acceptable.
Our FIN is located by sequence number: it has been sent when SND.MAX is past
it, and acknowledged when SND.UNA is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..wire.segment import ACK, FIN, PSH, SYN, Segment, TcpOptions, new_options, new_segment
from . import seqnum
from .buffers import SendBuffer
from .config import Config
from .events import CONNECTED, SendAcknowledged
from .rto import RttEstimator
from .scoreboard import Scoreboard
from .state import State
from .tcb import HALF, MASK
from .timers import (
    DELAYED_ACK,
    KEEPALIVE,
    LOSS_PROBE,
    PERSIST,
    REORDER,
    RETRANSMIT,
    USER_TIMEOUT,
    tick_expiry,
)
from .transmit import RESOURCE_PROBE_INTERVAL, Transmit
from .verdict import Verdict

# The states as module names: on Python 3.11 ``State.X`` goes through
# EnumType.__getattr__, ten times the cost of a global (see state.py).
_LISTEN, _SYN_SENT, _SYN_RECEIVED = State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED
_ESTABLISHED, _FIN_WAIT_1 = State.ESTABLISHED, State.FIN_WAIT_1

_add = seqnum.add
_lt = seqnum.lt
_le = seqnum.le


class Sender(Transmit):
    """The send half; see the module docstring."""

    if not TYPE_CHECKING:  # the slots are Connection's; mypy checks the annotations
        __slots__ = ()

    def _init_send(self, cfg: Config, iss: int, ts_offset: int) -> None:
        """Send sequence variables (§3.3.1) and the sender's machinery."""
        self.iss = iss & MASK
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = self.snd_up = 0
        self.max_snd_wnd = 0
        self.smss = self.peer_mss = self._send_size = cfg.default_peer_mss
        self.snd_wscale = 0
        self.snd_wscale_offered = False
        self._sndbuf = SendBuffer()
        self._snd_base = (self.iss + 1) & MASK
        self._fin_seq = None
        # self.cc is made once the handshake has settled SMSS (tcb._negotiated):
        # nothing before a synchronized state sends data.
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max, cfg.rto_linux)
        self._rtt_seq = None
        self._rtt_start = 0.0
        self._sb = None
        self._high_rxt = 0
        self._retries = 0
        self._last_send = 0.0
        self._persist_backoff = 0
        self._probes = 0
        self._probe_start = None
        self._pacer = None
        self._ts_offset = ts_offset & MASK
        self._rack = None  # made when Config.rack is on (tcb._negotiated)
        self._cwnd_use = (True, 0, iss)  # Config.cwnd_validate: (filled, most out, round end)

    def _emit_syn(self, now: float, ack: bool, send: bool = True) -> None:
        """SYN or SYN,ACK at ISS with our options (§3.7.1, RFC 7323, RFC 2018).
        In a SYN,ACK we offer only what the peer's SYN offered.  ``send``
        False: only the bookkeeping of having sent it (a SYN cookie's)."""
        cfg = self.config
        if ack:
            wscale = self._offer_wscale if self.snd_wscale_offered else None
            ts = (self._ts_now(now), self.ts_recent) if self.ts_ok else None
            sack_perm = self.sack_ok
        else:
            wscale = self._offer_wscale
            ts = (self._ts_now(now), 0) if cfg.timestamps else None
            sack_perm = cfg.sack_permitted
        opts = new_options(TcpOptions, (cfg.mss, wscale, sack_perm, ts, (), ()))
        window = min(self.rcv_wnd, 0xFFFF)  # never scaled on a SYN (RFC 7323 §2.2)
        flags = SYN | ACK if ack else SYN
        if send and self._box.drops:
            self._count("local_drop")  # counted as sent, as Linux's tcp_connect() (LX-18)
        elif send:
            (src, sport), (dst, dport) = self.local, self.remote
            rcv_nxt = self.rcv_nxt if ack else 0
            self._out.append(
                new_segment(Segment, (src, dst, sport, dport, self.iss, rcv_nxt, flags, window, b"", opts, 0))
            )  # fmt: skip
        if ack:
            self.last_ack_sent = self.rcv_nxt
            self._rcv_adv = (self.rcv_nxt + window) & MASK
            self._ack_now = False
            self.timers.cancel(DELAYED_ACK)
        self._last_send = now

    def _ack_syn(self, ack: int, now: float) -> None:
        self.snd_una = ack
        if ((self.snd_nxt - ack) & MASK) >= HALF:  # SND.NXT < ack
            self.snd_nxt = ack
        self._retries = 0
        self.timers.cancel(RETRANSMIT)
        self.timers.cancel(USER_TIMEOUT)
        if self._rtt_seq is not None and ((ack - self._rtt_seq) & MASK) < HALF:  # ack >= timed
            self.rtt.sample(now - self._rtt_start, ack, self.snd_nxt)
            self._rtt_seq = None
        if self.rtt.backoff:  # (a property that recomputes the RTO)
            self.rtt.backoff = 0

    def _queue_fin(self, state: State, now: float) -> None:
        """CLOSE: place our FIN after the last queued byte (``_fin_seq``),
        enter ``state`` and send what can go."""
        self._fin_seq = (self._snd_base + self._sndbuf.size) & MASK
        self._set_state(state, now)
        self._push(now)

    def _push(self, now: float, override: bool = False, probe: bool = False) -> None:
        """Send what the windows allow: data from SND.NXT, then our FIN (on the
        last data segment when it fits, LX-4); one ACK/window/options per burst.
        ``override``: a small segment may go; ``probe``: a TLP (RFC 8985 §7.3)."""
        if not self.state.sending:
            return
        buf, base, fin_seq = self._sndbuf, self._snd_base, self._fin_seq
        smss, size = self.smss, self._send_size  # size: SMSS, or a multiple (TSO)
        data_end = (base + buf.size) & MASK
        una, nxt, snd_max = self.snd_una, self.snd_nxt, self.snd_max
        cc, rack, box = self.cc, self._rack, self._box
        if rack is None and not cc.dupacks:
            wnd = min(self.snd_wnd, cc.cwnd)
        else:  # limited transmit, fast recovery, RACK's pipe, a loss probe
            wnd = self._send_window(nxt, probe)
        out, sent_data, gate = self._out, False, box.drops or box.paces or self.config.pacing
        header: tuple[int, int, TcpOptions] | None = None  # (ack, window, options)
        unsent = (data_end - nxt) & MASK
        if unsent >= HALF:
            unsent -= MASK + 1  # past the data: our FIN was sent
        room = wnd - ((nxt - una) & MASK)  # what the window still takes
        off = (nxt - base) & MASK
        while unsent > 0 or nxt == fin_seq:  # data, or our FIN due
            n = 0
            if unsent > 0:
                n = unsent if unsent < size else size
                if n > room:
                    n = room
                if n < smss and self._hold_small(n, unsent, wnd - room, override, now):
                    break
            if gate and self._hold_back(now, n):
                break
            if header is None:
                header = self._ack_header(now)
                (src, sport), (dst, dport) = self.local, self.remote
            end = (nxt + n) & MASK
            if n:
                payload = buf.cut(off, n)
                flags = ACK | PSH if n == unsent else ACK  # PSH: the last data
                sent_data = True
            else:
                payload, flags = b"", ACK
            if end == fin_seq:
                flags |= FIN
            out.append(new_segment(Segment, (
                src, dst, sport, dport, nxt, header[0], flags, header[1], payload, header[2], 0,
            )))  # fmt: skip
            seq, nxt = nxt, (end + (flags & FIN)) & MASK
            unsent, room, off = unsent - n, room - n, off + n
            if rack is not None:
                self._rack_log(seq, nxt, seq == snd_max, now)
            if ((snd_max - nxt) & MASK) >= HALF:  # SND.MAX < SND.NXT: new data
                if self._rtt_seq is None and not self.ts_ok:
                    self._rtt_seq, self._rtt_start = nxt, now
                self.snd_max = snd_max = nxt
            if probe or flags & FIN:
                break
        if header is not None:
            self._sent_burst(nxt, now, sent_data, probe)

    def _hold_small(self, n: int, unsent: int, flight: int, override: bool, now: float) -> bool:
        """Whether a segment of ``n`` < SMSS bytes waits; always when the
        window has no room (``n`` <= 0): with a zero window and nothing in
        flight, the persist timer probes it (§3.8.6.1).  Sender SWS
        avoidance (§3.8.6.2.1, MUST-38): less than a segment, and not all
        that is queued, goes only when nothing is in flight and it is at
        least half the largest window the peer offered; otherwise it waits
        for the window to open, or for the override timeout (the persist
        timer).  Then Nagle (RFC 896, §3.7.4), when on."""
        if n <= 0:
            if self.snd_wnd == 0 and self.snd_una == self.snd_max:
                self._arm_persist(now)
            return True
        if n < unsent and not override:
            if flight > 0:
                return True
            if n < self.max_snd_wnd // 2:
                self._arm_persist(now)
                return True
        return self.config.nagle and flight > 0 and self._fin_seq is None

    def _sent_burst(self, nxt: int, now: float, sent_data: bool, probe: bool) -> None:
        """After a burst: SND.NXT, the retransmission timer (RFC 6298 §5.1),
        no persist timer while data is in flight, and with TLP on the probe
        timer (unless this was the probe)."""
        if sent_data and now - self._last_data_rcv < self.config.delayed_ack_timeout:
            # Data sent soon after data arrived: an interactive exchange
            # (Linux tcp_event_data_sent(), pingpong); only quick ACKs care.
            self._pingpong = True
        self.snd_nxt = nxt
        self._last_send = now
        if self.config.cwnd_validate:
            self._validate_cwnd(nxt)
        at = self.timers.at  # _arm_rexmit and cancel(PERSIST), written out
        if at[RETRANSMIT] is None:
            at[RETRANSMIT] = self._rto_at(now)
        if self.config.user_timeout is not None:
            self._arm_user_timeout(now)
        at[PERSIST] = None
        self._persist_backoff = 0
        self._probe_start = None
        if self._rack is not None and self.config.tlp and not probe:
            self._schedule_tlp(now, advancing=False)

    def _rto_at(self, now: float) -> float:
        """When the retransmission timer armed now expires (Config.hz)."""
        hz = self.config.hz
        rtt = self.rtt
        if hz is None:
            return now + rtt.rto
        # Linux keeps the RTO in ticks (usecs_to_jiffies() rounds up) and
        # doubles that on each backoff.
        b = rtt.backoff
        ticks = -int(-(rtt.rto / (1 << b) * hz - 1e-9) // 1) << b
        return tick_expiry(now, min(ticks / hz, rtt.rto_max), hz)

    def _arm_rexmit(self, now: float) -> None:
        self.timers.arm_once(RETRANSMIT, self._rto_at(now))
        self._arm_user_timeout(now)

    def _arm_user_timeout(self, now: float) -> None:
        """USER TIMEOUT (TO-1; RFC 9293 §3.8.3, Linux TCP_USER_TIMEOUT): sent
        data, SYN or FIN may stay unacknowledged this long, counted from when
        the oldest of it was sent; then the connection is aborted (TimedOut)."""
        ut = self.config.user_timeout
        if ut is not None:
            self.timers.arm_once(USER_TIMEOUT, now + ut)

    def _arm_persist(self, now: float) -> None:
        t = self.timers
        if not t.armed(PERSIST) and not t.armed(RETRANSMIT):
            t.arm(PERSIST, now + self.rtt.rto)

    def _on_rexmit_timeout(self, now: float) -> None:
        """§3.8.1, RFC 6298 §5.4-5.7: retransmit the earliest unacknowledged
        segment, back off, and give up after a bounded number of tries."""
        self.timers.cancel(RETRANSMIT)
        st = self.state
        self._retries += 1
        limit = (
            self.config.syn_retries
            if st in (_SYN_SENT, _SYN_RECEIVED)
            else (self.config.data_retries)
        )
        if self._retries > limit:
            if st is _SYN_RECEIVED and self.passive:
                self._count("synack_timeout")
                self._set_state(_LISTEN, now)  # back to the listener, silently
                self._delete(now)
                return
            self._time_out(now, "retransmission_timeout")
            return
        self._count("rto")
        drops = self._box.drops
        if not drops:  # resent for certain: back off (with the device refusing, LX-18: not)
            self.rtt.back_off()
        self._rtt_seq = None  # Karn's algorithm
        if self._sb is not None:
            self._sb.clear()  # the peer may have reneged (RFC 2018 §8): resend it all
        rack = self._rack
        if rack is not None:
            rack.on_rto()  # everything outstanding is lost: Linux's Loss state
            rack.loss_high = self.snd_max
            self.timers.cancel(LOSS_PROBE)
            self.timers.cancel(REORDER)
        if self.snd_una == self.iss:
            # Our SYN is unacknowledged: resend it (SYN,ACK once we have the
            # peer's SYN), then a FIN queued by CLOSE in SYN-RECEIVED (CL-4).
            self._emit_syn(now, ack=st is not _SYN_SENT)
            if st is _FIN_WAIT_1:
                self.snd_nxt = _add(self.iss, 1)
                self._push(now)
        elif st.sending:
            flight = seqnum.sub(self.snd_max, self.snd_una)
            self.cc.on_timeout(flight)
            self.cc.recover = self.snd_max
            self.snd_nxt = self.snd_una  # go back N
            self._push(now, override=True)  # what was sent is resent, small or not
        if drops:  # Linux tcp_retransmit_timer(): "local congestion", 500 ms
            self.timers.at[RETRANSMIT] = self._timer_at(now, RESOURCE_PROBE_INTERVAL)
        self._arm_rexmit(now)

    def _on_persist(self, now: float) -> None:
        """Zero-window probe (§3.8.6.1): Linux's form, ``<SEQ=SND.UNA-1>``
        with no data, which the peer must answer with its current window."""
        self.timers.cancel(PERSIST)
        if not self.state.sending:
            return
        if self._box.drops or self._probe_start is not None:
            self._resource_probe(now)
            return
        if self.snd_wnd > 0:
            # The window is open but too small for sender SWS avoidance: this
            # is its override timeout; send what the window takes (as Linux's
            # tcp_write_wakeup()).
            self._count("sws_override")
            self._push(now, override=True)
            return
        self._count("window_probe")
        self._emit(_add(self.snd_una, -1), ACK, now)
        self._probes += 1
        self._persist_backoff = min(self._persist_backoff + 1, 16)
        backoff = self.rtt.rto * (1 << self._persist_backoff)
        self.timers.arm(PERSIST, now + min(backoff, self.config.rto_max))

    def _on_keepalive(self, now: float) -> None:
        self.timers.cancel(KEEPALIVE)
        if self.config.keepalive is None or self.state is not _ESTABLISHED:
            return
        if now - self._last_recv >= self.config.keepalive:
            self._count("keepalive_probe")
            self._emit(_add(self.snd_una, -1), ACK, now)
        self.timers.arm(KEEPALIVE, now + self.config.keepalive)

    def _step_ack(self, seg: Segment, now: float, ack_only: bool = False) -> bool:
        """Step five: the ACK field (§3.10.7.4 fifth, RFC 5961 §5.2)."""
        ack = seg.ack
        una = self.snd_una
        if self.state is _SYN_RECEIVED:
            if not self._ack_syn_received(seg, now):
                return False
            una = self.snd_una
        # RFC 5961 §5.2: acceptable in [SND.UNA - MAX.SND.WND, SND.MAX] (seqnum written out)
        snd_max = self.snd_max
        new_ack = False
        if ack != una:  # (SEG.ACK = SND.UNA, what most data segments carry, always is)
            if ((snd_max - ack) & MASK) >= HALF:  # SND.MAX < SEG.ACK
                self._challenge_ack(seg, now, Verdict.ACK_OF_UNSENT_DATA)
                return False
            if ((ack - una + self.max_snd_wnd) & MASK) >= HALF:  # SEG.ACK < SND.UNA - MAX.SND.WND
                self._challenge_ack(seg, now, Verdict.ACK_TOO_OLD)
                return False
            new_ack = ((una - ack) & MASK) >= HALF  # SND.UNA < SEG.ACK
        if new_ack or ack == una:  # not older than SND.UNA (Linux tcp_ack())
            self._probes = 0  # no probe is outstanding
        newly, dup = 0, False
        if self.sack_ok and (seg.options.sack_blocks or self._sb):
            sb = self._sb
            if sb is None:
                sb = self._sb = Scoreboard(self.config.max_ooo_segments)
            newly = sb.update(seg.options.sack_blocks, ack if new_ack else una, snd_max)
        rack = self._rack
        if new_ack:
            self._on_new_ack(seg, ack, now)
        elif ack == una and not ack_only and una != snd_max:  # data outstanding
            if rack is None:
                self._maybe_dupack(seg, now, newly)
            elif not self.sack_ok:
                dup = self._is_dupack(seg)
        # Window update (SA-4.5): only from a segment newer than the last one used.
        seq, wl1 = seg.seq, self.snd_wl1
        if (
            ((wl1 - seq) & MASK) >= HALF  # SND.WL1 < SEG.SEQ
            or (wl1 == seq and (self.snd_wl2 == ack or ((self.snd_wl2 - ack) & MASK) >= HALF))
        ):
            wnd = seg.window << self.snd_wscale
            if wnd != self.snd_wnd:
                self.snd_wnd = wnd
                if wnd > self.max_snd_wnd:
                    self.max_snd_wnd = wnd
                at = self.timers.at
                if wnd and at[PERSIST] is not None:
                    at[PERSIST] = None
                    self._persist_backoff = 0
            self.snd_wl1, self.snd_wl2 = seq, ack
        if rack is not None and (new_ack or rack.log):
            acked = (ack - una) & MASK if new_ack else 0
            if self.sack_ok:
                self._rack_ack(seg, new_ack, acked, now)
            else:
                self._reno_ack(new_ack, dup, acked, now)
        if self.state is _ESTABLISHED:
            return True  # the per-state part has nothing to do in ESTABLISHED
        return self._ack_state_step(seg, now)

    def _ack_syn_received(self, seg: Segment, now: float) -> bool:
        """Step five in SYN-RECEIVED: an ACK of our SYN moves to ESTABLISHED
        (and on to FIN-WAIT-1 if CLOSE came meanwhile); any other ACK is
        answered with a reset (SA-4.3)."""
        ack = seg.ack
        una = self.snd_una
        if not (_lt(una, ack) and _le(ack, self.snd_max)):
            self._emit_rst(ack, now)
            self._judge(Verdict.BAD_ACK_SYN_RECEIVED)
            return False
        self._ack_syn((una + 1) & MASK, now)
        self._set_state(_ESTABLISHED, now)
        self._events.append((self, CONNECTED))  # type: ignore[arg-type]
        self.snd_wnd = seg.window << self.snd_wscale
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1, self.snd_wl2 = seg.seq, ack
        if self._close_pending:
            self._close_pending = False
            self._queue_fin(_FIN_WAIT_1, now)
        return True

    def _on_new_ack(self, seg: Segment, ack: int, now: float) -> None:
        """SND.UNA < SEG.ACK <= SND.MAX: release acknowledged bytes, update
        RTT (Karn, or TSecr), congestion window and the retransmission timer."""
        acked = (ack - self.snd_una) & MASK  # > 0: the caller checked
        base = self._snd_base
        # Bytes of our stream (not SYN or FIN) covered by this ACK.
        data_acked = (ack - base) & MASK
        if data_acked >= HALF:
            data_acked = 0  # the ACK of our SYN only
        elif data_acked > self._sndbuf.size:
            data_acked = self._sndbuf.size  # and of our FIN
        if data_acked:
            del self._sndbuf[:data_acked]
            self._snd_base = (base + data_acked) & MASK
        self.snd_una = ack
        if ((self.snd_nxt - ack) & MASK) >= HALF:  # SND.NXT < SEG.ACK
            self.snd_nxt = ack
        self._retries = 0
        # An RTT sample: TSecr when timestamps are on (RFC 7323 §4), else the
        # one timed segment (Karn, RFC 6298 §3).
        ts = seg.options.timestamps
        sample: float | None = None
        if self.ts_ok and ts is not None and ts[1]:
            ts_now = int(now * 1000) + self._ts_offset  # _ts_now(now), written out
            sample = ((ts_now - ts[1]) & MASK) / 1000.0
            self.rtt.sample(sample, ack, self.snd_nxt)
        elif self._rtt_seq is not None and not _lt(ack, self._rtt_seq):
            sample = now - self._rtt_start
            self.rtt.sample(sample, ack, self.snd_nxt)
            self._rtt_seq = None
        cc = self.cc
        if cc.samples:
            cc.on_ack_sample(now, sample, ack, self.snd_max)  # CUBIC's clock, HyStart++'s RTTs
        # With RACK, recovery and cwnd are _rack_ack's, once the SACK blocks are read.
        if cc.in_recovery:
            if self._rack is None:
                self._newreno_ack(ack, acked, now)
        elif self._rack is None and (self._cwnd_use[0] or self._cwnd_used()):
            cc.on_new_ack(acked)
        cc.dupacks = 0
        # RFC 6298 §5.2/§5.3: stop the timer when all is acked, else restart.
        # The user timeout counts again from the oldest unacknowledged (TO-1).
        at = self.timers.at
        at[USER_TIMEOUT] = None
        if ack == self.snd_max:
            at[RETRANSMIT] = None
        else:
            hz = self.config.hz  # _rto_at(now), written out for the exact clock
            at[RETRANSMIT] = now + self.rtt.rto if hz is None else self._rto_at(now)
            if self.config.user_timeout is not None:
                self._arm_user_timeout(now)
        if data_acked > 0:
            self._events.append((self, SendAcknowledged(data_acked)))  # type: ignore[arg-type]
