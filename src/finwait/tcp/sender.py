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
(``_fin_seq``, set by CLOSE).  Every burst arms the retransmission timer.
ACKs come back through :meth:`Sender._step_ack`: a new ACK releases bytes,
samples the RTT, grows cwnd and restarts the timer (``_on_new_ack``); a
duplicate ACK counts towards fast retransmit and, in recovery, resends the
next hole (``_maybe_dupack``); the window update obeys SND.WL1/SND.WL2.  A
timeout goes back to SND.UNA (go-back-N, SND.MAX kept) and collapses cwnd
(``_on_rexmit_timeout``); a zero window is probed (``_on_persist``).

With RACK on (the Linux profile, with SACK), loss recovery is RFC 8985's
and RFC 6937's instead (``rack.py`` keeps the transmit log): the ACK goes to
``_rack_ack`` rather than DupAck counting, segments are deemed lost by
time (``_on_reorder_timeout``), the tail is probed (``_on_loss_probe``) and
PRR sets cwnd in recovery (CC-10 .. CC-14).

Sequence numbers are plain ints compared only through ``seqnum``.  SND.MAX
(the highest sequence sent) is kept besides SND.NXT: after a retransmission
timeout SND.NXT goes back to SND.UNA and ACKs up to SND.MAX stay acceptable.
Our FIN is located by sequence number: it has been sent when SND.MAX is past
it, and acknowledged when SND.UNA is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..wire.segment import ACK, FIN, PSH, SYN, Segment, TcpOptions, new_segment
from . import congestion, seqnum
from .buffers import SendBuffer
from .config import Config
from .events import Connected, SendAcknowledged
from .rack import TIMEOUT_MIN
from .rto import RttEstimator
from .scoreboard import Scoreboard
from .state import State
from .tcb import HALF, MASK, TcbCore
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
from .verdict import Verdict

_add = seqnum.add
_lt = seqnum.lt
_le = seqnum.le
_ESTABLISHED = State.ESTABLISHED
_SYN_RECEIVED = State.SYN_RECEIVED


class Sender(TcbCore):
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
        self._snd_base = _add(self.iss, 1)
        self._fin_seq = None
        self.cc = congestion.make(cfg.congestion_control, self.smss, cfg.initial_window_segments)
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max, cfg.rto_linux)
        self._rtt_seq = None
        self._rtt_start = 0.0
        self._sb = None
        self._high_rxt = 0
        self._retries = 0
        self._last_send = 0.0
        self._persist_backoff = 0
        self._ts_offset = ts_offset & MASK
        self._rack = None  # made when SACK is agreed and Config.rack is on (tcb._negotiated)

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
        opts = TcpOptions(mss=cfg.mss, wscale=wscale, sack_permitted=sack_perm, timestamps=ts)
        window = min(self.rcv_wnd, 0xFFFF)  # never scaled on a SYN (RFC 7323 §2.2)
        flags = SYN | ACK if ack else SYN
        if send:
            self._out.append(
                Segment(
                    self.local[0],
                    self.remote[0],
                    self.local[1],
                    self.remote[1],
                    self.iss,
                    self.rcv_nxt if ack else 0,
                    flags,
                    window,
                    b"",
                    opts,
                    0,
                )
            )
        if ack:
            self.last_ack_sent = self.rcv_nxt
            self._rcv_adv = _add(self.rcv_nxt, window)
            self._ack_now = False
            self.timers.cancel(DELAYED_ACK)
        self._last_send = now

    def _ack_syn(self, ack: int, now: float) -> None:
        self.snd_una = ack
        if _lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        self._retries = 0
        self.timers.cancel(RETRANSMIT)
        self.timers.cancel(USER_TIMEOUT)
        if self._rtt_seq is not None and not _lt(ack, self._rtt_seq):
            self.rtt.sample(now - self._rtt_start, ack, self.snd_nxt)
            self._rtt_seq = None
        self.rtt.backoff = 0

    def _push(self, now: float, override: bool = False, probe: bool = False) -> None:
        """Send what the windows allow: data from SND.NXT, then our FIN
        (piggybacked on the last data segment when it fits, LX-4).  The
        segments of one burst share their ACK, window and options, which are
        computed once.  ``override``: the SWS override timeout fired (or a
        retransmission), so a segment smaller than sender SWS avoidance
        allows may go.  ``probe``: a tail-loss probe, one segment whatever
        cwnd says (RFC 8985 §7.3).

        With RACK on, each segment is also logged (``rack.py``), and once
        the peer has SACKed or we have deemed segments lost, the congestion
        window bounds the pipe, not SND.NXT - SND.UNA (RFC 6675 §5, Linux
        ``tcp_packets_in_flight()``)."""
        if not self.state.sending:
            return
        buf = self._sndbuf
        smss = self.smss
        size = self._send_size  # SMSS, or a multiple of it the device cuts (TSO)
        fin_seq = self._fin_seq
        base = self._snd_base
        data_end = (base + len(buf)) & MASK
        una = self.snd_una
        cc = self.cc
        nxt = self.snd_nxt
        rack = self._rack
        if rack is None:
            wnd = min(self.snd_wnd, cc.cwnd) if not cc.dupacks else self._usable_window()
        elif probe:
            wnd = min(self.snd_wnd, ((nxt - una) & MASK) + smss)
        elif rack.sacked_out or rack.lost_out or rack.retrans_out:
            room = max(cc.cwnd // smss - rack.pipe(), 0) * smss
            wnd = min(self.snd_wnd, ((nxt - una) & MASK) + room)
        else:
            wnd = min(self.snd_wnd, cc.cwnd)
        snd_max = self.snd_max
        out = self._out
        header: tuple[int, int, TcpOptions] | None = None  # (ack, window, options)
        sent_data = False
        while True:
            unsent = (data_end - nxt) & MASK
            if unsent >= HALF:
                unsent -= MASK + 1  # past the data: our FIN was sent
            fin_due = nxt == fin_seq
            if unsent <= 0 and not fin_due:
                break
            flight = (nxt - una) & MASK
            n = 0
            if unsent > 0:
                n = min(unsent, size, wnd - flight)
                if n <= 0:
                    if self.snd_wnd == 0 and una == self.snd_max:
                        self._arm_persist(now)
                    break
                if n < smss and self._hold_small(n, unsent, flight, override, now):
                    break
            if header is None:
                header = self._ack_header(now)
                (src, sport), (dst, dport) = self.local, self.remote
            off = (nxt - base) & MASK
            end = (nxt + n) & MASK
            sent_data = sent_data or n > 0
            flags = ACK
            if n and end == data_end:
                flags |= PSH
            if end == fin_seq:
                flags |= FIN
            out.append(
                new_segment(Segment, (
                    src, dst, sport, dport, nxt, header[0], flags, header[1],
                    bytes(buf[off : off + n]) if n else b"", header[2], 0,
                ))
            )  # fmt: skip
            seq, nxt = nxt, (end + (flags & FIN)) & MASK
            if rack is not None:
                if seq == snd_max:
                    segs = rack.sent(seq, nxt, now, smss)
                else:
                    rack.resent(seq, nxt, now)  # go-back-N after a timeout
                    segs = -(-((nxt - seq) & MASK) // smss)
                if cc.in_recovery:
                    rack.prr_out += segs
            if _lt(snd_max, nxt):
                if self._rtt_seq is None and not self.ts_ok:
                    self._rtt_seq, self._rtt_start = nxt, now
                self.snd_max = snd_max = nxt
            if probe:
                break
        if header is not None:
            self._sent_burst(nxt, now, sent_data)
            if rack is not None and self.config.tlp and not probe:
                self._schedule_tlp(now, advancing=False)

    def _hold_small(self, n: int, unsent: int, flight: int, override: bool, now: float) -> bool:
        """Whether a segment of ``n`` < SMSS bytes waits.  Sender SWS
        avoidance (§3.8.6.2.1, MUST-38): less than a segment, and not all
        that is queued, goes only when nothing is in flight and it is at
        least half the largest window the peer offered; otherwise it waits
        for the window to open, or for the override timeout (the persist
        timer).  Then Nagle (RFC 896, §3.7.4), when on."""
        if n < unsent and not override:
            if flight > 0:
                return True
            if n < self.max_snd_wnd // 2:
                self._arm_persist(now)
                return True
        return self.config.nagle and flight > 0 and self._fin_seq is None

    def _usable_window(self) -> int:
        """min(SND.WND, cwnd), plus limited transmit (RFC 3042): a new
        segment for each of the first two DupAcks, cwnd itself unchanged, so
        a small flight can still draw the third."""
        cc = self.cc
        cwnd = cc.cwnd
        if cc.dupacks and not cc.in_recovery:
            cwnd += min(cc.dupacks, 2) * self.smss
        return min(self.snd_wnd, cwnd)

    def _sent_burst(self, nxt: int, now: float, sent_data: bool) -> None:
        """After a burst: SND.NXT, the retransmission timer (RFC 6298 §5.1),
        and no persist timer while data is in flight."""
        if sent_data and now - self._last_data_rcv < self.config.delayed_ack_timeout:
            # Data sent soon after data arrived: an interactive exchange
            # (Linux tcp_event_data_sent(), pingpong); only quick ACKs care.
            self._pingpong = True
        self.snd_nxt = nxt
        self._last_send = now
        at = self.timers.at  # _arm_rexmit and cancel(PERSIST), written out
        if at[RETRANSMIT] is None:
            at[RETRANSMIT] = self._rto_at(now)
        if self.config.user_timeout is not None:
            self._arm_user_timeout(now)
        at[PERSIST] = None
        self._persist_backoff = 0

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
            if st in (State.SYN_SENT, State.SYN_RECEIVED)
            else (self.config.data_retries)
        )
        if self._retries > limit:
            if st is State.SYN_RECEIVED and self.passive:
                self._count("synack_timeout")
                self._set_state(State.LISTEN, now)  # back to the listener, silently
                self._delete(now)
                return
            self._time_out(now, "retransmission_timeout")
            return
        self._count("rto")
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
            self._emit_syn(now, ack=st is not State.SYN_SENT)
            if st is State.FIN_WAIT_1:
                self.snd_nxt = _add(self.iss, 1)
                self._push(now)
        elif st.sending:
            flight = seqnum.sub(self.snd_max, self.snd_una)
            self.cc.on_timeout(flight)
            self.cc.recover = self.snd_max
            self.snd_nxt = self.snd_una  # go back N
            self._push(now, override=True)  # what was sent is resent, small or not
        self._arm_rexmit(now)

    def _on_persist(self, now: float) -> None:
        """Zero-window probe (§3.8.6.1): Linux's form, ``<SEQ=SND.UNA-1>``
        with no data, which the peer must answer with its current window."""
        self.timers.cancel(PERSIST)
        if not self.state.sending:
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
        self._persist_backoff = min(self._persist_backoff + 1, 16)
        backoff = self.rtt.rto * (1 << self._persist_backoff)
        self.timers.arm(PERSIST, now + min(backoff, self.config.rto_max))

    def _on_keepalive(self, now: float) -> None:
        self.timers.cancel(KEEPALIVE)
        if self.config.keepalive is None or self.state is not State.ESTABLISHED:
            return
        if now - self._last_recv >= self.config.keepalive:
            self._count("keepalive_probe")
            self._emit(_add(self.snd_una, -1), ACK, now)
        self.timers.arm(KEEPALIVE, now + self.config.keepalive)

    def _retransmit_first(self, now: float) -> None:
        """Fast retransmit / partial ACK: resend the segment at SND.UNA."""
        self._retransmit(self.snd_una, self.smss, now)

    def _retransmit(self, seq: int, limit: int, now: float) -> bool:
        """Resend up to ``limit`` bytes from ``seq`` (with our FIN when they
        reach it), stopping short of bytes the peer has SACKed."""
        off = seqnum.sub(seq, self._snd_base)
        n = min(limit, max(len(self._sndbuf) - off, 0))
        sb = self._sb
        if sb and self._rack is None:
            # (With RACK the caller picks whole segments the log holds
            # un-SACKed; a segment partly SACKed goes whole, as Linux's.)
            gap = sb.sacked_from(seq, self.snd_una)
            if gap is not None and gap < n:
                n = gap
        flags = ACK
        end = _add(seq, n)
        if self._fin_seq is not None and end == self._fin_seq and _lt(end, self.snd_max):
            flags |= FIN
        if n == 0 and not flags & FIN:
            return False
        self._count("fast_retransmit")
        self._rtt_seq = None
        self._high_rxt = _add(end, flags & FIN)
        if self._rack is not None:
            self._rack.resent(seq, self._high_rxt, now)
        self._emit(seq, flags, now, bytes(self._sndbuf[off : off + n]))
        return True

    def _retransmit_hole(self, now: float) -> bool:
        """RFC 6675 NextSeg rule 1: the next lost hole after HighRxt, if any."""
        sb = self._sb
        if not sb:
            return False
        una = self.snd_una
        start = self._high_rxt if _lt(una, self._high_rxt) else una
        hole = sb.next_hole(start, una, self.smss)
        if hole is None:
            return False
        return self._retransmit(hole[0], hole[1], now)

    # -- RACK-TLP (RFC 8985) and PRR (RFC 6937), the Linux profile ----------

    def _rack_ack(self, seg: Segment, new_ack: bool, acked: int, now: float) -> None:
        """Loss recovery on an ACK with RACK on (instead of DupAck counting):
        log the deliveries, close a TLP episode, leave recovery, detect
        losses by time, enter recovery, set cwnd (PRR) and resend what is
        lost, as Linux's tcp_ack() / tcp_fastretrans_alert() (CC-10, CC-14)."""
        rack = self._rack
        assert rack is not None
        cc = self.cc
        cfg = self.config
        una = self.snd_una
        rtt = self.rtt
        blocks = seg.options.sack_blocks
        sacked_before = rack.sacked_out
        delivered, dsack = rack.on_ack(una, blocks, self.snd_max, now, rtt.min_rtt)
        if dsack:
            self._count("dsack")
            rack.on_dsack(una, self.snd_nxt)
        if rack.loss_high is not None and _le(rack.loss_high, una):
            rack.loss_high = None  # all that was outstanding at the RTO is acknowledged
        tlp_high = rack.tlp_high_seq
        if tlp_high is not None and _le(tlp_high, seg.ack):
            # RFC 8985 §7.4 (Linux tcp_process_tlp_ack()): was the probe needed?
            if not rack.tlp_retrans or dsack:
                rack.tlp_high_seq = None  # new data, or both copies arrived: no loss
            elif _lt(tlp_high, seg.ack):
                # The probe repaired a loss: reduce cwnd as for one (Linux CWR).
                rack.tlp_high_seq = None
                self._count("tlp_recovery")
                ssthresh = self._loss_ssthresh()
                cc.ssthresh = cc.cwnd = ssthresh
            elif not new_ack and not delivered and not seg.payload:
                rack.tlp_high_seq = None  # a pure duplicate: both copies arrived
        exited = False
        if cc.in_recovery and _le(cc.recover, una):
            cc.in_recovery = False  # Linux tcp_end_cwnd_reduction(): cwnd = ssthresh
            cc.cwnd = cc.ssthresh
            rack.on_recovery_end()
            exited = True
        newly_lost = 0
        timers = self.timers
        if (
            (rack.sacked_out or rack.retrans_out)
            and rack.loss_high is None
            and rtt.srtt is not None
        ):
            # Only then can a segment sent before the latest delivered one
            # still be out; an in-order ACK clock costs no scan.
            reo = rack.reo_wnd(cc.in_recovery, rtt.srtt, rtt.min_rtt)
            newly_lost, wait = rack.detect_loss(now, reo)
            timers.at[REORDER] = now + wait + TIMEOUT_MIN if wait else None
        elif new_ack:
            timers.at[REORDER] = None
        if newly_lost and not cc.in_recovery:
            self._enter_rack_recovery(now)
        if cc.in_recovery:
            if delivered:
                self._recovery_cwnd(delivered, new_ack, newly_lost)
        elif new_ack and not exited:
            # Byte counting counts what this ACK newly delivered: bytes SACKed
            # before count once, when SACKed (Linux: acked_sacked).
            cc.on_new_ack(rack.delivered_bytes if sacked_before else acked)
        if cc.in_recovery or rack.lost_out:
            self._rack_retransmit(now)
        if una == self.snd_max:
            timers.at[LOSS_PROBE] = None
        elif new_ack and cfg.tlp and timers.at[REORDER] is None:
            self._schedule_tlp(now, advancing=True)

    def _loss_ssthresh(self) -> int:
        """ssthresh after a loss, as the algorithm computes it from cwnd (Linux
        ``ssthresh()`` halves cwnd, where RFC 5681 halves FlightSize)."""
        cc = self.cc
        cwnd, recover, in_rec = cc.cwnd, cc.recover, cc.in_recovery
        cc.enter_recovery(cwnd)
        ssthresh = cc.ssthresh
        cc.cwnd, cc.recover, cc.in_recovery = cwnd, recover, in_rec
        return ssthresh

    def _enter_rack_recovery(self, now: float) -> None:
        """Fast recovery on RACK's first loss (Linux tcp_enter_recovery()):
        ssthresh from cwnd, PRR's RecoverFS, recover = SND.NXT."""
        rack = self._rack
        assert rack is not None
        cc = self.cc
        self._count("rack_recovery")
        prior = cc.cwnd
        rack.prr_start(prior // self.smss)
        cc.enter_recovery(prior)
        cc.recover = self.snd_nxt
        rack.tlp_high_seq = None
        self.timers.at[LOSS_PROBE] = None

    def _recovery_cwnd(self, delivered: int, una_advanced: bool, newly_lost: int) -> None:
        """cwnd in recovery: PRR (RFC 6937, CC-12, CC-13) when on, else
        ssthresh (RFC 6675)."""
        rack = self._rack
        assert rack is not None
        cc = self.cc
        smss = self.smss
        if self.config.prr:
            sndcnt = rack.prr_sndcnt(delivered, cc.ssthresh // smss, una_advanced, newly_lost)
            cc.cwnd = (rack.pipe() + sndcnt) * smss
        else:
            cc.cwnd = cc.ssthresh

    def _rack_retransmit(self, now: float) -> None:
        """Resend the segments deemed lost, lowest first, while the pipe is
        below cwnd (Linux tcp_xmit_retransmit_queue()); none in the Loss state
        after a timeout, where go-back-N resends."""
        rack = self._rack
        assert rack is not None
        if rack.loss_high is not None:
            return
        cwnd = self.cc.cwnd // self.smss
        in_rec = self.cc.in_recovery
        while rack.lost_out and rack.pipe() < cwnd:
            rec = rack.first_lost()
            if rec is None or not self._retransmit(rec.seq, (rec.end - rec.seq) & MASK, now):
                break
            if in_rec:
                rack.prr_out += 1
            if rec.seq == self.snd_una:
                self.timers.at[RETRANSMIT] = self._rto_at(now)  # the head resent: RTO anew

    def _on_reorder_timeout(self, now: float) -> None:
        """RACK's reordering timer (RFC 8985 §6.3, Linux
        tcp_rack_reo_timeout()): look again; what is now overdue is lost."""
        rack = self._rack
        if rack is None or not self.state.sending or rack.loss_high is not None:
            return
        cc = self.cc
        rtt = self.rtt
        reo = rack.reo_wnd(cc.in_recovery, rtt.srtt or 0.0, rtt.min_rtt)
        newly, wait = rack.detect_loss(now, reo)
        if wait:
            self.timers.at[REORDER] = now + wait + TIMEOUT_MIN
        if newly:
            if not cc.in_recovery:
                self._enter_rack_recovery(now)
                self._recovery_cwnd(1, False, newly)
            self._rack_retransmit(now)

    def _schedule_tlp(self, now: float, advancing: bool) -> None:
        """Arm the probe timeout (RFC 8985 §7.2, Linux
        tcp_schedule_loss_probe()): 2·SRTT, plus the minimum RTO (for a
        delayed ACK) when one segment is out, else 2 ms; 1 s without an RTT
        sample; never later than the RTO.  Not in recovery or after a
        timeout, and never a second probe in one episode (CC-11)."""
        rack = self._rack
        assert rack is not None
        at = self.timers.at
        if not rack.log or self.cc.in_recovery or rack.loss_high is not None:
            at[LOSS_PROBE] = None
            return
        srtt = self.rtt.srtt
        if srtt is None:
            pto = 1.0
        else:
            pto = 2 * srtt + (self.config.rto_min if len(rack.log) == 1 else TIMEOUT_MIN)
        hz = self.config.hz
        if hz is not None:  # on the tick; never after the RTO's expiry
            rto_at = self._rto_at(now) if advancing else at[RETRANSMIT]
            probe_at = tick_expiry(now, pto, hz)
            at[LOSS_PROBE] = probe_at if rto_at is None else min(probe_at, rto_at)
            return
        rto_left = self.rtt.rto if advancing else (at[RETRANSMIT] or now) - now
        if rto_left > 0:
            pto = min(pto, rto_left)
        at[LOSS_PROBE] = now + pto

    def _on_loss_probe(self, now: float) -> None:
        """The probe timeout (RFC 8985 §7.3, Linux tcp_send_loss_probe()):
        send one new segment if the peer's window takes it, else the last
        segment sent again; then the RTO runs afresh from now."""
        rack = self._rack
        if rack is None or not self.state.sending or not rack.log:
            return
        if rack.tlp_high_seq is not None:
            return  # one probe per episode; the RTO stays armed
        before = self.snd_max
        rack.tlp_retrans = False
        self._push(now, probe=True)
        if self.snd_max == before:
            # No new data can go: the last segment again, its last SMSS.
            last = rack.log[-1]
            size = (last.end - last.seq) & MASK
            seq = _add(last.seq, (size - 1) // self.smss * self.smss)
            if not self._retransmit(seq, (last.end - seq) & MASK, now):
                return
            rack.tlp_retrans = True
        rack.tlp_high_seq = self.snd_max
        self._count("tlp")
        self.timers.at[RETRANSMIT] = self._rto_at(now)

    def _step_ack(self, seg: Segment, now: float, ack_only: bool = False) -> bool:
        """Step five: the ACK field (§3.10.7.4 fifth, RFC 5961 §5.2)."""
        ack = seg.ack
        una = self.snd_una
        if self.state is _SYN_RECEIVED:
            if not (_lt(una, ack) and _le(ack, self.snd_max)):
                self._emit_rst(ack, now)  # SA-4.3
                self._judge(Verdict.BAD_ACK_SYN_RECEIVED)
                return False
            self._ack_syn(_add(una, 1), now)
            self._set_state(State.ESTABLISHED, now)
            self._event(Connected())
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            una = self.snd_una
            if self._close_pending:
                self._close_pending = False
                self._queue_fin(State.FIN_WAIT_1, now)
        # RFC 5961 §5.2: acceptable only in [SND.UNA - MAX.SND.WND, SND.MAX].
        # (seqnum comparisons written out: this runs for every segment)
        snd_max = self.snd_max
        if ((snd_max - ack) & MASK) >= HALF:  # SND.MAX < SEG.ACK
            self._challenge_ack(seg, now, Verdict.ACK_OF_UNSENT_DATA)
            return False
        if ((ack - una + self.max_snd_wnd) & MASK) >= HALF:  # SEG.ACK < SND.UNA - MAX.SND.WND
            self._challenge_ack(seg, now, Verdict.ACK_TOO_OLD)
            return False
        newly = 0
        new_ack = ack != una and ((una - ack) & MASK) >= HALF  # SND.UNA < SEG.ACK
        if self.sack_ok and (seg.options.sack_blocks or self._sb):
            sb = self._sb
            if sb is None:
                sb = self._sb = Scoreboard(self.config.max_ooo_segments)
            newly = sb.update(seg.options.sack_blocks, ack if new_ack else una, snd_max)
        rack = self._rack
        if new_ack:
            self._on_new_ack(seg, ack, now)
        elif rack is None and ack == una and not ack_only and una != snd_max:  # data outstanding
            self._maybe_dupack(seg, now, newly)
        # Window update (SA-4.5): only from a segment newer than the last one used.
        seq = seg.seq
        wl1 = self.snd_wl1
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
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
        if rack is not None and (new_ack or rack.log):
            self._rack_ack(seg, new_ack, (ack - una) & MASK if new_ack else 0, now)
        if self.state is _ESTABLISHED:
            return True  # the per-state part has nothing to do in ESTABLISHED
        return self._ack_state_step(seg, now)

    def _on_new_ack(self, seg: Segment, ack: int, now: float) -> None:
        """SND.UNA < SEG.ACK <= SND.MAX: release acknowledged bytes, update
        RTT (Karn, or TSecr), congestion window and the retransmission timer."""
        acked = (ack - self.snd_una) & MASK  # > 0: the caller checked
        base = self._snd_base
        # Bytes of our stream (not SYN or FIN) covered by this ACK.
        data_acked = (ack - base) & MASK
        if data_acked >= HALF:
            data_acked = 0  # the ACK of our SYN only
        elif data_acked > len(self._sndbuf):
            data_acked = len(self._sndbuf)  # and of our FIN
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
            sample = ((self._ts_now(now) - ts[1]) & MASK) / 1000.0
            self.rtt.sample(sample, ack, self.snd_nxt)
        elif self._rtt_seq is not None and not _lt(ack, self._rtt_seq):
            sample = now - self._rtt_start
            self.rtt.sample(sample, ack, self.snd_nxt)
            self._rtt_seq = None
        cc = self.cc
        cc.on_ack_sample(now, sample, ack, self.snd_max)  # CUBIC's clock, HyStart++'s RTTs
        if self._rack is not None:
            pass  # recovery and cwnd: _rack_ack, once the SACK blocks are read
        elif cc.in_recovery:
            if _lt(ack, cc.recover):
                cc.on_partial_ack(acked)  # RFC 6582: stay, resend the next hole
                if not self._sb or _le(self._high_rxt, ack):
                    self._retransmit_first(now)  # SND.UNA not resent yet in this recovery
                else:
                    self._retransmit_hole(now)  # it was (RFC 6675): the next lost hole
            else:
                cc.on_full_ack(seqnum.sub(self.snd_max, ack))
        else:
            cc.on_new_ack(acked)
        cc.dupacks = 0
        # RFC 6298 §5.2/§5.3: stop the timer when all is acked, else restart.
        # The user timeout counts again from the oldest unacknowledged (TO-1).
        at = self.timers.at
        at[USER_TIMEOUT] = None
        if ack == self.snd_max:
            at[RETRANSMIT] = None
        else:
            at[RETRANSMIT] = self._rto_at(now)
            if self.config.user_timeout is not None:
                self._arm_user_timeout(now)
        if data_acked > 0:
            self._events.append((self, SendAcknowledged(data_acked)))  # type: ignore[arg-type]

    def _maybe_dupack(self, seg: Segment, now: float, newly_sacked: int = 0) -> None:
        """A duplicate ACK sets off fast retransmit on the third, and in
        recovery lets one segment out.  Without SACK, RFC 5681 §2 (CC-6):
        data outstanding, no data and no SYN/FIN on the segment, the window
        unchanged — so a FIN is never a duplicate ACK.  With SACK, RFC 6675
        §2: the ACK must also SACK bytes not SACKed before, so repeated ACKs
        that tell nothing new (an answer to an injected segment, say) do
        not count; and the loss of SND.UNA is also inferred from the SACKed
        bytes above it (IsLost, §5)."""
        if self.snd_una == self.snd_max or seg.flags & (SYN | FIN):
            return
        sack = self.sack_ok
        if sack:
            if not newly_sacked:
                return
        elif seg.payload or (seg.window << self.snd_wscale) != self.snd_wnd:
            return
        cc = self.cc
        cc.dupacks += 1
        self._count("dupack")
        una = self.snd_una
        if cc.in_recovery:
            # One segment out per DupAck: a lost hole if there is one (RFC 6675
            # NextSeg rule 1), else the inflated window lets new data go.
            if not (sack and self._retransmit_hole(now)):
                cc.on_dupack_in_recovery()
        elif (
            cc.dupacks >= self._dupthresh()
            or (sack and self._sb is not None and self._sb.is_lost(una, self.smss))
        ) and _le(cc.recover, una):
            # RFC 6582 §3.2: not again for losses of the window already recovered.
            cc.enter_recovery(seqnum.sub(self.snd_max, una))
            cc.recover = self.snd_max
            self._retransmit_first(now)
            self.timers.arm(RETRANSMIT, self._rto_at(now))

    def _dupthresh(self) -> int:
        """3 (RFC 5681), or fewer for a small flight with nothing new to send
        (early retransmit, RFC 5827 §3.1: outstanding segments - 1), which
        would otherwise wait for the retransmission timer."""
        flight = seqnum.sub(self.snd_max, self.snd_una)
        oseg = -(-flight // self.smss)
        if not 2 <= oseg <= 3:
            return 3  # one segment outstanding draws no DupAck; four and more are RFC 5681's
        unsent = seqnum.sub(_add(self._snd_base, len(self._sndbuf)), self.snd_max)
        if unsent > 0 and self.snd_wnd > flight:
            return 3  # new data can go out: limited transmit draws the DupAcks
        return max(oseg - 1, 1)
