"""One TCP connection: the TCB and RFC 9293 §3.10 event processing.

Read RFC 9293 §3.10 (event processing) with §3.3.2 (states), RFC 5961
(blind-attack defences), RFC 7323 (window scale, timestamps, PAWS), RFC 6298
(RTO), RFC 5681/6582 (congestion control) with RFC 6675 (SACK-based loss
recovery, scoreboard in ``scoreboard.py``), RFC 3042 and RFC 5827 (limited
transmit, early retransmit), RFC 1337 (TIME-WAIT assassination) and RFC 1122
§4.2.3.2 (delayed ACK).

The connection is sans-IO: every input takes ``now`` (seconds), nothing reads
a clock or touches a socket.  Inputs: ``receive(segment, now)``, the user
calls (``send``, ``recv``, ``close``, ``abort``) and ``on_timer(now)``.
Outputs are queued: segments to send, events for the user, and the next
deadline (``next_deadline()``).  Every state change goes through
``_set_state``, which records a ``StateChanged`` event.

Sequence numbers are plain ints compared only through ``seqnum``.  The send
side keeps SND.MAX (the highest sequence sent) besides SND.NXT: after a
retransmission timeout SND.NXT goes back to SND.UNA (go-back-N, as BSD) and
ACKs up to SND.MAX stay acceptable.  Our FIN is located by sequence number
(``_fin_seq``): it has been sent when SND.MAX is past it, and acknowledged
when SND.UNA is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ..wire.segment import ACK, FIN, PSH, RST, SYN, URG, Segment, TcpOptions
from . import seqnum
from .buffers import Reassembly
from .config import Config
from .congestion import NewReno
from .events import (
    CloseAcknowledged,
    Closed,
    Connected,
    DataReceived,
    EndOfStream,
    Event,
    Reset,
    SendAcknowledged,
    StateChanged,
    TimedOut,
)
from .rto import RttEstimator
from .scoreboard import Scoreboard
from .state import State

MASK = seqnum.MASK
HALF = seqnum.HALF
_add = seqnum.add
_lt = seqnum.lt
_le = seqnum.le
_in_window = seqnum.in_window

ESTABLISHED = State.ESTABLISHED
_MAX_WSCALE = 14  # RFC 7323 §2.3


class TcpError(Exception):
    """A user call that the state does not allow (h11's LocalProtocolError):
    it raises and leaves the state unchanged."""


class ConnectionDoesNotExist(TcpError):
    """RFC 9293 §3.10: "error: connection does not exist"."""


class ConnectionClosing(TcpError):
    """RFC 9293 §3.10: "error: connection closing"."""


class ConnectionResetByPeer(TcpError):
    """A call on a connection that was reset."""


def scale_for(buffer: int) -> int:
    """The smallest shift that lets ``buffer`` be advertised (RFC 7323 §2.3)."""
    shift = 0
    while (buffer >> shift) > 0xFFFF and shift < _MAX_WSCALE:
        shift += 1
    return shift


class Connection:
    """A TCB.  Create with :meth:`open_active` or :meth:`open_passive`
    (the Host does this); drive with ``receive``/``on_timer`` and user calls."""

    __slots__ = (
        "__weakref__",
        "_ack_now",
        "_close_pending",
        "_delack_pending",
        "_events",
        "_fin_seq",
        "_full_unacked",
        "_high_rxt",
        "_host_counters",
        "_last_challenge",
        "_last_recv",
        "_last_send",
        "_offer_wscale",
        "_on_change",
        "_ooo",
        "_ooo_fin",
        "_out",
        "_persist_backoff",
        "_rcv_adv",
        "_rcvbuf",
        "_retries",
        "_rtt_seq",
        "_rtt_start",
        "_sb",
        "_snd_base",
        "_sndbuf",
        "_sws_step",
        "_ts_offset",
        "cc",
        "config",
        "counters",
        "delack_at",
        "fin_wait_2_at",
        "irs",
        "iss",
        "keepalive_at",
        "last_ack_sent",
        "local",
        "max_snd_wnd",
        "passive",
        "peer_fin",
        "peer_mss",
        "persist_at",
        "rcv_nxt",
        "rcv_up",
        "rcv_wscale",
        "read_closed",
        "remote",
        "reset_received",
        "rexmit_at",
        "rtt",
        "sack_ok",
        "smss",
        "snd_max",
        "snd_nxt",
        "snd_una",
        "snd_up",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "snd_wscale_offered",
        "state",
        "timewait_at",
        "ts_ok",
        "ts_recent",
        "ts_recent_age",
        "user_timeout_at",
    )

    def __init__(
        self,
        local: tuple[str, int],
        remote: tuple[str, int],
        iss: int,
        config: Config | None = None,
        *,
        ts_offset: int = 0,
        out: list[Segment] | None = None,
        events: list[tuple[Connection, Event]] | None = None,
        counters: Counter[str] | None = None,
        on_change: Callable[[Connection], None] | None = None,
    ) -> None:
        cfg = config or Config()
        self.config = cfg
        self.local = local
        self.remote = remote
        self.state = State.CLOSED
        self.passive = False  # MUST-11: reached SYN-RECEIVED from LISTEN
        self.reset_received = False
        # Send sequence variables (§3.3.1)
        self.iss = iss & MASK
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.snd_max = self.iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.snd_up = 0
        self.max_snd_wnd = 0  # RFC 5961 §5.2 MAX.SND.WND
        # Receive sequence variables
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_up = 0
        self._rcv_adv = 0  # right edge of the window last advertised
        # Negotiated options
        self.smss = cfg.default_peer_mss
        self.peer_mss = cfg.default_peer_mss
        self.snd_wscale = 0  # applied to windows we receive
        self.rcv_wscale = 0  # applied to windows we send
        self.ts_ok = False
        self.sack_ok = False
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        self.last_ack_sent = 0
        self._ts_offset = ts_offset & MASK
        self._sws_step = min(cfg.recv_buffer // 2, cfg.mss)
        self._offer_wscale = scale_for(cfg.recv_buffer) if cfg.window_scaling else None
        # Buffers.  _sndbuf holds the bytes from _snd_base on (unacked + unsent).
        self._sndbuf = bytearray()
        self._snd_base = _add(self.iss, 1)
        self._fin_seq: int | None = None  # our FIN's sequence number, once CLOSE was called
        self._close_pending = False  # CLOSE in SYN-RECEIVED with data queued (CL-4)
        self._rcvbuf = bytearray()
        self._ooo = Reassembly(cfg.max_ooo_segments)
        self._ooo_fin: int | None = None  # a peer FIN held beyond a gap
        self.peer_fin = False
        self.read_closed = False  # close(discard=True): we will read no more (LX-5/LX-7)
        # Congestion control and RTT
        self.cc = NewReno(self.smss, cfg.initial_window_segments)
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max)
        self._rtt_seq: int | None = None  # Karn: one timed segment at a time
        self._sb: Scoreboard | None = None  # what the peer SACKed (made on first use)
        self._high_rxt = 0  # RFC 6675 HighRxt: the end of the last retransmission in recovery
        self._rtt_start = 0.0
        self._retries = 0
        self._last_send = 0.0
        self._last_recv = 0.0
        # Timers: named absolute deadlines (None = not armed)
        self.rexmit_at: float | None = None
        self.persist_at: float | None = None
        self.delack_at: float | None = None
        self.timewait_at: float | None = None
        self.fin_wait_2_at: float | None = None
        self.keepalive_at: float | None = None
        self.user_timeout_at: float | None = None
        self._persist_backoff = 0
        # ACK bookkeeping
        self._ack_now = False
        self._delack_pending = False
        self._full_unacked = 0  # full-sized segments received since our last ACK
        self.snd_wscale_offered = False  # the peer's SYN carried Window Scale
        self._last_challenge = -1e18
        # Outputs
        self._out: list[Segment] = out if out is not None else []
        self._events: list[tuple[Connection, Event]] = events if events is not None else []
        self.counters: dict[str, int] = {}
        self._host_counters = counters
        self._on_change = on_change

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
        **kw: object,
    ) -> Connection:
        """Active OPEN: send SYN, enter SYN-SENT."""
        conn = cls(local, remote, iss, config, **kw)  # type: ignore[arg-type]
        conn._set_state(State.SYN_SENT, now)
        conn._open(now, ack=False)
        return conn

    @classmethod
    def open_passive(
        cls, syn: Segment, iss: int, now: float, config: Config | None = None, **kw: object
    ) -> Connection:
        """A SYN reached a listener (§3.10.7.2): LISTEN -> SYN-RECEIVED, send SYN,ACK."""
        conn = cls((syn.dst, syn.dport), (syn.src, syn.sport), iss, config, **kw)  # type: ignore[arg-type]
        conn._set_state(State.LISTEN, now)  # the listener's TCB, cloned for this SYN
        conn.passive = True
        conn._take_syn(syn, now)
        conn._negotiated()
        conn._set_state(State.SYN_RECEIVED, now)
        conn._open(now, ack=True)
        return conn

    def _open(self, now: float, ack: bool) -> None:
        """Send our SYN (or SYN,ACK), which consumes ISS, and time it."""
        self.snd_nxt = self.snd_max = _add(self.iss, 1)
        self._emit_syn(now, ack=ack)
        self._arm_rexmit(now)
        self._rtt_seq, self._rtt_start = self.snd_nxt, now
        self._changed()

    # ------------------------------------------------------------------
    # Outputs

    def take_segments(self) -> list[Segment]:
        out = self._out[:]
        self._out.clear()
        return out

    def take_events(self) -> list[Event]:
        evs = [ev for _, ev in self._events]
        self._events.clear()
        return evs

    def next_deadline(self) -> float | None:
        best: float | None = None
        for t in (
            self.rexmit_at,
            self.persist_at,
            self.delack_at,
            self.timewait_at,
            self.fin_wait_2_at,
            self.keepalive_at,
            self.user_timeout_at,
        ):
            if t is not None and (best is None or t < best):
                best = t
        return best

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

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND: the receive buffer's free space."""
        return max(self.config.recv_buffer - len(self._rcvbuf), 0)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1
        if self._host_counters is not None:
            self._host_counters[reason] += 1

    def _event(self, ev: Event) -> None:
        self._events.append((self, ev))

    def _data_event(self, n: int) -> None:
        """DataReceived, merged with the previous event when that was one
        too, so a burst of segments is one wake-up for the user."""
        evs = self._events
        if evs:
            conn, last = evs[-1]
            if conn is self and type(last) is DataReceived:
                evs[-1] = (self, DataReceived(last.length + n))
                return
        evs.append((self, DataReceived(n)))

    def _set_state(self, new: State, now: float) -> None:
        old = self.state
        if old is new:
            return
        self.state = new
        self._event(StateChanged(old, new, now))

    # ------------------------------------------------------------------
    # Segment construction

    def _ts_now(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & MASK

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
        if not self.ts_ok and not (self.sack_ok and self._ooo):
            return _NO_OPTS
        sack: tuple[tuple[int, int], ...] = ()
        if self.sack_ok and self._ooo:
            sack = self._ooo.sack_blocks(3 if self.ts_ok else 4)
        if self.ts_ok:
            ts = ((int(now * 1000) + self._ts_offset) & MASK, self.ts_recent)
            return TcpOptions(None, None, False, ts, sack, ())
        if sack:
            return TcpOptions(sack_blocks=sack)
        return _NO_OPTS

    def _emit(self, seq: int, flags: int, now: float, payload: bytes = b"") -> None:
        """Queue one segment; every segment with ACK carries RCV.NXT and
        settles any pending or delayed ACK."""
        if flags & ACK:
            ack, window, opts = self._ack_header(now)
        else:
            ack, window, opts = 0, 0 if flags & RST else self._window_field(), self._options(now)
        self._out.append(
            Segment(
                self.local[0], self.remote[0], self.local[1], self.remote[1],
                seq, ack, flags, window, payload, opts, 0,
            )
        )  # fmt: skip
        self._last_send = now

    def _emit_syn(self, now: float, ack: bool) -> None:
        """SYN or SYN,ACK at ISS with our options (§3.7.1, RFC 7323, RFC 2018).
        In a SYN,ACK we offer only what the peer's SYN offered."""
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
            self.delack_at = None
        self._last_send = now

    def _emit_rst(self, seq: int, now: float) -> None:
        self._out.append(
            Segment(
                self.local[0],
                self.remote[0],
                self.local[1],
                self.remote[1],
                seq,
                0,
                RST,
                0,
                b"",
                self._options(now) if self.ts_ok else _NO_OPTS,
                0,
            )
        )

    def _send_ack(self, now: float) -> None:
        # Pure ACKs carry SND.MAX, not a rolled-back SND.NXT (BSD tcp_output):
        # a sequence number behind the peer's RCV.NXT would make it unacceptable.
        self._emit(self.snd_max, ACK, now)

    def _challenge_ack(self, seg: Segment, now: float, reason: str) -> None:
        """RFC 5961 §3.2/§4.2/§5.2 challenge ACK (and the §3.10.7.4 step-1
        ACK), rate-limited per connection as Linux's tcp_oow_rate_limited():
        only zero-length segments and SYNs count toward the limit, so a
        retransmitted FIN is always answered (SA-1.4)."""
        self._count(reason)
        limited = not seg.payload and (not seg.flags & FIN or seg.flags & SYN)
        if limited and now - self._last_challenge < self.config.challenge_ack_interval:
            self._count("ack_ratelimited")
            return
        if limited:
            self._last_challenge = now
        self._send_ack(now)

    # ------------------------------------------------------------------
    # User calls (§3.10.2-§3.10.5)

    def send(self, data: bytes, now: float) -> int:
        """SEND: queue as much of ``data`` as the send buffer takes; returns
        the number of bytes accepted."""
        st = self.state
        if st is State.CLOSED:
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
            if (
                self.cc.cwnd > self.cc.iw
                and now - self._last_send > self.rtt.rto
                and (self.snd_una == self.snd_max)
            ):
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
            if (
                (self._rcvbuf or self._ooo)
                and self.config.abort_on_close_with_unread
                and (st.synchronized)
            ):
                self._count("abort_on_close")
                self._rcvbuf.clear()
                self.abort(now)
                return
        if st is State.CLOSED:
            raise ConnectionDoesNotExist("connection does not exist")  # CL-1
        if st is State.SYN_SENT:
            self._delete(now)  # CL-3: no segment
            self._event(Closed())
        elif st is State.SYN_RECEIVED:
            if self._sndbuf:
                self._close_pending = True  # CL-4: after ESTABLISHED
            else:
                self._queue_fin(State.FIN_WAIT_1, now)
        elif st is ESTABLISHED:
            self._queue_fin(State.FIN_WAIT_1, now)  # CL-5
        elif st is State.CLOSE_WAIT:
            self._queue_fin(State.LAST_ACK, now)  # CL-7
        elif st is State.FIN_WAIT_1:
            pass  # CL-6: already closing; "ok", and never a second FIN
        elif st is State.FIN_WAIT_2:
            self._arm_fin_wait_2(now)  # CL-6, and now possibly orphaned
        else:
            raise ConnectionClosing("connection closing")  # CL-8
        self._changed()

    def _queue_fin(self, state: State, now: float) -> None:
        """Place our FIN after the last queued byte and send what can go."""
        self._fin_seq = _add(self._snd_base, len(self._sndbuf))
        self._set_state(state, now)
        self._push(now)

    def abort(self, now: float) -> None:
        """ABORT (§3.10.5): RST in the synchronized states that can still
        talk, nothing otherwise; the user sees a local reset (AB-3)."""
        st = self.state
        if st is State.CLOSED:
            raise ConnectionDoesNotExist("connection does not exist")
        if st in (
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.FIN_WAIT_1,
            State.FIN_WAIT_2,
            State.CLOSE_WAIT,
        ):
            self._emit_rst(self.snd_max, now)  # AB-1
            self._count("abort_sent_rst")
        self._sndbuf.clear()
        self._delete(now)
        self._event(Reset(local=True))
        self._changed()

    # ------------------------------------------------------------------
    # Timers

    def on_timer(self, now: float) -> None:
        """Fire every deadline at or before ``now``."""
        if self.timewait_at is not None and now >= self.timewait_at:
            self.timewait_at = None
            self._delete(now)  # §3.10.8: 2MSL expired
            self._event(Closed())
            self._changed()
            return
        if self.user_timeout_at is not None and now >= self.user_timeout_at:
            self._time_out(now, "user_timeout")
            return
        if self.fin_wait_2_at is not None and now >= self.fin_wait_2_at:
            self._time_out(now, "fin_wait_2_timeout")
            return
        if self.rexmit_at is not None and now >= self.rexmit_at:
            self._on_rexmit_timeout(now)
        if self.persist_at is not None and now >= self.persist_at:
            self._on_persist(now)
        if self.keepalive_at is not None and now >= self.keepalive_at:
            self._on_keepalive(now)
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            if self.state.synchronized and self.state is not State.TIME_WAIT:
                self._send_ack(now)
        self._changed()

    def _time_out(self, now: float, reason: str) -> None:
        state = self.state
        self._count(reason)
        self._delete(now)
        self._event(TimedOut(state))
        self._changed()

    def _arm_rexmit(self, now: float) -> None:
        if self.rexmit_at is None:
            self.rexmit_at = now + self.rtt.rto

    def _on_rexmit_timeout(self, now: float) -> None:
        """§3.8.1, RFC 6298 §5.4-5.7: retransmit the earliest unacknowledged
        segment, back off, and give up after a bounded number of tries."""
        self.rexmit_at = None
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
            self._push(now)
        self._arm_rexmit(now)

    def _on_persist(self, now: float) -> None:
        """Zero-window probe (§3.8.6.1): Linux's form, ``<SEQ=SND.UNA-1>``
        with no data, which the peer must answer with its current window."""
        self.persist_at = None
        if not self.state.sending or self.snd_wnd > 0:
            return
        self._count("window_probe")
        self._emit(_add(self.snd_una, -1), ACK, now)
        self._persist_backoff = min(self._persist_backoff + 1, 16)
        self.persist_at = now + min(
            self.rtt.rto * (1 << self._persist_backoff), self.config.rto_max
        )

    def _on_keepalive(self, now: float) -> None:
        self.keepalive_at = None
        if self.config.keepalive is None or self.state is not ESTABLISHED:
            return
        if now - self._last_recv >= self.config.keepalive:
            self._count("keepalive_probe")
            self._emit(_add(self.snd_una, -1), ACK, now)
        self.keepalive_at = now + self.config.keepalive

    # ------------------------------------------------------------------
    # Sending data and FIN

    def _push(self, now: float) -> None:
        """Send what the windows allow: data from SND.NXT, then our FIN
        (piggybacked on the last data segment when it fits, LX-4).  The
        segments of one burst share their ACK, window and options, which are
        computed once."""
        if not self.state.sending:
            return
        buf = self._sndbuf
        smss = self.smss
        fin_seq = self._fin_seq
        base = self._snd_base
        data_end = (base + len(buf)) & MASK
        una = self.snd_una
        cc = self.cc
        cwnd = cc.cwnd
        if cc.dupacks and not cc.in_recovery:
            # Limited transmit (RFC 3042): a new segment for each of the first
            # two DupAcks, cwnd itself unchanged, so a small flight can still
            # draw the third.
            cwnd += min(cc.dupacks, 2) * smss
        wnd = min(self.snd_wnd, cwnd)
        nagle = self.config.nagle
        nxt = self.snd_nxt
        out = self._out
        header: tuple[int, int, TcpOptions] | None = None  # (ack, window, options)
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
                n = min(unsent, smss, wnd - flight)
                if n <= 0:
                    if self.snd_wnd == 0 and una == self.snd_max:
                        self._arm_persist(now)
                    break
                if n < smss and n < unsent and flight > 0:
                    break  # sender SWS avoidance (§3.8.6.2.1): wait for a full segment
                if nagle and n < smss and flight > 0 and fin_seq is None:
                    break  # Nagle (RFC 896, §3.7.4)
            if header is None:
                header = self._ack_header(now)
            off = (nxt - base) & MASK
            end = (nxt + n) & MASK
            flags = ACK
            if n and end == data_end:
                flags |= PSH
            if end == fin_seq:
                flags |= FIN
            out.append(
                Segment(
                    self.local[0], self.remote[0], self.local[1], self.remote[1],
                    nxt, header[0], flags, header[1], bytes(buf[off : off + n]) if n else b"",
                    header[2], 0,
                )
            )  # fmt: skip
            nxt = (end + (flags & FIN)) & MASK
            if _lt(self.snd_max, nxt):
                if self._rtt_seq is None and not self.ts_ok:
                    self._rtt_seq, self._rtt_start = nxt, now
                self.snd_max = nxt
        if header is not None:
            self.snd_nxt = nxt
            self._last_send = now
            self._arm_rexmit(now)
            self.persist_at = None
            self._persist_backoff = 0

    def _ack_header(self, now: float) -> tuple[int, int, TcpOptions]:
        """ACK, window and options for segments sent now; sending them
        settles any pending or delayed ACK."""
        ack = self.rcv_nxt
        self._ack_now = False
        self._delack_pending = False
        self._full_unacked = 0
        self.delack_at = None
        self.last_ack_sent = ack
        return ack, self._window_field(), self._options(now)

    def _arm_persist(self, now: float) -> None:
        if self.persist_at is None and self.rexmit_at is None:
            self.persist_at = now + self.rtt.rto

    def _retransmit_first(self, now: float) -> None:
        """Fast retransmit / partial ACK: resend the segment at SND.UNA."""
        self._retransmit(self.snd_una, self.smss, now)

    def _retransmit(self, seq: int, limit: int, now: float) -> bool:
        """Resend up to ``limit`` bytes from ``seq`` (with our FIN when they
        reach it), stopping short of bytes the peer has SACKed."""
        off = seqnum.sub(seq, self._snd_base)
        n = min(limit, max(len(self._sndbuf) - off, 0))
        sb = self._sb
        if sb:
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

    # ------------------------------------------------------------------
    # SEGMENT ARRIVES (§3.10.7)

    def receive(self, seg: Segment, now: float) -> None:
        """Process one arriving segment; peer input never raises."""
        st = self.state
        self._last_recv = now
        if st is State.SYN_SENT:
            self._arrive_syn_sent(seg, now)
        elif st.synchronized:
            if st is ESTABLISHED and self.config.header_prediction and self._predicted(seg, now):
                self._steps_five_to_eight(seg, now)
            else:
                self._arrive_synchronized(seg, now)
            if self.state.sending:
                self._push(now)
        else:
            self._count("segment_in_" + st.name.lower())
            return
        if self._ack_now:
            self._send_ack(now)
        elif self._delack_pending and self.delack_at is None:
            self.delack_at = now + self.config.delayed_ack_timeout
        if (
            self.config.keepalive is not None
            and self.keepalive_at is None
            and (self.state is ESTABLISHED)
        ):
            self.keepalive_at = now + self.config.keepalive
        self._changed()

    def _predicted(self, seg: Segment, now: float) -> bool:
        """Header prediction (Jacobson; RFC 7323 Appendix D), reduced to a
        decision: True when §3.10.7.4 steps one to four would pass ``seg``
        through unchanged — in ESTABLISHED, only ACK (and PSH) set,
        SEG.SEQ = RCV.NXT, the text within RCV.WND, PAWS passed — so the
        caller may go straight to steps five to eight, the same code the
        full path runs.  The one effect of step one that such a segment has,
        the TS.Recent update, is made by the same helper."""
        if seg.flags & 0x37 != ACK or seg.seq != self.rcv_nxt:  # 0x37: URG ACK RST SYN FIN
            return False
        if len(seg.payload) > self.config.recv_buffer - len(self._rcvbuf):
            return False  # beyond RCV.WND: step one trims
        if self.ts_ok:
            ts = seg.options.timestamps
            if ts is not None:
                if ((ts[0] - self.ts_recent) & MASK) >= HALF:
                    return False  # PAWS would reject: step one decides
                self._take_ts_recent(seg.seq, ts[0], now)
        return True

    def _take_ts_recent(self, seq: int, tsval: int, now: float) -> None:
        """RFC 7323 §4.3: TS.Recent follows the segment that covers
        Last.ACK.sent (the caller has checked TSval against TS.Recent)."""
        if _le(seq, self.last_ack_sent):
            self.ts_recent = tsval
            self.ts_recent_age = now

    def _take_syn(self, syn: Segment, now: float) -> None:
        """Record the peer's SYN: IRS, RCV.NXT and its options (§3.10.7.2,
        §3.7.1 MSS, RFC 7323 §2.2/§3.2, RFC 2018)."""
        self.irs = syn.seq
        self.rcv_nxt = _add(syn.seq, 1)
        self.rcv_up = self.rcv_nxt
        opts = syn.options
        cfg = self.config
        mss = opts.mss if opts.mss else cfg.default_peer_mss
        self.peer_mss = mss
        if opts.wscale is not None:
            self.snd_wscale_offered = True
            self.snd_wscale = min(opts.wscale, _MAX_WSCALE)  # TS-2
            if opts.wscale > _MAX_WSCALE:
                self._count("wscale_clamped")
        if opts.timestamps is not None and cfg.timestamps:
            self.ts_ok = True
            self.ts_recent = opts.timestamps[0]
            self.ts_recent_age = now
        self.sack_ok = opts.sack_permitted and cfg.sack_permitted
        self.snd_wnd = syn.window  # never scaled on a SYN (TS-3)
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = syn.seq
        self.snd_wl2 = syn.ack

    def _negotiated(self) -> None:
        """Finish option negotiation once both SYNs are known: each option is
        on only when both sides offered it (TS-1, TS-5)."""
        both_ws = self.snd_wscale_offered and self._offer_wscale is not None
        self.rcv_wscale = self._offer_wscale if both_ws and self._offer_wscale else 0
        if not both_ws:
            self.snd_wscale = 0  # TS-1: both or neither
        smss = min(self.peer_mss, self.config.mss)
        if self.ts_ok:
            smss -= 12  # RFC 6691: the MSS does not count TCP options
        self.smss = max(smss, 64)
        self.cc = NewReno(self.smss, self.config.initial_window_segments)
        self.cc.recover = self.iss

    def _arrive_syn_sent(self, seg: Segment, now: float) -> None:
        """§3.10.7.3."""
        flags = seg.flags
        # SA-SS-1: an ACK outside (ISS, SND.MAX] is not for this incarnation.
        if flags & ACK and (_le(seg.ack, self.iss) or _lt(self.snd_max, seg.ack)):
            if not flags & RST:
                self._emit_rst(seg.ack, now)
            self._count("bad_ack_syn_sent")
            return
        if flags & RST:
            if flags & ACK:  # SA-SS-3: acceptable ACK, refused
                self.reset_received = True
                self._delete(now)
                self._event(Reset(refused=True))
            else:
                self._count("rst_without_ack_syn_sent")
            return
        if not flags & SYN:
            if flags & FIN and not flags & ACK:
                self._count("fin_without_ack")
            else:
                self._count("no_syn_in_syn_sent")  # SA-SS-6
            return
        self._take_syn(seg, now)
        if flags & ACK:
            self._negotiated()
            self._ack_syn(seg.ack, now)
            self._set_state(ESTABLISHED, now)
            self._event(Connected())
            self.snd_wnd = seg.window  # the SYN,ACK's window is never scaled
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self._ack_now = True
            rest = seg._replace(seq=self.rcv_nxt, flags=flags & ~SYN)
            if rest.payload or rest.flags & FIN:
                self._text_and_fin(rest, now)
            self._push(now)
        else:
            # Simultaneous open (SA-SS-5, MUST-10).
            self._negotiated()
            self._set_state(State.SYN_RECEIVED, now)
            self._emit_syn(now, ack=True)

    def _ack_syn(self, ack: int, now: float) -> None:
        self.snd_una = ack
        if _lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        self._retries = 0
        self.rexmit_at = None
        if self._rtt_seq is not None and not _lt(ack, self._rtt_seq):
            self.rtt.sample(now - self._rtt_start)
            self._rtt_seq = None
        self.rtt.backoff = 0

    def _arrive_synchronized(self, seg: Segment, now: float) -> bool:
        """§3.10.7.4, steps in the RFC's order.  True when the segment got
        through to the end (so new data may be sent)."""
        flags = seg.flags
        if (
            self.state is State.SYN_RECEIVED
            and flags & (SYN | ACK | RST) == SYN
            and (seg.seq == self.irs)
        ):
            # A retransmitted SYN: our SYN,ACK was lost (Linux tcp_check_req).
            self._count("syn_retransmitted")
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
            if self.state is State.SYN_RECEIVED and self.passive:
                self._count("syn_in_syn_received")
                self._set_state(State.LISTEN, now)  # SA-3.1
                self._delete(now)
                return False
            self._challenge_ack(seg, now, "challenge_ack_syn")  # SA-3.2, RFC 5961 §4
            return False
        if not flags & ACK:  # fifth: SA-4.1, where the bare FIN dies
            self._count("fin_without_ack" if flags & FIN else "no_ack")
            return False
        return self._steps_five_to_eight(seg, now)

    def _steps_five_to_eight(self, seg: Segment, now: float) -> bool:
        """§3.10.7.4 fifth (ACK) to eighth (FIN) for a segment that passed
        steps one to four; header prediction comes straight here."""
        if not self._step_ack(seg, now):
            return False
        if seg.flags & URG and self.state in (ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2):
            up = _add(seg.seq, seg.urgent)  # sixth (RFC 6093: pointer to after the data)
            if _lt(self.rcv_up, up):
                self.rcv_up = up
        self._text_and_fin(seg, now)  # seventh and eighth
        return True

    def _check_sequence(self, seg: Segment, now: float) -> Segment | None:
        """Step one: PAWS (RFC 7323 §5.3), the four-case acceptability test,
        and trimming to the window (SA-1.5).  Returns the (trimmed) segment,
        or None when it was dropped."""
        flags = seg.flags
        if self.ts_ok and not flags & RST:
            ts = seg.options.timestamps
            if ts is not None and _lt(ts[0], self.ts_recent):
                if now - self.ts_recent_age > 24 * 86400:
                    self.ts_recent = ts[0]  # TS.Recent is stale after 24 days idle
                else:
                    self._challenge_ack(seg, now, "paws_rejected")
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
        if not ok:
            if flags & RST:
                self._count("rst_out_of_window")  # SA-2.1
                return None
            if wnd == 0 and flags & ACK and seg_len:
                self._step_ack(seg, now, ack_only=True)  # MUST-66
                if not self.state.synchronized:
                    return None
            if flags & FIN and not flags & ACK:
                self._count("fin_without_ack")
            if self.state is State.TIME_WAIT and flags & FIN and _add(seq, seg_len) == nxt:
                self.timewait_at = now + 2 * self.config.msl  # SA-1.4, TW-3
                self._count("time_wait_fin_retransmitted")
            self._challenge_ack(seg, now, "unacceptable_segment")  # SA-1.2
            return None
        # Timestamps: TS.Recent follows the segment that covers Last.ACK.sent (§4.3).
        if self.ts_ok:
            ts = seg.options.timestamps
            if ts is not None and not _lt(ts[0], self.ts_recent):
                self._take_ts_recent(seq, ts[0], now)
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
        if plen:
            room = wnd - seqnum.sub(seq, nxt)
            if plen > room:
                seg = seg._replace(payload=seg.payload[:room], flags=seg.flags & ~FIN)
                self._count("trimmed_to_window")
        return seg

    def _on_rst(self, seg: Segment, now: float) -> None:
        """Step two: RFC 5961 §3.2 and the per-state resets (SA-2.x)."""
        st = self.state
        if st is State.TIME_WAIT and self.config.rfc1337:
            self._count("rst_in_time_wait_ignored")  # RFC 1337, TW-4
            return
        if seg.seq != self.rcv_nxt:
            self._challenge_ack(seg, now, "challenge_ack_rst")  # SA-2.3
            return
        self._count("rst_received")
        self.reset_received = True
        if st is State.SYN_RECEIVED and self.passive:
            self._set_state(State.LISTEN, now)  # SA-2.4: back to the listener
            self._delete(now)
            return
        refused = st is State.SYN_RECEIVED
        self._rcvbuf.clear()
        self._sndbuf.clear()
        self._delete(now)
        self._event(Reset(refused=refused))

    def _step_ack(self, seg: Segment, now: float, ack_only: bool = False) -> bool:
        """Step five: the ACK field (§3.10.7.4 fifth, RFC 5961 §5.2)."""
        st = self.state
        ack = seg.ack
        una = self.snd_una
        if st is State.SYN_RECEIVED:
            if not (_lt(una, ack) and _le(ack, self.snd_max)):
                self._emit_rst(ack, now)  # SA-4.3
                self._count("bad_ack_syn_received")
                return False
            self._ack_syn(_add(una, 1), now)
            self._set_state(ESTABLISHED, now)
            self._event(Connected())
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            una = self.snd_una
            if self._close_pending:
                self._close_pending = False
                self._queue_fin(State.FIN_WAIT_1, now)
        # RFC 5961 §5.2: acceptable only in [SND.UNA - MAX.SND.WND, SND.MAX].
        if _lt(self.snd_max, ack):
            self._challenge_ack(seg, now, "ack_of_unsent_data")
            return False
        if _lt(ack, _add(una, -self.max_snd_wnd)):
            self._challenge_ack(seg, now, "ack_too_old")
            return False
        newly = 0
        if self.sack_ok and (seg.options.sack_blocks or self._sb):
            sb = self._sb
            if sb is None:
                sb = self._sb = Scoreboard(self.config.max_ooo_segments)
            newly = sb.update(seg.options.sack_blocks, ack if _lt(una, ack) else una, self.snd_max)
        if _lt(una, ack):
            self._on_new_ack(seg, ack, now)
        elif ack == una and not ack_only:
            self._maybe_dupack(seg, now, newly)
        # Window update (SA-4.5): only from a segment newer than the last one used.
        if _lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and _le(self.snd_wl2, ack)):
            wnd = seg.window << self.snd_wscale
            if wnd != self.snd_wnd:
                self.snd_wnd = wnd
                if wnd > self.max_snd_wnd:
                    self.max_snd_wnd = wnd
                if wnd and self.persist_at is not None:
                    self.persist_at = None
                    self._persist_backoff = 0
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
        return self._ack_state_step(seg, now)

    def _on_new_ack(self, seg: Segment, ack: int, now: float) -> None:
        """SND.UNA < SEG.ACK <= SND.MAX: release acknowledged bytes, update
        RTT (Karn, or TSecr), congestion window and the retransmission timer."""
        acked = seqnum.sub(ack, self.snd_una)
        base = self._snd_base
        # Bytes of our stream (not SYN or FIN) covered by this ACK.
        data_acked = min(max(seqnum.sub(ack, base), 0), len(self._sndbuf))
        if data_acked:
            del self._sndbuf[:data_acked]
            self._snd_base = _add(base, data_acked)
        self.snd_una = ack
        if _lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        self._retries = 0
        self._sample_rtt(seg.options.timestamps, ack, now)
        cc = self.cc
        if cc.in_recovery:
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
        self.rexmit_at = None
        if ack != self.snd_max:
            self.rexmit_at = now + self.rtt.rto
        if data_acked > 0:
            self._event(SendAcknowledged(data_acked))

    def _sample_rtt(self, ts: tuple[int, int] | None, ack: int, now: float) -> None:
        """An RTT sample from an ACK of new data: TSecr when timestamps are on
        (RFC 7323 §4), else the one timed segment (Karn, RFC 6298 §3)."""
        if self.ts_ok and ts is not None and ts[1]:
            self.rtt.sample(((self._ts_now(now) - ts[1]) & MASK) / 1000.0)
        elif self._rtt_seq is not None and not _lt(ack, self._rtt_seq):
            self.rtt.sample(now - self._rtt_start)
            self._rtt_seq = None

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
            self.rexmit_at = now + self.rtt.rto

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

    def _ack_state_step(self, seg: Segment, now: float) -> bool:
        """The per-state part of step five (SA-4.6 .. SA-4.11)."""
        st = self.state
        fin_seq = self._fin_seq
        fin_acked = fin_seq is not None and self.snd_una == _add(fin_seq, 1)
        if st is State.FIN_WAIT_1:
            if fin_acked:
                self._set_state(State.FIN_WAIT_2, now)  # SA-4.6
                self._event(CloseAcknowledged())
                self._arm_fin_wait_2(now)
        elif st is State.CLOSING:
            if not fin_acked:
                return False  # SA-4.9: ignore the segment
            self._enter_time_wait(now)
        elif st is State.LAST_ACK:
            if fin_acked:
                self._delete(now)  # SA-4.10: no TIME-WAIT for the passive closer
                self._event(Closed())
            return False
        elif st is State.TIME_WAIT:
            if seg.flags & FIN:
                # SA-4.11 (a retransmitted FIN usually fails step one instead).
                self._send_ack(now)
                self.timewait_at = now + 2 * self.config.msl
            return False  # TW-6: anything else changes nothing
        return True

    def _arm_fin_wait_2(self, now: float) -> None:
        """Orphaned FIN-WAIT-2 (LX-8, Linux tcp_fin_timeout): once the user
        has said it will read no more (``close(discard=True)``), a peer that
        never sends its FIN cannot hold the connection.  A plain half-close
        waits for the peer's FIN as long as it takes, as Linux does after
        shutdown(SHUT_WR): the user is still there to read, and to abort."""
        t = self.config.fin_wait_2_timeout
        if t is not None and self.read_closed and self.fin_wait_2_at is None:
            self.fin_wait_2_at = now + t

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
                self._emit_rst(self.snd_max, now)
                self._sndbuf.clear()
                self._delete(now)
                self._event(Reset(local=True))
                return
            if seq == nxt:
                self._deliver(payload, now)
                if seg.flags & FIN:
                    self._on_fin(now)
                    return
                if self._ooo or self._ooo_fin is not None:
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
        self._rcvbuf += data
        self.rcv_nxt = _add(self.rcv_nxt, n)
        self._data_event(n)
        # Delayed ACK (RFC 1122 §4.2.3.2, RFC 9293 §3.8.6.3): at least every
        # second full-sized segment, and within the delay for the rest.
        if not self.config.delayed_ack:
            self._ack_now = True
            return
        self._delack_pending = True
        if n >= self.smss:
            self._full_unacked += 1
        if self._full_unacked >= 2 or self.rcv_wnd < self.smss:
            self._ack_now = True

    def _pull_ooo(self, now: float) -> None:
        data = self._ooo.pop_ready(self.rcv_nxt)
        if data:
            self._deliver(data, now)
        self._ack_now = True  # RFC 5681 §4.2: a gap (partly) filled, ACK at once
        if self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt:
            self._ooo_fin = None
            self._on_fin(now)

    def _on_fin(self, now: float) -> None:
        """Step eight: the peer's FIN consumes one sequence number."""
        st = self.state
        if self.peer_fin:
            return
        self.peer_fin = True
        self.rcv_nxt = _add(self.rcv_nxt, 1)
        self._ooo.clear()
        self._ooo_fin = None
        self._event(EndOfStream())
        if st in (ESTABLISHED, State.SYN_RECEIVED):
            self._set_state(State.CLOSE_WAIT, now)
            # Linux tcp_fin(): the ACK of a FIN is delayed (pingpong), so an
            # application that closes promptly sends one FIN,ACK: the
            # three-segment close (LX-1).
            if self.config.delayed_ack:
                self._delack_pending = True
            else:
                self._ack_now = True
        elif st is State.FIN_WAIT_1:
            self._set_state(State.CLOSING, now)  # simultaneous close (LX-2)
            self._ack_now = True
        elif st is State.FIN_WAIT_2:
            self._ack_now = True
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(State.TIME_WAIT, now)
        self.timewait_at = now + 2 * self.config.msl
        self.rexmit_at = self.persist_at = self.keepalive_at = None
        self.fin_wait_2_at = self.user_timeout_at = None
        self.delack_at = None

    # ------------------------------------------------------------------

    def _delete(self, now: float) -> None:
        """Delete the TCB (enter CLOSED): flush the queues and stop every timer."""
        self._set_state(State.CLOSED, now)
        self._ooo.clear()
        self.rexmit_at = self.persist_at = self.delack_at = None
        self.timewait_at = self.fin_wait_2_at = None
        self.keepalive_at = self.user_timeout_at = None
        self._ack_now = False
        self._delack_pending = False

    def __repr__(self) -> str:
        return (
            f"<Connection {self.local[0]}:{self.local[1]} -> {self.remote[0]}:{self.remote[1]} "
            f"{self.state}>"
        )


_NO_OPTS = TcpOptions()
