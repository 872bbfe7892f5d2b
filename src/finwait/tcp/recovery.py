"""How finwait recovers from loss: fast retransmit and fast recovery.

``sender.py`` is how finwait sends (segments out, ACKs in, timers); this
module is what the sender does once it suspects a loss short of a timeout.
Two forms, chosen by ``Config.rack`` (the Linux profile turns it on):

* RFC 5681 / RFC 6582 NewReno with RFC 6675 SACK (the default): DupAcks
  are counted (``_maybe_dupack``) and the third, or fewer for a small flight
  (RFC 5827 early retransmit, ``_dupthresh``), enters fast recovery and
  resends SND.UNA; in recovery each DupAck resends the next lost hole
  (``_retransmit_hole``, from the scoreboard in ``scoreboard.py``) and a
  partial ACK resends the next one (``_newreno_ack``).  RFC 3042 limited
  transmit lets new segments out on the first two DupAcks
  (``_send_window``).
* RFC 8985 RACK-TLP with RFC 6937 PRR (the Linux profile): with SACK, no
  DupAck counting; every ACK goes to ``_rack_ack``, which feeds the transmit log (``rack.py``), closes a
  TLP episode (``_tlp_ack``), deems segments lost by time (``_rack_detect``,
  and later ``_on_reorder_timeout``), enters recovery
  (``_enter_rack_recovery``), sets cwnd by PRR (``_recovery_cwnd``) and
  resends what is lost (``_rack_retransmit``); a quiet tail is probed
  (``_schedule_tlp``, ``_on_loss_probe``).  In ``_send_window`` the pipe,
  not SND.NXT - SND.UNA, bounds what ``_push`` may send.  When the peer
  cannot SACK, ACKs go to ``_reno_ack`` instead: Linux's DupAck counting
  (``tcp_is_reno()``: three DupAcks deem SND.UNA lost, a partial ACK the
  next segment) on the same log, with PRR and resending but no RACK or TLP
  (CC-15).

Both resend through ``_retransmit``, which never runs into SACKed bytes.
The congestion arithmetic (ssthresh, cwnd in and after recovery) is the
algorithm's, in ``congestion.py``; the retransmission timeout itself
(go-back-N) is the sender's, ``Sender._on_rexmit_timeout``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..wire.segment import ACK, FIN, SYN, Segment
from . import seqnum
from .rack import DUPTHRESH, TIMEOUT_MIN
from .tcb import MASK, TcbCore
from .timers import LOSS_PROBE, REORDER, RETRANSMIT, tick_expiry

_add = seqnum.add
_lt = seqnum.lt
_le = seqnum.le


class Recovery(TcbCore):
    """Loss recovery, the sender's; see the module docstring."""

    if not TYPE_CHECKING:  # the slots are Connection's; mypy checks the annotations
        __slots__ = ()

    def _send_window(self, nxt: int, probe: bool) -> int:
        """What ``_push`` may have in flight (as an offset from SND.UNA)
        when loss recovery has a say.  Without RACK: min(SND.WND, cwnd),
        plus limited transmit (RFC 3042): a new segment for each of the
        first two DupAcks, cwnd itself unchanged, so a small flight can
        still draw the third.  With RACK: a tail-loss probe takes one
        segment whatever cwnd says (RFC 8985 §7.3); once the peer has
        SACKed or we have deemed segments lost, cwnd bounds the pipe, not
        SND.NXT - SND.UNA (RFC 6675 §5, Linux ``tcp_packets_in_flight()``)."""
        cc = self.cc
        smss = self.smss
        rack = self._rack
        if rack is None:
            cwnd = cc.cwnd
            if cc.dupacks and not cc.in_recovery:
                cwnd += min(cc.dupacks, 2) * smss
            return min(self.snd_wnd, cwnd)
        if probe:
            return min(self.snd_wnd, ((nxt - self.snd_una) & MASK) + smss)
        if rack.sacked_out or rack.lost_out or rack.retrans_out:
            room = max(cc.cwnd // smss - rack.pipe(), 0) * smss
            return min(self.snd_wnd, ((nxt - self.snd_una) & MASK) + room)
        return min(self.snd_wnd, cc.cwnd)

    def _rack_log(self, seq: int, end: int, new: bool, now: float) -> None:
        """``_push`` sent [seq, end): new data, or again (go-back-N after a
        timeout)."""
        rack = self._rack
        assert rack is not None
        if new:
            rack.sent(seq, end, now, self.smss, self.cc.in_recovery)
        else:
            self._rack_resent(seq, end, now)

    def _rack_resent(self, seq: int, end: int, now: float) -> None:
        """``_push`` sent [seq, end) again (go-back-N after a timeout): the
        log's records are retransmissions now, counted by PRR in recovery."""
        rack = self._rack
        assert rack is not None
        rack.resent(seq, end, now)
        if self.cc.in_recovery:
            rack.prr_out += -(-((end - seq) & MASK) // self.smss)

    # -- resending --------------------------------------------------------

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
        if self._box.drops:  # LX-18: refused, so not resent (Linux tcp_retransmit_skb())
            self._count("local_drop")
            return False
        if (
            (self._box.paces or self.config.pacing)
            and self._rack is not None
            and self._pace(now, n)
        ):
            return False  # CC-16: held, the PACE timer resends (Sender._on_pace)
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

    # -- NewReno with SACK (RFC 5681, RFC 6582, RFC 6675) ------------------

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
        elif not self._is_dupack(seg):
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

    def _is_dupack(self, seg: Segment) -> bool:
        """RFC 5681 §2 without SACK (the caller has checked SEG.ACK = SND.UNA
        with data outstanding): no data, no SYN or FIN, the window unchanged."""
        if seg.payload or seg.flags & (SYN | FIN):
            return False
        return (seg.window << self.snd_wscale) == self.snd_wnd

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

    def _newreno_ack(self, ack: int, acked: int, now: float) -> None:
        """A new ACK in fast recovery, without RACK: a partial ACK (below
        ``recover``) stays in recovery and resends the next hole (RFC 6582
        §3.2 step 5; with SACK, RFC 6675: SND.UNA if not resent yet in this
        recovery, else the next lost hole); a full ACK leaves it."""
        cc = self.cc
        if _lt(ack, cc.recover):
            cc.on_partial_ack(acked)
            if not self._sb or _le(self._high_rxt, ack):
                self._retransmit_first(now)
            else:
                self._retransmit_hole(now)
        else:
            cc.on_full_ack(seqnum.sub(self.snd_max, ack))

    def _validate_cwnd(self, nxt: int) -> None:
        """After a burst, Linux's record of the window's use (LX-16,
        tcp_cwnd_validate()): for the round (until SND.UNA reaches the SND.NXT
        noted), whether a burst filled cwnd, else the most segments out."""
        smss, rack = self.smss, self._rack
        out = -(-((nxt - self.snd_una) & MASK) // smss)
        filled = (rack.pipe() if rack is not None else out) >= self.cc.cwnd // smss
        was, most, end = self._cwnd_use
        if not _lt(self.snd_una, end) or filled or (not was and out > most):
            self._cwnd_use = (filled, out, nxt)

    def _cwnd_used(self) -> bool:
        """Whether an ACK may grow cwnd (tcp_is_cwnd_limited()): the window
        was filled this round or, in slow start, is below twice the most
        segments out; always without Config.cwnd_validate."""
        filled, most, _ = self._cwnd_use
        cc = self.cc
        return filled or (cc.cwnd < cc.ssthresh and cc.cwnd // self.smss < 2 * most)

    # -- RACK-TLP (RFC 8985) and PRR (RFC 6937), the Linux profile ----------

    def _rack_ack(self, seg: Segment, new_ack: bool, acked: int, now: float) -> None:
        """Loss recovery on an ACK with RACK on (instead of DupAck counting):
        log the deliveries, close a TLP episode, leave recovery, detect
        losses by time, enter recovery, set cwnd (PRR) and resend what is
        lost, as Linux's tcp_ack() / tcp_fastretrans_alert() (CC-10, CC-14)."""
        rack = self._rack
        assert rack is not None
        cc = self.cc
        una = self.snd_una
        sacked_before = rack.sacked_out
        delivered, dsack = rack.on_ack(
            una, seg.options.sack_blocks, self.snd_max, now, self.rtt.min_rtt
        )
        if dsack:
            self._count("dsack")
            rack.on_dsack(una, self.snd_nxt)
        if rack.loss_high is not None and _le(rack.loss_high, una):
            rack.loss_high = None  # all that was outstanding at the RTO is acknowledged
        if rack.tlp_high_seq is not None:
            self._tlp_ack(seg, new_ack, delivered, dsack)
        exited = False
        if cc.in_recovery and _le(cc.recover, una):
            cc.in_recovery = False  # Linux tcp_end_cwnd_reduction(): cwnd = ssthresh
            cc.cwnd = cc.ssthresh
            rack.on_recovery_end()
            exited = True
        newly_lost = self._rack_detect(new_ack, now)
        if newly_lost and not cc.in_recovery:
            self._enter_rack_recovery(now)
        # Linux tcp_may_raise_cwnd(): an ACK of new data, or any delivery
        # once reordering is high (LX-17); only while cwnd is used (LX-16).
        grow = new_ack or (delivered > 0 and rack.reordering > DUPTHRESH)
        if cc.in_recovery:
            if delivered:
                self._recovery_cwnd(delivered, new_ack, newly_lost)
        elif grow and not exited and self._cwnd_used():
            # Byte counting counts what this ACK newly delivered: bytes SACKed
            # before count once, when SACKed (Linux: acked_sacked).
            cc.on_new_ack(rack.delivered_bytes if sacked_before or not new_ack else acked)
        if cc.in_recovery or rack.lost_out:
            self._rack_retransmit(now)
        at = self.timers.at
        if una == self.snd_max:
            at[LOSS_PROBE] = None
        elif new_ack and self.config.tlp and at[REORDER] is None:
            self._schedule_tlp(now, advancing=True)

    def _reno_ack(self, new_ack: bool, dup: bool, acked: int, now: float) -> None:
        """Loss recovery on an ACK in the Linux profile when the peer cannot
        SACK (Linux tcp_is_reno(), CC-15): each DupAck (``dup``) counts one
        segment delivered, a cumulative ACK the rest (``Rack.reno_dupack``,
        ``Rack.reno_ack``); the third DupAck deems SND.UNA lost and enters
        recovery; in it a partial ACK deems the next segment lost, cwnd
        follows PRR and the lost segments are resent as with RACK.  An ACK of
        exactly ``recover`` keeps recovery on (RFC 6582 §3.2 step 5, Linux
        tcp_try_undo_recovery()); one beyond ends it, cwnd = ssthresh."""
        rack = self._rack
        assert rack is not None
        cc = self.cc
        una = self.snd_una
        delivered = rack.reno_ack(una, now, self.rtt.min_rtt) if new_ack else 0
        if rack.loss_high is not None and _le(rack.loss_high, una):
            rack.loss_high = None
        exited = hold = False
        newly_lost = 0
        if new_ack and cc.in_recovery and _le(cc.recover, una):
            rack.sacked_out = 0  # tcp_reset_reno_sack()
            hold = una == cc.recover
            if not hold:
                cc.in_recovery = False  # tcp_end_cwnd_reduction()
                cc.cwnd = cc.ssthresh
                rack.on_recovery_end()
                exited = True
        elif new_ack and not cc.in_recovery:
            rack.sacked_out = 0  # leaving Disorder
        if dup and rack.loss_high is None:
            delivered += rack.reno_dupack()
        if rack.loss_high is None and not hold:
            if cc.in_recovery:
                if new_ack:  # a partial ACK: the next segment is lost too
                    newly_lost = rack.mark_head_lost()
            elif rack.sacked_out >= rack.reordering:  # the third DupAck
                newly_lost = rack.mark_head_lost()
                self._enter_rack_recovery(now)
        if cc.in_recovery:
            if delivered:
                self._recovery_cwnd(delivered, new_ack, newly_lost)
        elif new_ack and not exited and self._cwnd_used():
            cc.on_new_ack(min(acked, delivered * self.smss))
        if cc.in_recovery or rack.lost_out:
            self._rack_retransmit(now)

    def _tlp_ack(self, seg: Segment, new_ack: bool, delivered: int, dsack: bool) -> None:
        """An ACK during a TLP episode (RFC 8985 §7.4, Linux
        tcp_process_tlp_ack()): once it covers the probe, was the probe
        needed?  If it repaired a loss, cwnd is reduced as for one (CWR)."""
        rack = self._rack
        assert rack is not None
        tlp_high = rack.tlp_high_seq
        if tlp_high is None or not _le(tlp_high, seg.ack):
            return
        if not rack.tlp_retrans or dsack:
            rack.tlp_high_seq = None  # new data, or both copies arrived: no loss
        elif _lt(tlp_high, seg.ack):
            rack.tlp_high_seq = None
            self._count("tlp_recovery")
            cc = self.cc
            cc.ssthresh = cc.cwnd = self._loss_ssthresh()
        elif not new_ack and not delivered and not seg.payload:
            rack.tlp_high_seq = None  # a pure duplicate: both copies arrived

    def _rack_detect(self, new_ack: bool, now: float) -> int:
        """RACK's loss detection on an ACK (RFC 8985 §6.2 step 5): only when
        a segment sent before the latest delivered one can still be out (an
        in-order ACK clock costs no scan); arms or stops the reordering
        timer.  Returns the number of segments newly deemed lost."""
        rack = self._rack
        assert rack is not None
        rtt = self.rtt
        at = self.timers.at
        if (
            (rack.sacked_out or rack.retrans_out)
            and rack.loss_high is None
            and rtt.srtt is not None
        ):
            reo = rack.reo_wnd(self.cc.in_recovery, rtt.srtt, rtt.min_rtt)
            newly_lost, wait = rack.detect_loss(now, reo)
            at[REORDER] = now + wait + TIMEOUT_MIN if wait else None
            return newly_lost
        if new_ack:
            at[REORDER] = None
        return 0

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
        timeout, never without SACK (Linux's tcp_schedule_loss_probe()
        needs tcp_is_sack(); CC-15), and never a second probe in one
        episode (CC-11)."""
        rack = self._rack
        assert rack is not None
        at = self.timers.at
        if not rack.log or self.cc.in_recovery or rack.loss_high is not None or not self.sack_ok:
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
