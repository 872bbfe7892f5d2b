"""How finwait receives: the receive half of the TCB.

Read RFC 9293 §3.10.7.4 first (is the segment acceptable? PAWS, RFC 7323
§5), seventh (the text) and eighth (FIN), §3.8.6.2.2 (the window we
advertise, receiver SWS avoidance), RFC 1122 §4.2.3.2 and RFC 9293 §3.8.6.3
(delayed ACK), RFC 5681 §4.2 (an immediate ACK for out-of-order data) and
RFC 2018 (SACK blocks we send).

The path of a byte: step one (:meth:`Receiver._check_sequence`) accepts a
segment that overlaps RCV.WND and trims it to the window; in-order text is
appended to the receive buffer (``_rcvbuf``) and RCV.NXT advances
(``_deliver``), text beyond a gap is held in ``_ooo`` (``buffers.py``) and
pulled in when the gap fills (``_pull_ooo``).  The ACK owed is recorded, not
sent: ``_ack_now`` (at the end of this input) or ``_delack_pending`` (within
the delayed-ACK time; at least every second full-sized segment), and any
segment we send settles it (``_ack_header``).  The peer's FIN consumes one
sequence number once everything before it has arrived (``_on_fin``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..wire.segment import ACK, FIN, RST, SYN, URG, Segment, TcpOptions, new_options, new_segment
from . import seqnum
from .buffers import Reassembly
from .config import Config
from .events import END_OF_STREAM, DataReceived, Reset
from .state import State
from .tcb import HALF, MASK, NO_OPTIONS, TcbCore
from .timers import DELAYED_ACK, TIME_WAIT
from .verdict import Verdict

# The states as module names: on Python 3.11 ``State.X`` goes through
# EnumType.__getattr__, ten times the cost of a global (see state.py).
_SYN_RECEIVED, _ESTABLISHED, _FIN_WAIT_1 = State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1
_FIN_WAIT_2, _CLOSE_WAIT, _CLOSING = State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING
_TIME_WAIT = State.TIME_WAIT

_add = seqnum.add
_lt = seqnum.lt
_le = seqnum.le
_in_window = seqnum.in_window
_MAX_WSCALE = 14  # RFC 7323 §2.3
_NEVER = float("-inf")


def scale_for(buffer: int) -> int:
    """The smallest shift that lets ``buffer`` be advertised (RFC 7323 §2.3)."""
    # buffer >> s <= 0xFFFF  <=>  buffer >> 16 < 2**s: s is that bit length.
    return min((buffer >> 16).bit_length(), _MAX_WSCALE)


class Receiver(TcbCore):
    """The receive half; see the module docstring."""

    if not TYPE_CHECKING:  # the slots are Connection's; mypy checks the annotations
        __slots__ = ()

    def _init_receive(self, cfg: Config) -> None:
        """Receive sequence variables (§3.3.1) and the receiver's machinery."""
        self.irs = self.rcv_nxt = self.rcv_up = 0
        self._rcv_adv = 0
        self.rcv_wscale = 0
        shift = scale_for(cfg.recv_buffer) if cfg.window_scale is None else cfg.window_scale
        self._offer_wscale = min(shift, 14) if cfg.window_scaling else None
        self._sws_step = min(cfg.recv_buffer // 2, cfg.mss)
        self.ts_ok = self.sack_ok = False
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        # (SEG.SEQ, SEG.TSval) of a segment that passed step one, taken into
        # TS.Recent only once step five has validated its ACK (TS-6).
        self._ts_pending = None
        self.last_ack_sent = 0
        self._rcvbuf = bytearray()
        self._ooo = Reassembly(cfg.max_ooo_segments)
        self._ooo_fin = None
        self.peer_fin = False
        self._ack_now = self._delack_pending = False
        self._full_unacked = 0
        self._quick = cfg.quick_acks
        self._pingpong = False
        self._last_data_rcv = _NEVER
        self._last_challenge = -1e18

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND: the receive buffer's free space."""
        return max(self.config.recv_buffer - len(self._rcvbuf), 0)

    def _window_field(self) -> int:
        """The window we advertise, scaled; never shrinks the right edge
        (RFC 9293 §3.8.6.2.2 SHLD-14) and avoids receiver SWS."""
        nxt = self.rcv_nxt
        wnd = self.config.recv_buffer - len(self._rcvbuf)
        adv = (self._rcv_adv - nxt) & MASK  # what the peer may still send
        if adv >= HALF:
            adv = 0
        # Receiver SWS avoidance (§3.8.6.2.2): never shrink the right edge,
        # and do not open it by less than min(buffer/2, MSS) at a time.
        if wnd < adv or 0 < wnd - adv < self._sws_step:
            wnd = adv
        shift = self.rcv_wscale
        field = wnd >> shift
        if field > 0xFFFF:
            field = 0xFFFF
        self._rcv_adv = (nxt + (field << shift)) & MASK
        return field

    def _options(self, now: float) -> TcpOptions:
        held = self.sack_ok and self._ooo.blocks  # SACK blocks to send (RFC 2018)
        if not self.ts_ok and not held:
            return NO_OPTIONS
        sack: tuple[tuple[int, int], ...] = ()
        if held:
            sack = self._ooo.sack_blocks(3 if self.ts_ok else 4)
        if self.ts_ok:
            ts = ((int(now * 1000) + self._ts_offset) & MASK, self.ts_recent)
            return new_options(TcpOptions, (None, None, False, ts, sack, ()))
        if sack:
            return TcpOptions(sack_blocks=sack)
        return NO_OPTIONS

    def _ack_header(self, now: float) -> tuple[int, int, TcpOptions]:
        """ACK, window and options for segments sent now; sending them
        settles any pending or delayed ACK."""
        ack = self.rcv_nxt
        self._ack_now = False
        self._delack_pending = False
        self._full_unacked = 0
        self.timers.at[DELAYED_ACK] = None  # cancel(DELAYED_ACK), written out
        self.last_ack_sent = ack
        return ack, self._window_field(), self._options(now)

    def _send_ack(self, now: float) -> None:
        # Pure ACKs carry SND.MAX, not a rolled-back SND.NXT (BSD tcp_output):
        # a sequence number behind the peer's RCV.NXT would make it unacceptable.
        # But never past the right edge of the peer's window, SND.UNA + SND.WND
        # (Linux tcp_acceptable_seq()): a receiver that shrank its window (its
        # buffer pruned, data dropped: a zero window at SND.UNA) finds a number
        # beyond it unacceptable too, and ignores the ACK in it — with both
        # windows closed, neither side moves again.
        # (_emit(seq, ACK), written out: one ACK per two segments received)
        ack, window, opts = self._ack_header(now)
        if self._box.drops:  # lost on the way out, settled all the same (LX-18)
            self._count("local_drop")
            return
        (src, sport), (dst, dport) = self.local, self.remote
        seq = self.snd_max
        edge = (self.snd_una + self.snd_wnd) & MASK
        if _lt(edge, seq) and self.state.synchronized and self.state is not _SYN_RECEIVED:
            seq = edge  # (not before the peer's window is known: ESTABLISHED on)
        self._out.append(
            new_segment(Segment, (src, dst, sport, dport, seq, ack, ACK, window, b"", opts, 0))
        )  # fmt: skip
        self._last_send = now

    def _challenge_ack(self, seg: Segment, now: float, verdict: Verdict) -> None:
        """RFC 5961 §3.2/§4.2/§5.2 challenge ACK (and the §3.10.7.4 step-1
        ACK), rate-limited per connection as Linux's tcp_oow_rate_limited():
        only zero-length segments and SYNs count toward the limit, so a
        retransmitted FIN is always answered (SA-1.4)."""
        self._judge(verdict)
        limited = not seg.payload and (not seg.flags & FIN or seg.flags & SYN)
        if limited and now - self._last_challenge < self.config.challenge_ack_interval:
            self._count("ack_ratelimited")
            return
        if limited:
            self._last_challenge = now
        self._send_ack(now)

    def _check_sequence(self, seg: Segment, now: float) -> Segment | None:
        """Step one: PAWS (RFC 7323 §5.3), the four-case acceptability test,
        and trimming to the window (SA-1.5).  Returns the (trimmed) segment,
        or None when it was dropped."""
        flags = seg.flags
        self._ts_pending = None
        if self.ts_ok and not flags & RST:
            ts = seg.options.timestamps
            if ts is not None and _lt(ts[0], self.ts_recent):
                if now - self.ts_recent_age > 24 * 86400:
                    self.ts_recent = ts[0]  # TS.Recent is stale after 24 days idle
                else:
                    self._challenge_ack(seg, now, Verdict.PAWS_REJECTED)
                    return None
        seq = seg.seq
        plen = len(seg.payload)
        seg_len = plen + (flags & SYN) // SYN + (flags & FIN)
        wnd = self.rcv_wnd
        nxt = self.rcv_nxt
        if seg_len == 0:
            ok = seq == nxt if wnd == 0 else _in_window(seq, nxt, wnd)
        else:
            ok = wnd > 0 and (
                _in_window(seq, nxt, wnd) or _in_window(_add(seq, seg_len - 1), nxt, wnd)
            )
        cfg = self.config
        whole = False  # taken past the window's right edge, untrimmed
        if seg_len and (cfg.over_window_when_empty or cfg.fin_beyond_window):
            ok, whole = self._linux_edge(seq, seg_len, flags, nxt, wnd, ok)
        if not ok:
            self._unacceptable(seg, seg_len, now)
            return None
        # Timestamps: TS.Recent follows the segment that covers Last.ACK.sent
        # (§4.3), once step five has validated its ACK (TS-6).
        if self.ts_ok:
            ts = seg.options.timestamps
            if ts is not None and not _lt(ts[0], self.ts_recent):
                self._ts_pending = (seq, ts[0])
        # Trim what lies before RCV.NXT (SA-1.5) and beyond the window.
        if seg_len and _lt(seq, nxt):
            cut = seqnum.sub(nxt, seq)
            if flags & SYN:
                flags &= ~SYN
                cut -= 1
            seg = seg._replace(seq=nxt, flags=flags, payload=seg.payload[cut:])
            if flags & URG:
                seg = seg._replace(urgent=max(seg.urgent - cut, 0))
            plen = len(seg.payload)
            seq = nxt
        if plen and not whole:
            room = wnd - seqnum.sub(seq, nxt)
            if plen > room:
                seg = seg._replace(payload=seg.payload[:room], flags=seg.flags & ~FIN)
                self._count("trimmed_to_window")
        return seg

    def _linux_edge(
        self, seq: int, seg_len: int, flags: int, nxt: int, wnd: int, ok: bool
    ) -> tuple[bool, bool]:
        """Linux's test for a segment that ends past the window's right edge
        (``tcp_sequence()``, then ``tcp_data_queue()``): (acceptable, taken
        whole).  LX-15: a FIN that is all that lies beyond the edge is
        accepted — a bare FIN at RCV.NXT into a zero window.  LX-14: otherwise
        a segment starting at or before the edge is accepted whole when the
        receive queue holds nothing unread, and dropped when it does (the
        RFC would take the part in the window).  A segment inside the
        window, or starting beyond its edge, keeps the RFC's verdict."""
        right = _add(nxt, wnd)
        end = _add(seq, seg_len)
        if _le(end, right):
            return ok, False
        fin = flags & FIN
        if fin and self.config.fin_beyond_window and _le(_add(end, -fin), right):
            if seq == nxt or _lt(nxt, seq):
                self._count("fin_beyond_window")
                return True, True
            return ok, False
        if not self.config.over_window_when_empty or _lt(right, seq) or _lt(seq, nxt):
            return ok, False
        if self._rcvbuf:
            self._count("over_window_dropped")
            return False, False  # something unread: the whole segment is dropped
        self._count("over_window_taken")
        return True, True

    def _unacceptable(self, seg: Segment, seg_len: int, now: float) -> None:
        """Step one, a segment outside the window: dropped, and answered with
        an ACK unless it is a RST (§3.10.7.4 first, SA-1.2, SA-2.1)."""
        flags = seg.flags
        seq = seg.seq
        nxt = self.rcv_nxt
        wnd = self.rcv_wnd
        if flags & RST:
            self._judge(Verdict.RST_OUT_OF_WINDOW)  # SA-2.1
            return
        if wnd == 0 and flags & ACK and seg_len:
            self._step_ack(seg, now, ack_only=True)  # MUST-66
            if not self.state.synchronized:
                return
        if flags & FIN and not flags & ACK:
            self._count("fin_without_ack")
        if self.state is _TIME_WAIT and flags & FIN and _add(seq, seg_len) == nxt:
            self.timers.arm(TIME_WAIT, now + 2 * self.config.msl)  # SA-1.4, TW-3
            self._count("time_wait_fin_retransmitted")
        self._challenge_ack(seg, now, Verdict.UNACCEPTABLE_SEGMENT)  # SA-1.2
        return

    def _take_ts_recent(self, seq: int, tsval: int, now: float) -> None:
        """RFC 7323 §4.3: TS.Recent follows the segment that covers
        Last.ACK.sent (the caller has checked TSval against TS.Recent)."""
        if _le(seq, self.last_ack_sent):
            self.ts_recent = tsval
            self.ts_recent_age = now

    def _text_and_fin(self, seg: Segment, now: float) -> None:
        """Steps seven (text) and eight (FIN)."""
        st = self.state
        payload = seg.payload
        seq = seg.seq
        nxt = self.rcv_nxt
        if payload and st.can_receive_text:
            if self.read_closed:
                # LX-7: data after a "read no more" close resets the connection.
                self._count("abort_on_data")
                # The RST answers this segment (Linux tcp_v4_send_reset()):
                # its sequence number is the segment's ACK, which is below
                # SND.NXT while our FIN is unacknowledged.
                self._emit_rst(seg.ack if seg.flags & ACK else self.snd_max, now)
                self._sndbuf.clear()
                self._delete(now)
                self._events.append((self, Reset(local=True)))  # type: ignore[arg-type]
                return
            if seq == nxt:
                self._deliver(payload, now)
                if seg.flags & FIN:
                    self._on_fin(now, with_data=True)
                    return
                if self._ooo.blocks or self._ooo_fin is not None:
                    self._pull_ooo(now)
                return
            # Beyond RCV.NXT: hold it (SHLD-31) and send a duplicate ACK at once
            # (RFC 5681 §4.2, MAY-13).
            if self._ooo.add(seq, payload, nxt):
                self._count("out_of_order")
                if seg.flags & FIN:
                    self._ooo_fin = _add(seq, len(payload))
            else:
                self._count("ooo_queue_full")
            self._ack_now = True
            return
        if seg.flags & FIN:
            if seq == nxt:
                self._on_fin(now)
            elif st.can_receive_text and _lt(nxt, seq):
                self._ooo_fin = seq  # a FIN beyond a gap (test 12)
                self._ack_now = True
                self._count("out_of_order")

    def _deliver(self, data: bytes, now: float) -> None:
        n = len(data)
        buf = self._rcvbuf
        buf += data
        self.rcv_nxt = (self.rcv_nxt + n) & MASK
        # DataReceived, merged with the previous event when that was one too,
        # so a burst of segments is one wake-up for the user (the event is
        # not the user's until taken: it grows in place).
        evs = self._events
        if evs:
            last = evs[-1]
            if last[0] is self and type(last[1]) is DataReceived:
                last[1].length += n
            else:
                evs.append((self, DataReceived(n)))  # type: ignore[arg-type]
        else:
            evs.append((self, DataReceived(n)))  # type: ignore[arg-type]
        # Delayed ACK (RFC 1122 §4.2.3.2, RFC 9293 §3.8.6.3): at least every
        # second full-sized segment, and within the delay for the rest.
        cfg = self.config
        if not cfg.delayed_ack:
            self._ack_now = True
            return
        self._delack_pending = True
        self._last_data_rcv = now
        if self._quick > 0 and not self._pingpong:
            self._quick -= 1  # Linux quick-ACK mode (Config.quick_acks)
            self._ack_now = True
            return
        smss = self.smss
        if n >= smss:
            self._full_unacked += 1
        if self._full_unacked >= 2 or cfg.recv_buffer - len(buf) < smss:  # RCV.WND < SMSS
            self._ack_now = True

    def _pull_ooo(self, now: float) -> None:
        data = self._ooo.pop_ready(self.rcv_nxt)
        if data:
            self._deliver(data, now)
        self._ack_now = True  # RFC 5681 §4.2: a gap (partly) filled, ACK at once
        if self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt:
            self._ooo_fin = None
            self._on_fin(now)

    def _on_fin(self, now: float, with_data: bool = False) -> None:
        """Step eight: the peer's FIN consumes one sequence number.
        ``with_data``: the segment that carried it carried data too."""
        st = self.state
        if self.peer_fin:
            return
        self.peer_fin = True
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self._ooo.clear()
        self._ooo_fin = None
        self._events.append((self, END_OF_STREAM))  # type: ignore[arg-type]
        if st in (_ESTABLISHED, _SYN_RECEIVED):
            self._set_state(_CLOSE_WAIT, now)
            # Linux tcp_fin(): the ACK of a FIN is delayed (pingpong), so an
            # application that closes promptly sends one FIN,ACK: the
            # three-segment close (LX-1).  In quick-ACK mode (Linux profile)
            # a bare FIN is ACKed at once; one that came with data enters
            # pingpong first, so the data's quick ACK is delayed with it.
            quick = self._quick > 0 and not self._pingpong and not with_data
            if self.config.delayed_ack and not quick:
                self._delack_pending = True
                if with_data and self.config.quick_acks and self._full_unacked < 2:
                    self._ack_now = False  # the data's quick ACK waits with the FIN's
            else:
                self._ack_now = True
            if self.config.quick_acks:
                self._pingpong = True
        elif st is _FIN_WAIT_1:
            self._set_state(_CLOSING, now)  # simultaneous close (LX-2)
            self._ack_now = True
        elif st is _FIN_WAIT_2:
            self._ack_now = True
            self._enter_time_wait(now)
