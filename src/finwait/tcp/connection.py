"""One TCP connection: the state, the user calls and RFC 9293 §3.10 dispatch.

Read RFC 9293 §3.10 (event processing) with §3.3.2 (states), RFC 5961
(blind-attack defences), RFC 7323 (window scale, timestamps, PAWS) and
RFC 1337 (TIME-WAIT assassination).  How a connection sends is in
``sender.py``, how it receives in ``receiver.py``; the TCB's variables are
listed in ``tcb.py`` and its timers are ``timers.py``.

The connection is sans-IO: every input takes ``now`` (seconds), nothing reads
a clock or touches a socket.  Inputs: ``receive(segment, now)``, the user
calls (``send``, ``recv``, ``close``, ``abort``) and ``on_timer(now)``.
Outputs are queued: segments to send, events for the user, and the next
deadline (``next_deadline()``).  Every state change goes through
``_set_state``, which records a ``StateChanged`` event.

An arriving segment (``receive``) in a synchronized state goes through the
steps of §3.10.7.4 in the RFC's order: one (``Receiver._check_sequence``),
two (RST), four (SYN), five (``Sender._step_ack``, then the per-state part,
``_ack_state_step``), six (URG), seven and eight (``Receiver._text_and_fin``).
Header prediction (``_predicted``) only decides that steps one to four would
pass a segment unchanged and goes straight to step five: there is one path.
"""

from __future__ import annotations

from ..wire.segment import ACK, FIN, RST, SYN, URG, Segment
from . import seqnum
from .config import Config
from .events import CLOSE_ACKNOWLEDGED, CLOSED, CONNECTED, Event, Reset, TimedOut
from .receiver import Receiver, scale_for
from .sender import Sender
from .state import State
from .tcb import HALF, MASK, TCB_SLOTS, Outbox
from .timers import (
    DELAYED_ACK,
    FIN_WAIT_2,
    KEEPALIVE,
    LOSS_PROBE,
    PACE,
    PERSIST,
    REORDER,
    RETRANSMIT,
    TIME_WAIT,
    USER_TIMEOUT,
    Timers,
)
from .verdict import Verdict

__all__ = [
    "Connection",
    "ConnectionClosing",
    "ConnectionDoesNotExist",
    "ConnectionResetByPeer",
    "Outbox",
    "TcpError",
    "scale_for",
]

# The states as module names: on Python 3.11 ``State.X`` goes through
# EnumType.__getattr__, ten times the cost of a global (see state.py).
_CLOSED, _LISTEN, _SYN_SENT = State.CLOSED, State.LISTEN, State.SYN_SENT
_SYN_RECEIVED, _ESTABLISHED, _FIN_WAIT_1 = State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1
_FIN_WAIT_2, _CLOSE_WAIT, _CLOSING = State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING
_LAST_ACK, _TIME_WAIT = State.LAST_ACK, State.TIME_WAIT

_add = seqnum.add
_lt = seqnum.lt
_le = seqnum.le

ACCEPTED = Verdict.ACCEPTED


class TcpError(Exception):
    """A user call that the state does not allow (h11's LocalProtocolError):
    it raises and leaves the state unchanged."""


class ConnectionDoesNotExist(TcpError):
    """RFC 9293 §3.10: "error: connection does not exist"."""


class ConnectionClosing(TcpError):
    """RFC 9293 §3.10: "error: connection closing"."""


class ConnectionResetByPeer(TcpError):
    """A call on a connection that was reset."""


class Connection(Sender, Receiver):
    """A TCB.  Create with :meth:`open_active` or :meth:`open_passive`
    (the Host does this); drive with ``receive``/``on_timer`` and user calls."""

    __slots__ = TCB_SLOTS

    def __init__(
        self,
        local: tuple[str, int],
        remote: tuple[str, int],
        iss: int,
        config: Config | None = None,
        *,
        ts_offset: int = 0,
        outbox: Outbox | None = None,
    ) -> None:
        cfg = config or Config()
        self.config = cfg
        self.local = local
        self.remote = remote
        self.state = _CLOSED
        self.passive = False
        self.reset_received = False
        self._close_pending = False
        self.read_closed = False
        self._last_recv = 0.0
        self._verdict = ACCEPTED
        self.timers = Timers()
        self._init_send(cfg, iss, ts_offset)
        self._init_receive(cfg)
        self._box = box = outbox if outbox is not None else Outbox()
        self._out = box.segments
        self._events = box.events
        self.counters = {}
        self._host_counters = box.counters
        self._on_change = box.changed
        self._touched = box.touched

    # ------------------------------------------------------------------
    # Construction: OPEN (§3.10.1)

    @classmethod
    def open_active(
        cls,
        local: tuple[str, int],
        remote: tuple[str, int],
        iss: int,
        now: float,
        config: Config | None = None,
        *,
        ts_offset: int = 0,
        outbox: Outbox | None = None,
    ) -> Connection:
        """Active OPEN: send SYN, enter SYN-SENT."""
        conn = cls(local, remote, iss, config, ts_offset=ts_offset, outbox=outbox)
        conn._set_state(_SYN_SENT, now)
        conn._open(now, ack=False)
        return conn

    @classmethod
    def open_passive(
        cls,
        syn: Segment,
        iss: int,
        now: float,
        config: Config | None = None,
        *,
        ts_offset: int = 0,
        outbox: Outbox | None = None,
        cookie: bool = False,
    ) -> Connection:
        """A SYN reached a listener (§3.10.7.2): LISTEN -> SYN-RECEIVED, send
        SYN,ACK.  ``cookie``: the SYN,ACK went out already as a SYN cookie
        (RFC 4987 §3.6, ``syn`` rebuilt from the cookie): it is not sent
        again, and its send time is unknown, so it gives no RTT sample."""
        local, remote = (syn.dst, syn.dport), (syn.src, syn.sport)
        conn = cls(local, remote, iss, config, ts_offset=ts_offset, outbox=outbox)
        conn._set_state(_LISTEN, now)  # the listener's TCB, cloned for this SYN
        conn.passive = True
        conn._take_syn(syn, now)
        conn._negotiated()
        conn._set_state(_SYN_RECEIVED, now)
        conn._open(now, ack=True, send=not cookie)
        return conn

    def _open(self, now: float, ack: bool, send: bool = True) -> None:
        """Send our SYN (or SYN,ACK), which consumes ISS, and time it."""
        self.snd_nxt = self.snd_max = (self.iss + 1) & MASK
        self._emit_syn(now, ack=ack, send=send)
        self._arm_rexmit(now)
        if send:
            self._rtt_seq, self._rtt_start = self.snd_nxt, now
        # (no change handle: the Host registers a connection once it made it)

    def take_segments(self) -> list[Segment]:
        out = self._out[:]
        self._out.clear()
        return out

    def take_events(self) -> list[Event]:
        evs = [ev for _, ev in self._events]
        self._events.clear()
        return evs

    def next_deadline(self) -> float | None:
        return self.timers.next()

    @property
    def readable(self) -> int:
        return len(self._rcvbuf)

    @property
    def send_space(self) -> int:
        if not self.state.can_send or self._fin_seq is not None or self._close_pending:
            return 0
        return max(self.config.send_buffer - len(self._sndbuf), 0)

    @property
    def unacked(self) -> int:
        """Bytes queued but not yet acknowledged (sent or not)."""
        return len(self._sndbuf)

    def send(self, data: bytes, now: float) -> int:
        """SEND: queue as much of ``data`` as the send buffer takes; returns
        the number of bytes accepted."""
        st = self.state
        if st is _CLOSED:
            if self.reset_received:
                raise ConnectionResetByPeer("connection reset")
            raise ConnectionDoesNotExist("connection does not exist")
        if not st.can_send or self._fin_seq is not None or self._close_pending:
            raise ConnectionClosing("connection closing")  # CL-0d
        n = min(len(data), self.config.send_buffer - len(self._sndbuf))
        if n <= 0:
            return 0
        self._sndbuf += data[:n] if n < len(data) else data
        if st.sending:
            idle = now - self._last_send > self.rtt.rto and self.snd_una == self.snd_max
            if idle and self.cc.cwnd > self.cc.iw:
                self.cc.on_idle()  # RFC 5681 §4.1, CC-7
            self._push(now)
        self._changed()
        return n

    def recv(self, max_bytes: int = -1, now: float | None = None) -> bytes:
        """RECEIVE: take delivered bytes.  Opening the window may send a
        window update (RFC 9293 §3.8.6.2.2)."""
        buf = self._rcvbuf
        if max_bytes < 0 or max_bytes >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        if now is None:
            now = self._last_recv  # the latest input's time: recv() reads no clock
        # A pending delayed ACK will carry the new window anyway.
        if data and self.state.synchronized and not self.peer_fin and not self._delack_pending:
            # Send an update when the usable window grows by two segments or
            # half the buffer (Linux __tcp_cleanup_rbuf) from what we advertised.
            adv = max(seqnum.sub(self._rcv_adv, self.rcv_nxt), 0)
            wnd = min(self.rcv_wnd, 0xFFFF << self.rcv_wscale)
            if wnd - adv >= min(2 * self.config.mss, self.config.recv_buffer // 2):
                self._send_ack(now)
                self._changed()
        return data

    def close(self, now: float, *, discard: bool = False) -> None:
        """CLOSE (§3.10.4): a half-close.  All queued data is sent, then a FIN;
        receiving goes on until the peer's FIN.  ``discard=True`` also says
        "I will read no more" (Linux ``close()``): unread data, or data that
        arrives later, makes it a reset instead (RFC 2525 §2.17, LX-5/LX-7)."""
        st = self.state
        if discard:
            self.read_closed = True
            unread = self._rcvbuf or self._ooo
            if unread and self.config.abort_on_close_with_unread and st.synchronized:
                self._count("abort_on_close")
                self._rcvbuf.clear()
                self.abort(now)
                return
        if st is _CLOSED:
            raise ConnectionDoesNotExist("connection does not exist")  # CL-1
        if st is _SYN_SENT:
            self._delete(now)  # CL-3: no segment
            self._events.append((self, CLOSED))
        elif st is _SYN_RECEIVED:
            if self._sndbuf:
                self._close_pending = True  # CL-4: after ESTABLISHED
            else:
                self._queue_fin(_FIN_WAIT_1, now)
        elif st is _ESTABLISHED:
            self._queue_fin(_FIN_WAIT_1, now)  # CL-5
        elif st is _CLOSE_WAIT:
            self._queue_fin(_LAST_ACK, now)  # CL-7
        elif st is _FIN_WAIT_1:
            pass  # CL-6: already closing; "ok", and never a second FIN
        elif st is _FIN_WAIT_2:
            self._arm_fin_wait_2(now)  # CL-6, and now possibly orphaned
        else:
            raise ConnectionClosing("connection closing")  # CL-8
        self._changed()

    def abort(self, now: float) -> None:
        """ABORT (§3.10.5): RST in the synchronized states that can still
        talk, nothing otherwise; the user sees a local reset (AB-3)."""
        st = self.state
        if st is _CLOSED:
            raise ConnectionDoesNotExist("connection does not exist")
        if st in (
            _SYN_RECEIVED,
            _ESTABLISHED,
            _FIN_WAIT_1,
            _FIN_WAIT_2,
            _CLOSE_WAIT,
        ):
            # AB-1; the Linux profile's form carries ACK and RCV.NXT (D-2).
            self._emit_rst(self.snd_max, now, with_ack=self.config.rst_ack)
            self._count("abort_sent_rst")
        self._sndbuf.clear()
        self._delete(now)
        self._events.append((self, Reset(local=True)))
        self._changed()

    def on_timer(self, now: float) -> None:
        """Fire every deadline at or before ``now``."""
        timers = self.timers
        if timers.fire(TIME_WAIT, now):
            self._delete(now)  # §3.10.8: 2MSL expired
            self._events.append((self, CLOSED))
            self._changed()
            return
        if timers.fire(USER_TIMEOUT, now):
            self._time_out(now, "user_timeout")
            return
        if timers.fire(FIN_WAIT_2, now):
            self._time_out(now, "fin_wait_2_timeout")
            return
        if timers.fire(REORDER, now):
            self._on_reorder_timeout(now)
        if timers.fire(LOSS_PROBE, now):
            self._on_loss_probe(now)
        if timers.fire(RETRANSMIT, now):
            self._on_rexmit_timeout(now)
        if timers.fire(PERSIST, now):
            self._on_persist(now)
        if timers.fire(KEEPALIVE, now):
            self._on_keepalive(now)
        if timers.fire(PACE, now):
            self._on_pace(now)
        st = self.state
        if timers.fire(DELAYED_ACK, now) and st.synchronized and st is not _TIME_WAIT:
            self._send_ack(now)
            self._pingpong = False  # no data to carry the ACK: not interactive (Linux)
        self._changed()

    def _time_out(self, now: float, reason: str) -> None:
        state = self.state
        self._count(reason)
        self._delete(now)
        self._events.append((self, TimedOut(state)))
        self._changed()

    def receive(self, seg: Segment, now: float) -> Verdict:
        """Process one arriving segment and say what became of it
        (``verdict.py``); peer input never raises."""
        st = self.state
        cfg = self.config
        self._last_recv = now
        self._verdict = ACCEPTED
        if st.synchronized and cfg.header_prediction and self._predicted(seg, now):
            self._steps_five_to_eight(seg, now)
        elif st is _SYN_SENT:
            self._arrive_syn_sent(seg, now)  # which sends what it may
        elif st.synchronized:
            self._arrive_synchronized(seg, now)
        else:
            self._judge(Verdict.SEGMENT_IN_CLOSED if st is _CLOSED else Verdict.SEGMENT_IN_LISTEN)
            return self._verdict
        if st is not _SYN_SENT and self.state.sending:
            # Anything to send (what _push's loop looks at first): unsent
            # data, or our FIN not sent yet.
            nxt = self.snd_nxt
            unsent = (self._snd_base + self._sndbuf.size - nxt) & MASK
            if 0 < unsent < HALF or nxt == self._fin_seq:
                self._push(now)
        if self._ack_now:
            self._send_ack(now)
        elif self._delack_pending:
            at = self.timers.at  # arm_once(DELAYED_ACK), written out
            if at[DELAYED_ACK] is None:
                at[DELAYED_ACK] = now + cfg.delayed_ack_timeout
        keepalive = cfg.keepalive
        if keepalive is not None and self.state is _ESTABLISHED:
            self.timers.arm_once(KEEPALIVE, now + keepalive)
        touched = self._touched  # the Host's: it updates its tables itself
        if touched is not None:
            touched[self] = None
        else:
            self._changed()
        return self._verdict

    def _predicted(self, seg: Segment, now: float) -> bool:
        """Header prediction (Jacobson; RFC 7323 Appendix D), reduced to a
        decision: True when §3.10.7.4 steps one to four would pass ``seg``
        through unchanged — in a synchronized state, ACK set with at most
        PSH and FIN besides, SEG.SEQ = RCV.NXT, the text within RCV.WND (and
        a FIN with RCV.WND open), PAWS passed — so the caller may go
        straight to steps five to eight, the same code the full path runs.
        Unlike the RFC's ESTABLISHED-only prediction this also takes the
        handshake's last ACK and the segments of the release: step one
        treats them alike in every synchronized state.  The one effect of
        step one that such a segment has, the TS.Recent update, is left to
        step five as on the full path."""
        flags = seg.flags
        if flags & 0x36 != ACK or seg.seq != self.rcv_nxt:  # 0x36: URG ACK RST SYN
            return False
        wnd = self.config.recv_buffer - len(self._rcvbuf)
        if len(seg.payload) > wnd or (flags & FIN and wnd <= 0):
            return False  # beyond RCV.WND: step one trims or drops
        if self.ts_ok:
            ts = seg.options.timestamps
            if ts is not None:
                tsval = ts[0]
                if ((tsval - self.ts_recent) & MASK) >= HALF:
                    return False  # PAWS would reject: step one decides
                self._ts_pending = (seg.seq, tsval)
                return True
        self._ts_pending = None
        return True

    def _arrive_syn_sent(self, seg: Segment, now: float) -> None:
        """§3.10.7.3."""
        flags = seg.flags
        # SA-SS-1: an ACK outside (ISS, SND.MAX] is not for this incarnation.
        if flags & ACK and (_le(seg.ack, self.iss) or _lt(self.snd_max, seg.ack)):
            if not flags & RST:
                self._emit_rst(seg.ack, now)
            self._judge(Verdict.BAD_ACK_SYN_SENT)
            return
        if flags & RST:
            if flags & ACK:  # SA-SS-3: acceptable ACK, refused
                self.reset_received = True
                self._delete(now)
                self._events.append((self, Reset(refused=True)))
            else:
                self._judge(Verdict.RST_WITHOUT_ACK_SYN_SENT)
            return
        if not flags & SYN:
            if flags & FIN and not flags & ACK:
                self._count("fin_without_ack")
            else:
                self._judge(Verdict.NO_SYN_IN_SYN_SENT)  # SA-SS-6
            return
        self._take_syn(seg, now)
        if flags & ACK:
            self._negotiated()
            self._ack_syn(seg.ack, now)
            self._set_state(_ESTABLISHED, now)
            self._events.append((self, CONNECTED))
            self.snd_wnd = seg.window  # the SYN,ACK's window is never scaled
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self._ack_now = True
            if seg.payload or flags & FIN:
                self._text_and_fin(seg._replace(seq=self.rcv_nxt, flags=flags & ~SYN), now)
            if self._sndbuf.size or self._fin_seq is not None:
                self._push(now)  # what was queued in SYN-SENT
        else:
            # Simultaneous open (SA-SS-5, MUST-10).
            self._negotiated()
            self._set_state(_SYN_RECEIVED, now)
            self._emit_syn(now, ack=True)

    def _arrive_synchronized(self, seg: Segment, now: float) -> bool:
        """§3.10.7.4, steps in the RFC's order.  True when the segment got
        through to the end (so new data may be sent)."""
        flags = seg.flags
        if (
            self.state is _SYN_RECEIVED
            and flags & (SYN | ACK | RST) == SYN
            and (seg.seq == self.irs)
        ):
            # A retransmitted SYN: our SYN,ACK was lost (Linux tcp_check_req).
            self._judge(Verdict.SYN_RETRANSMITTED)
            self._emit_syn(now, ack=True)
            return False
        checked = self._check_sequence(seg, now)  # first
        if checked is None:
            return False
        seg = checked
        if flags & RST:  # second
            self._on_rst(seg, now)
            return False
        if flags & SYN:  # fourth (third, security, is not implemented)
            if self.state is _SYN_RECEIVED and self.passive:
                self._judge(Verdict.SYN_IN_SYN_RECEIVED)
                self._set_state(_LISTEN, now)  # SA-3.1
                self._delete(now)
                return False
            self._challenge_ack(seg, now, Verdict.CHALLENGE_ACK_SYN)  # SA-3.2, RFC 5961 §4
            return False
        if not flags & ACK:  # fifth: SA-4.1, where the bare FIN dies
            self._judge(Verdict.FIN_WITHOUT_ACK if flags & FIN else Verdict.NO_ACK)
            return False
        return self._steps_five_to_eight(seg, now)

    def _steps_five_to_eight(self, seg: Segment, now: float) -> bool:
        """§3.10.7.4 fifth (ACK) to eighth (FIN) for a segment that passed
        steps one to four; header prediction comes straight here."""
        pending, self._ts_pending = self._ts_pending, None
        prior_una = self.snd_una
        if not self._step_ack(seg, now):
            return False
        if pending is not None and ((seg.ack - prior_una) & MASK) < HALF:
            # TS-6, in Linux's order (tcp_ack() before tcp_replace_ts_recent()):
            # a segment whose ACK is not acceptable (beyond SND.NXT, or older
            # than SND.UNA) does not move TS.Recent, or one spoofed segment
            # with a huge TSval would make PAWS drop every valid one after it.
            # (SEG.ACK >= the SND.UNA before, and _take_ts_recent, written out.)
            seq, las = pending[0], self.last_ack_sent
            if seq == las or ((seq - las) & MASK) >= HALF:  # SEG.SEQ <= Last.ACK.sent
                self.ts_recent = pending[1]
                self.ts_recent_age = now
        flags = seg.flags
        if flags & URG and self.state in (_ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2):
            up = _add(seg.seq, seg.urgent)  # sixth (RFC 6093: pointer to after the data)
            if _lt(self.rcv_up, up):
                self.rcv_up = up
        if seg.payload or flags & FIN:
            self._text_and_fin(seg, now)  # seventh and eighth
        return True

    def _on_rst(self, seg: Segment, now: float) -> None:
        """Step two: RFC 5961 §3.2 and the per-state resets (SA-2.x)."""
        st = self.state
        if st is _TIME_WAIT and self.config.rfc1337:
            self._judge(Verdict.RST_IN_TIME_WAIT_IGNORED)  # RFC 1337, TW-4
            return
        if seg.seq != self.rcv_nxt:
            self._challenge_ack(seg, now, Verdict.CHALLENGE_ACK_RST)  # SA-2.3
            return
        self._judge(Verdict.RESET)
        self.reset_received = True
        if st is _SYN_RECEIVED and self.passive:
            self._set_state(_LISTEN, now)  # SA-2.4: back to the listener
            self._delete(now)
            return
        refused = st is _SYN_RECEIVED
        self._rcvbuf.clear()
        self._sndbuf.clear()
        self._delete(now)
        self._events.append((self, Reset(refused=refused)))

    def _ack_state_step(self, seg: Segment, now: float) -> bool:
        """The per-state part of step five (SA-4.6 .. SA-4.11)."""
        st = self.state
        if st is _ESTABLISHED:
            return True
        fin_seq = self._fin_seq
        fin_acked = fin_seq is not None and self.snd_una == (fin_seq + 1) & MASK
        if st is _FIN_WAIT_1:
            if fin_acked:
                self._set_state(_FIN_WAIT_2, now)  # SA-4.6
                self._events.append((self, CLOSE_ACKNOWLEDGED))
                self._arm_fin_wait_2(now)
        elif st is _CLOSING:
            if not fin_acked:
                return False  # SA-4.9: ignore the segment
            self._enter_time_wait(now)
        elif st is _LAST_ACK:
            if fin_acked:
                self._delete(now)  # SA-4.10: no TIME-WAIT for the passive closer
                self._events.append((self, CLOSED))
            return False
        elif st is _TIME_WAIT:
            if seg.flags & FIN:
                # SA-4.11 (a retransmitted FIN usually fails step one instead).
                self._send_ack(now)
                self.timers.arm(TIME_WAIT, now + 2 * self.config.msl)
            return False  # TW-6: anything else changes nothing
        return True

    def _arm_fin_wait_2(self, now: float) -> None:
        """Orphaned FIN-WAIT-2 (LX-8, Linux tcp_fin_timeout): once the user
        has said it will read no more (``close(discard=True)``), a peer that
        never sends its FIN cannot hold the connection.  A plain half-close
        waits for the peer's FIN as long as it takes, as Linux does after
        shutdown(SHUT_WR): the user is still there to read, and to abort."""
        t = self.config.fin_wait_2_timeout
        if t is not None and self.read_closed:
            self.timers.arm_once(FIN_WAIT_2, now + t)

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(_TIME_WAIT, now)
        self.timers.clear()  # only the 2MSL timer runs in TIME-WAIT
        self.timers.arm(TIME_WAIT, now + 2 * self.config.msl)

    def _delete(self, now: float) -> None:
        """Delete the TCB (enter CLOSED): flush the queues and stop every timer."""
        self._set_state(_CLOSED, now)
        self._ooo.clear()
        self.timers.clear()
        self._ack_now = False
        self._delack_pending = False

    def __repr__(self) -> str:
        return (
            f"<Connection {self.local[0]}:{self.local[1]} -> {self.remote[0]}:{self.remote[1]} "
            f"{self.state}>"
        )
