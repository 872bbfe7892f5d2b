"""RACK-TLP loss detection (RFC 8985) and PRR (RFC 6937): the sender's
transmit log and the numbers of a loss-recovery episode.

Read RFC 8985 §6 (RACK: a segment is lost when a segment sent *after* it
was delivered more than an RTT plus a reordering window ago), §7 (TLP: when
the tail of a flight goes unanswered for about two RTTs, send one probe to
draw an ACK that RACK can use) and RFC 6937 §3 (PRR: during recovery, send
in proportion to what is delivered so the flight falls smoothly to
ssthresh; PRR-SSRB once below it).  The Linux profile turns them on
(``Config.rack``, ``Config.tlp``, ``Config.prr``), as Linux runs them by
default (``tcp_recovery=1``, ``tcp_early_retrans=3``; ``tcp_recovery.c``,
``tcp_schedule_loss_probe()``, ``tcp_cwnd_reduction()``).

:class:`Rack` keeps one record (:class:`Sent`) per transmitted segment in
[SND.UNA, SND.MAX): its sequence range, when it was last sent, and whether
it was retransmitted, SACKed or deemed lost.  The sender adds a record per
segment it sends (and only when RACK is on), cuts records as the ACK
advances and marks them from SACK blocks; everything else here is counting
over that log.  Counts are in segments ("packets"), as Linux counts: the
pipe is ``packets_out - (sacked_out + lost_out) + retrans_out``.

When the peer cannot SACK the log is kept all the same, for PRR and
resending, but nothing marks its records SACKed: ``sacked_out`` counts
duplicate ACKs instead, as Linux's ``tcp_is_reno()`` path does
(:meth:`Rack.reno_dupack`, :meth:`Rack.reno_ack`), and RACK's timing and TLP
stay off (CC-15).
"""

from __future__ import annotations

from . import seqnum

MASK = seqnum.MASK
HALF = seqnum.HALF

RETRANS = 1  # sent again, that copy not deemed lost (Linux TCPCB_SACKED_RETRANS)
EVER_RETRANS = 2  # sent more than once (an RTT sample from it is ambiguous)
SACKED = 4
LOST = 8

DUPTHRESH = 3  # RFC 8985 §6.2 (and Linux tcp_reordering)
MAX_REORDERING = 300  # Linux net.ipv4.tcp_max_reordering
TIMEOUT_MIN = 0.002  # Linux TCP_TIMEOUT_MIN: slack added to the reordering timer


class Sent:
    """One transmitted segment: [seq, end), last sent at ``xmit``."""

    __slots__ = ("end", "flags", "seq", "xmit")

    def __init__(self, seq: int, end: int, xmit: float, flags: int = 0) -> None:
        self.seq = seq
        self.end = end
        self.xmit = xmit
        self.flags = flags


def _lt(a: int, b: int) -> bool:
    """a < b in sequence space."""
    return 0 < ((b - a) & MASK) < HALF


def _le(a: int, b: int) -> bool:
    return ((b - a) & MASK) < HALF


def _after(t1: float, e1: int, t2: float, e2: int) -> bool:
    """RFC 8985 RACK_sent_after(): sent later, or at the same time with a
    higher end (Linux ``tcp_skb_sent_after()``)."""
    return t1 > t2 or (t1 == t2 and _lt(e2, e1))


class Rack:
    """The transmit log and RACK-TLP / PRR state of one connection."""

    __slots__ = (
        "delivered_bytes",
        "dsack_round",
        "end_seq",
        "log",
        "loss_high",
        "lost_out",
        "mss",
        "prior_cwnd",
        "prr_delivered",
        "prr_out",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "reord_seen",
        "reordering",
        "reordering_seen",
        "retrans_out",
        "rtt",
        "sacked_out",
        "tlp_high_seq",
        "tlp_retrans",
        "xmit_ts",
    )

    def __init__(self) -> None:
        self.log: list[Sent] = []  # ordered by sequence, covering [SND.UNA, SND.MAX)
        self.sacked_out = 0  # records SACKed
        self.lost_out = 0  # records deemed lost (retransmitted or not)
        self.retrans_out = 0  # records retransmitted and not deemed lost since
        self.delivered_bytes = 0  # what the latest ACK newly delivered (on_ack)
        # RACK.xmit_ts, RACK.end_seq: the most recently sent segment delivered
        self.xmit_ts = -1.0
        self.end_seq = 0
        self.rtt = 0.0  # RACK.rtt: the RTT of that delivery
        # After an RTO, SND.MAX then: till it is acknowledged the sender is in
        # Linux's Loss state (go-back-N resends; no probes, no RACK recovery).
        self.loss_high: int | None = None
        self.reordering_seen = False
        # Linux's tp->reordering (segments; net.ipv4.tcp_reordering, 3, to
        # start) and tp->reord_seen: how far out of order a delivery came
        # (tcp_check_sack_reordering()), and how often.
        self.reordering = DUPTHRESH
        self.reord_seen = 0
        self.mss = 1  # the SMSS the records are cut at (sent())
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0
        self.dsack_round: int | None = None
        # TLP: SND.NXT after the probe while an episode is open (RFC 8985 §7.4)
        self.tlp_high_seq: int | None = None
        self.tlp_retrans = False
        # PRR (RFC 6937): RecoverFS (Linux: the cwnd before), and the counts
        self.prior_cwnd = 0
        self.prr_delivered = 0
        self.prr_out = 0

    # -- the log --------------------------------------------------------

    def sent(self, seq: int, end: int, now: float, smss: int, in_recovery: bool = False) -> int:
        """New data [seq, end) went out for the first time: one record per
        SMSS, as the device cuts a larger (TSO) segment and as the peer
        SACKs them; in recovery PRR counts them (``prr_out``).  Returns the
        number of records."""
        log = self.log
        self.mss = smss
        n = 1
        while ((end - seq) & MASK) > smss:
            nxt = (seq + smss) & MASK
            log.append(Sent(seq, nxt, now))
            seq = nxt
            n += 1
        log.append(Sent(seq, end, now))
        if in_recovery:
            self.prr_out += n
        return n

    def resent(self, seq: int, end: int, now: float) -> None:
        """[seq, end) went out again: every record it overlaps is now a
        retransmission sent at ``now`` (still counted lost, and in flight
        again: Linux's lost_out and retrans_out)."""
        for rec in self.log:
            if _le(rec.end, seq):
                continue
            if _le(end, rec.seq):
                break
            f = rec.flags
            if f & SACKED:
                continue
            if not f & RETRANS:
                self.retrans_out += 1
            rec.flags = f | RETRANS | EVER_RETRANS
            rec.xmit = now

    def first_lost(self) -> Sent | None:
        """The lowest record deemed lost and not yet sent again."""
        if not self.lost_out:
            return None
        for rec in self.log:
            if rec.flags & (LOST | RETRANS | SACKED) == LOST:
                return rec
        return None

    def pipe(self) -> int:
        """Segments in the network (RFC 6675 pipe, Linux packets_in_flight)."""
        return len(self.log) - self.sacked_out - self.lost_out + self.retrans_out

    def on_rto(self) -> None:
        """A retransmission timeout: everything outstanding is deemed lost and
        the SACK information dropped (the sender drops its scoreboard too)."""
        for rec in self.log:
            rec.flags = (rec.flags & EVER_RETRANS) | LOST
        self.sacked_out = self.retrans_out = 0
        self.lost_out = len(self.log)
        self.tlp_high_seq = None
        self.prr_out = self.prr_delivered = 0

    # -- an ACK ---------------------------------------------------------

    def on_ack(
        self,
        una: int,
        blocks: tuple[tuple[int, int], ...],
        snd_max: int,
        now: float,
        min_rtt: float | None,
    ) -> tuple[int, bool]:
        """Cut the records SND.UNA (``una``) now covers, mark those the SACK
        ``blocks`` cover, and advance RACK.xmit_ts/end_seq/rtt with every
        segment newly delivered (RFC 8985 §6.2 steps 1-3).  Returns the
        number of segments newly delivered (cumulatively or by SACK) and
        whether a D-SACK block came (RFC 2883).  As for the scoreboard, a
        block that does not lie within (SND.UNA, SND.MAX] is ignored."""
        delivered, dbytes = self._cut(una, now, min_rtt)
        dsack = False
        if blocks:
            first = blocks[0]
            if _le(first[1], una) or (
                len(blocks) > 1 and _le(blocks[1][0], first[0]) and _le(first[1], blocks[1][1])
            ):
                dsack = True  # RFC 2883 §4: below the ACK, or inside the second block
            n, b = self._mark_sacked(una, blocks, snd_max, now, min_rtt)
            delivered += n
            dbytes += b
        self.delivered_bytes = dbytes
        return delivered, dsack

    def _cut(self, una: int, now: float, min_rtt: float | None) -> tuple[int, int]:
        """Drop the records SND.UNA now covers (trim one it covers in part).
        Returns the segments and bytes newly delivered among them."""
        log = self.log
        prior = self._fack(una) if self.sacked_out else None  # the highest SACKed before
        delivered = 0
        dbytes = 0
        i = 0
        n = len(log)
        while i < n:
            rec = log[i]
            if _lt(una, rec.end):
                if _lt(rec.seq, una):  # partly acknowledged
                    rec.seq = una
                break
            f = rec.flags
            if f & SACKED:
                self.sacked_out -= 1
            else:
                delivered += 1
                dbytes += (rec.end - rec.seq) & MASK
                self._advance(rec, now, min_rtt)
            if f & LOST:
                self.lost_out -= 1
            if f & RETRANS:
                self.retrans_out -= 1
            i += 1
        if i:
            low = None
            if prior is not None:
                # A never-resent segment delivered below one SACKed earlier
                # arrived out of order (Linux tcp_check_sack_reordering()).
                for rec in log[:i]:
                    if not rec.flags & (EVER_RETRANS | SACKED):
                        low = rec.seq
                        break
            del log[:i]
            if low is not None:
                self.reordering_seen = True
                self._reordered(low, self._fack(una))
        return delivered, dbytes

    def _mark_sacked(
        self,
        una: int,
        blocks: tuple[tuple[int, int], ...],
        snd_max: int,
        now: float,
        min_rtt: float | None,
    ) -> tuple[int, int]:
        """Mark the records the SACK ``blocks`` cover whole.  Returns the
        segments and bytes newly delivered; a segment SACKed below one
        SACKed by an earlier ACK shows reordering."""
        log = self.log
        delivered = 0
        dbytes = 0
        fack = self._fack(una) if self.sacked_out else None  # the highest SACKed before
        low: int | None = None  # the lowest newly SACKed below it, never resent
        for left, right in blocks:
            if not (_lt(una, left) and _lt(left, right) and _le(right, snd_max)):
                continue
            for rec in log:
                if _le(rec.end, left) or rec.flags & SACKED:
                    continue  # below the block, or already SACKed
                if _le(right, rec.seq):
                    break  # above it
                if _lt(rec.seq, left) or _lt(right, rec.end):
                    continue  # only partly covered: not delivered whole
                f = rec.flags
                if f & LOST:
                    self.lost_out -= 1
                if f & RETRANS:
                    self.retrans_out -= 1
                rec.flags = (f & EVER_RETRANS) | SACKED
                self.sacked_out += 1
                delivered += 1
                dbytes += (rec.end - rec.seq) & MASK
                self._advance(rec, now, min_rtt)
                if fack is not None and not f & EVER_RETRANS and _lt(rec.end, fack):
                    self.reordering_seen = True  # SACKed below an earlier SACK
                    if low is None or _lt(rec.seq, low):
                        low = rec.seq
        if low is not None:
            self._reordered(low, self._fack(una))
        return delivered, dbytes

    def _fack(self, una: int) -> int:
        """The end of the highest SACKed segment, SND.UNA when none is
        (Linux tcp_highest_sack_seq())."""
        for rec in reversed(self.log):
            if rec.flags & SACKED:
                return rec.end
        return una

    def _reordered(self, low: int, fack: int) -> None:
        """``low`` was delivered after ``fack`` (Linux
        tcp_check_sack_reordering()): the reordering degree, in segments,
        grows to cover it."""
        metric = (fack - low) & MASK
        if metric >= HALF:
            return
        mss = self.mss
        if metric > self.reordering * mss:
            self.reordering = min(-(-metric // mss), MAX_REORDERING)
        self.reord_seen += 1

    def _advance(self, rec: Sent, now: float, min_rtt: float | None) -> None:
        """RFC 8985 RACK_update(): take the delivery of ``rec``, unless it
        was retransmitted and the RTT is too short to tell which copy
        arrived (Linux ``tcp_rack_advance()``)."""
        rtt = now - rec.xmit
        if rec.flags & EVER_RETRANS and min_rtt is not None and rtt < min_rtt:
            return
        self.rtt = rtt
        if _after(rec.xmit, rec.end, self.xmit_ts, self.end_seq):
            self.xmit_ts = rec.xmit
            self.end_seq = rec.end

    # -- detection ------------------------------------------------------

    def reo_wnd(self, in_recovery: bool, srtt: float, min_rtt: float | None) -> float:
        """RFC 8985 §6.2 step 4, RACK_update_reo_wnd() as Linux's
        ``tcp_rack_reo_wnd()``: none until reordering is seen while in
        recovery or once DupThresh segments are SACKed; else min_RTT/4 times
        the D-SACK multiplier, at most SRTT."""
        if not self.reordering_seen and (in_recovery or self.sacked_out >= DUPTHRESH):
            return 0.0
        base = min_rtt if min_rtt is not None else srtt
        return min(base / 4 * self.reo_wnd_mult, srtt)

    def on_dsack(self, snd_una: int, snd_nxt: int) -> None:
        """RFC 8985 §6.2 step 4: widen the window once per round trip in
        which D-SACKs arrive (a reordering the window did not cover)."""
        if self.dsack_round is not None and _le(self.dsack_round, snd_una):
            self.dsack_round = None
        if self.dsack_round is None:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult = min(self.reo_wnd_mult + 1, 255)
            self.reo_wnd_persist = 16

    def on_recovery_end(self) -> None:
        """RFC 8985 §6.2 step 4: after 16 recoveries without D-SACK the
        multiplier returns to one."""
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1
            self.reo_wnd_persist = 0

    def detect_loss(self, now: float, reo_wnd: float) -> tuple[int, float]:
        """RFC 8985 §6.2 step 5, RACK_detect_loss(): mark lost every segment
        sent before RACK.xmit_ts that has waited RACK.rtt + reo_wnd.
        Returns the number newly marked and, when some segment is not yet
        overdue, how long until it is (else 0.0): the reordering timer."""
        newly = 0
        wait = 0.0
        ts, end, rtt = self.xmit_ts, self.end_seq, self.rtt
        if ts < 0:
            return 0, 0.0
        for rec in self.log:
            f = rec.flags
            if f & SACKED or f & (LOST | RETRANS) == LOST:
                continue  # delivered, or lost and not yet resent
            if not _after(ts, end, rec.xmit, rec.end):
                continue
            remaining = rtt + reo_wnd - (now - rec.xmit)
            if remaining <= 1e-9:
                if f & RETRANS:
                    self.retrans_out -= 1  # the retransmission is lost too
                if not f & LOST:
                    self.lost_out += 1
                rec.flags = (f & ~RETRANS) | LOST
                newly += 1
            elif remaining > wait:
                wait = remaining
        return newly, wait

    # -- without SACK (Linux tcp_is_reno()) ------------------------------

    def reno_dupack(self) -> int:
        """A duplicate ACK when the peer cannot SACK: it stands for one
        segment that left the network, counted in ``sacked_out`` as Linux's
        ``tcp_add_reno_sack()`` does, at most the segments out less the
        holes (``tcp_limit_reno_sacked()``).  Returns what it delivered."""
        holes = min(max(self.lost_out, 1), len(self.log))
        before = self.sacked_out
        self.sacked_out = min(before + 1, len(self.log) - holes)
        return max(self.sacked_out - before, 0)

    def reno_ack(self, una: int, now: float, min_rtt: float | None) -> int:
        """A cumulative ACK when the peer cannot SACK: cut the records it
        covers; one of them filled the hole, the others were counted by
        DupAcks already (``tcp_remove_reno_sacks()``).  Returns the segments
        newly delivered, at least one."""
        sacked = self.sacked_out
        self.sacked_out = 0  # no record is SACKed: the count is DupAcks'
        acked, self.delivered_bytes = self._cut(una, now, min_rtt)
        self.sacked_out = max(sacked - acked + 1, 0) if acked else sacked
        return max(acked - sacked, 1) if acked else 0

    def mark_head_lost(self) -> int:
        """Deem the segment at SND.UNA lost, if it is not already (Linux's
        ``tcp_newreno_mark_lost()``).  Returns the number newly lost."""
        if not self.log or self.log[0].flags & (LOST | SACKED):
            return 0
        self.log[0].flags |= LOST
        self.lost_out += 1
        return 1

    # -- PRR (RFC 6937) ---------------------------------------------------

    def prr_start(self, cwnd_segments: int) -> None:
        """Entering recovery: RecoverFS is the cwnd before (Linux)."""
        self.prior_cwnd = max(cwnd_segments, 1)
        self.prr_delivered = 0
        self.prr_out = 0

    def prr_sndcnt(self, delivered: int, ssthresh: int, una_advanced: bool, newly_lost: int) -> int:
        """RFC 6937 §3 for one ACK, in segments, as Linux's
        ``tcp_cwnd_reduction()``: above ssthresh send in proportion
        (ssthresh/RecoverFS of what was delivered); at or below it, PRR-SSRB:
        what was delivered, one more when SND.UNA advanced with no new loss,
        up to ssthresh.  At least one segment when nothing has been sent in
        recovery yet (the fast retransmit)."""
        pipe = self.pipe()
        self.prr_delivered += delivered
        delta = ssthresh - pipe
        if delta < 0:
            sndcnt = -(-ssthresh * self.prr_delivered // self.prior_cwnd) - self.prr_out
        else:
            sndcnt = max(self.prr_delivered - self.prr_out, delivered)
            if una_advanced and not newly_lost:
                sndcnt += 1
            sndcnt = min(delta, sndcnt)
        if not self.prr_out:
            sndcnt = max(sndcnt, 1)
        return max(sndcnt, 0)
