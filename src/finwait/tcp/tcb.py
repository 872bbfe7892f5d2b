"""The TCB's variables (RFC 9293 §3.3.1) and what both halves share.

A connection is one object (``connection.Connection``) made of two halves
and a core, as gVisor's ``snd.go`` / ``rcv.go``:

* ``sender.Sender`` — SND.*, the send buffer, FIN placement, push, the
  retransmission timeout, RTT/RTO, persist, and step five of §3.10.7.4
  (the ACK field); its base ``recovery.Recovery`` is loss recovery short
  of a timeout (DupAcks and NewReno/SACK fast recovery, or RACK-TLP and
  PRR), over congestion control (``congestion.py``);
* ``receiver.Receiver`` — RCV.*, reassembly, delayed ACK and the window we
  advertise; steps one (sequence check), seven (text) and eight (FIN);
* ``connection.Connection`` — the state, the user calls and the §3.10 event
  dispatch.

The halves are mixins over one slotted object: every variable is a plain
attribute (``conn.snd_una``, ``conn.rcv_nxt``), which keeps the hot paths
as fast as a single class.  This module lists the variables, grouped by the
half that owns them (the owner initialises and changes them; the other half
only reads them), and holds the helpers both halves use to emit segments,
events and counts, and the handshake's option negotiation, which sets both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..wire.segment import ACK, RST, Segment, TcpOptions, new_segment
from . import congestion, seqnum
from .buffers import Reassembly, SendBuffer
from .config import Config
from .congestion import CongestionControl
from .events import Event, StateChanged
from .rack import Rack
from .rto import RttEstimator
from .scoreboard import Scoreboard
from .state import State
from .timers import Timers
from .verdict import Verdict

if TYPE_CHECKING:
    from .connection import Connection
    from .transmit import Pacer

MASK = seqnum.MASK
HALF = seqnum.HALF
NO_OPTIONS = TcpOptions()
MAX_WSCALE = 14  # RFC 7323 §2.3

CONNECTION_SLOTS = (
    "__weakref__", "config", "local", "remote", "state", "passive", "reset_received",
    "timers", "counters", "_host_counters", "_on_change", "_touched", "_out", "_events", "_box",
    "_last_recv", "_close_pending", "read_closed", "_verdict",
)  # fmt: skip
SENDER_SLOTS = (
    "iss", "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2", "snd_up",
    "max_snd_wnd", "smss", "_send_size", "peer_mss", "snd_wscale", "snd_wscale_offered", "_sndbuf",
    "_snd_base", "_fin_seq", "cc", "rtt", "_rtt_seq", "_rtt_start", "_sb", "_high_rxt",
    "_retries", "_last_send", "_persist_backoff", "_ts_offset", "_rack", "_cwnd_use",
    "_probes", "_probe_start", "_pacer",
)  # fmt: skip
RECEIVER_SLOTS = (
    "irs", "rcv_nxt", "rcv_up", "_rcv_adv", "rcv_wscale", "_offer_wscale", "_sws_step",
    "ts_ok", "sack_ok", "ts_recent", "ts_recent_age", "_ts_pending", "last_ack_sent",
    "_rcvbuf", "_ooo",
    "_ooo_fin", "peer_fin", "_ack_now", "_delack_pending", "_full_unacked", "_quick",
    "_pingpong", "_last_data_rcv",
    "_last_challenge",
)  # fmt: skip
TCB_SLOTS = CONNECTION_SLOTS + SENDER_SLOTS + RECEIVER_SLOTS


class Outbox:
    """Where connections put their output: the emit handle a Host gives each
    connection it makes (one per Host, so segments go on the wire in the
    order they were produced).  ``counters`` also gets every count, and
    ``changed`` is called at the end of every input and user call (the Host
    updates its tables and timer heap from it) — but when ``touched`` is
    given, the end of ``receive`` only enters the connection in it (a dict
    used as an ordered set, the Host's list of connections whose timers to
    settle), and the caller of ``receive`` updates its tables itself: one
    dict store per segment instead of a call.

    ``drops`` is a property of the device the segments go to: when set, it
    takes none of them (a queueing discipline that holds nothing, ``tc
    qdisc add dev D root pfifo limit 0``), and a connection learns so as it
    transmits, as Linux's does when ``tcp_transmit_skb()`` gets
    ``NET_XMIT_DROP`` back: a data segment is not counted as sent, an ACK
    or RST is simply lost (LX-18).  ``paces``: the device is Linux's fq
    queueing discipline, which holds each segment until the time its
    connection's pacing rate gives it (``Config.pacing``, CC-16)."""

    __slots__ = ("changed", "counters", "drops", "events", "paces", "segments", "touched")

    def __init__(
        self,
        counters: Counter[str] | None = None,
        changed: Callable[[Connection], None] | None = None,
        touched: dict[Connection, None] | None = None,
    ) -> None:
        self.segments: list[Segment] = []
        self.events: list[tuple[Connection, Event]] = []
        self.counters = counters
        self.changed = changed
        self.touched = touched
        self.drops = False
        self.paces = False


class TcbCore:
    """The variables of a TCB (annotations only: ``Connection`` holds the
    slots) and the helpers shared by the sender and the receiver."""

    if not TYPE_CHECKING:  # the slots are Connection's; mypy checks the annotations
        __slots__ = ()

    # -- the connection's own (connection.py) --------------------------
    config: Config
    local: tuple[str, int]
    remote: tuple[str, int]
    state: State
    passive: bool  # MUST-11: reached SYN-RECEIVED from LISTEN
    reset_received: bool
    timers: Timers  # the ten named deadlines (timers.py)
    counters: dict[str, int]
    _host_counters: Counter[str] | None
    _on_change: Callable[[Connection], None] | None
    _touched: dict[Connection, None] | None  # Outbox.touched
    _out: list[Segment]  # segments to send (the Host's queue, shared)
    _box: Outbox  # the Host's emit handle; .drops: the device takes nothing (LX-18)
    _events: list[tuple[Connection, Event]]  # events for the user (shared)
    _last_recv: float  # time of the latest segment received
    _close_pending: bool  # CLOSE in SYN-RECEIVED with data queued (CL-4)
    read_closed: bool  # close(discard=True): we will read no more (LX-5/LX-7)
    _verdict: Verdict  # what receive() is making of the segment in hand

    # -- the send half (sender.py) ---------------------------------------
    iss: int
    snd_una: int
    snd_nxt: int
    snd_max: int  # the highest sequence number sent (SND.NXT goes back on RTO)
    snd_wnd: int
    snd_wl1: int
    snd_wl2: int
    snd_up: int
    max_snd_wnd: int  # RFC 5961 §5.2 MAX.SND.WND
    smss: int  # the segment size we send (RFC 5681 SMSS)
    _send_size: int  # the largest data segment _push builds (SMSS, or more for TSO)
    peer_mss: int
    snd_wscale: int  # applied to windows we receive
    snd_wscale_offered: bool  # the peer's SYN carried Window Scale
    _sndbuf: SendBuffer  # the bytes from _snd_base on (unacked + unsent)
    _snd_base: int
    _fin_seq: int | None  # our FIN's sequence number, once CLOSE was called
    cc: CongestionControl  # made by _negotiated, when SMSS is known
    rtt: RttEstimator
    _rtt_seq: int | None  # Karn: one timed segment at a time
    _rtt_start: float
    _sb: Scoreboard | None  # what the peer SACKed (made on first use)
    _rack: Rack | None  # transmit log, RACK-TLP and PRR (rack.py): Config.rack
    _cwnd_use: tuple[bool, int, int]  # Config.cwnd_validate: (filled, most out, round end)
    _high_rxt: int  # RFC 6675 HighRxt: the end of the last retransmission in recovery
    _retries: int
    _last_send: float
    _persist_backoff: int
    _probes: int  # probes since the last ACK, zero-window or local (Linux icsk_probes_out)
    _probe_start: float | None  # the first local-drop probe (Linux icsk_probes_tstamp)
    _pacer: Pacer | None  # the pacing schedule (transmit.py), made on first use
    _ts_offset: int  # RFC 7323 §5.4 per-connection TSval offset

    # -- the receive half (receiver.py) ----------------------------------
    irs: int
    rcv_nxt: int
    rcv_up: int
    _rcv_adv: int  # right edge of the window last advertised
    rcv_wscale: int  # applied to windows we send
    _offer_wscale: int | None
    _sws_step: int  # receiver SWS avoidance: open the window by this much at least
    ts_ok: bool
    sack_ok: bool
    ts_recent: int
    ts_recent_age: float
    _ts_pending: tuple[int, int] | None  # (SEG.SEQ, TSval) waiting for step five (TS-6)
    _quick: int  # quick ACKs left (Config.quick_acks)
    _pingpong: bool  # interactive: delayed ACKs even in quick-ACK mode (Linux)
    _last_data_rcv: float  # when in-order data last arrived
    last_ack_sent: int
    _rcvbuf: bytearray  # delivered, not yet read
    _ooo: Reassembly  # held beyond a gap
    _ooo_fin: int | None  # a peer FIN held beyond a gap
    peer_fin: bool
    _ack_now: bool  # an ACK is owed now (sent at the end of the input)
    _delack_pending: bool  # an ACK is owed within the delayed-ACK time
    _full_unacked: int  # full-sized segments received since our last ACK
    _last_challenge: float

    if TYPE_CHECKING:
        # What each part calls in another (defined in sender.py, recovery.py,
        # receiver.py, connection.py).
        def _push(self, now: float, override: bool = False, probe: bool = False) -> None: ...
        def _pace(self, now: float, n: int) -> bool: ...
        def _arm_rexmit(self, now: float) -> None: ...
        def _rto_at(self, now: float) -> float: ...
        def _emit_syn(self, now: float, ack: bool) -> None: ...
        def _ack_header(self, now: float) -> tuple[int, int, TcpOptions]: ...
        def _options(self, now: float) -> TcpOptions: ...
        def _window_field(self) -> int: ...
        def _send_ack(self, now: float) -> None: ...
        def _challenge_ack(self, seg: Segment, now: float, verdict: Verdict) -> None: ...
        def _step_ack(self, seg: Segment, now: float, ack_only: bool = False) -> bool: ...
        def _ack_state_step(self, seg: Segment, now: float) -> bool: ...
        def _delete(self, now: float) -> None: ...
        def _time_out(self, now: float, reason: str) -> None: ...
        def _enter_time_wait(self, now: float) -> None: ...
        def _queue_fin(self, state: State, now: float) -> None: ...
        def _arm_fin_wait_2(self, now: float) -> None: ...
        @property
        def rcv_wnd(self) -> int: ...

    # -- shared helpers ------------------------------------------------

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)  # type: ignore[arg-type]

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1
        if self._host_counters is not None:
            self._host_counters[reason] += 1

    def _judge(self, verdict: Verdict) -> None:
        """The segment in hand was discarded (or reset us): ``receive``
        returns ``verdict``, and it is counted under its name."""
        self._verdict = verdict
        self._count(verdict.value)

    def _set_state(self, new: State, now: float) -> None:
        old = self.state
        if old is new:
            return
        self.state = new
        self._events.append((self, StateChanged(old, new, now)))  # type: ignore[arg-type]

    def _ts_now(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & MASK

    def _emit(self, seq: int, flags: int, now: float, payload: bytes = b"") -> None:
        """Queue one segment; every segment with ACK carries RCV.NXT and
        settles any pending or delayed ACK."""
        if flags & ACK:
            ack, window, opts = self._ack_header(now)
        else:
            ack, window, opts = 0, 0 if flags & RST else self._window_field(), self._options(now)
        if self._box.drops:
            # Lost on the way out; the ACK it carried counts as sent all the
            # same (Linux runs tcp_event_ack_sent() before the device answers).
            self._count("local_drop")
            return
        local, remote = self.local, self.remote
        self._out.append(
            new_segment(Segment, (
                local[0], remote[0], local[1], remote[1], seq, ack, flags, window, payload, opts, 0,
            ))
        )  # fmt: skip
        self._last_send = now

    def _emit_rst(self, seq: int, now: float, with_ack: bool = False) -> None:
        """<SEQ=seq><CTL=RST>; ``with_ack``: <SEQ=seq><ACK=RCV.NXT><CTL=RST,ACK>,
        Linux's tcp_send_active_reset() form."""
        if self._box.drops:
            self._count("local_drop")
            return
        local, remote = self.local, self.remote
        self._out.append(
            new_segment(Segment, (
                local[0], remote[0], local[1], remote[1], seq,
                self.rcv_nxt if with_ack else 0, RST | ACK if with_ack else RST, 0, b"",
                self._options(now) if self.ts_ok else NO_OPTIONS, 0,
            ))
        )  # fmt: skip

    # -- the handshake: both halves' options --------------------------------

    def _take_syn(self, syn: Segment, now: float) -> None:
        """Record the peer's SYN: IRS, RCV.NXT and its options (§3.10.7.2,
        §3.7.1 MSS, RFC 7323 §2.2/§3.2, RFC 2018)."""
        self.irs = syn.seq
        self.rcv_nxt = (syn.seq + 1) & MASK
        self.rcv_up = self.rcv_nxt
        opts = syn.options
        cfg = self.config
        mss = opts.mss if opts.mss else cfg.default_peer_mss
        self.peer_mss = mss
        if opts.wscale is not None:
            self.snd_wscale_offered = True
            self.snd_wscale = min(opts.wscale, MAX_WSCALE)  # TS-2
            if opts.wscale > MAX_WSCALE:
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
        self.smss = smss = max(smss, 64)
        cfg = self.config
        size = cfg.send_size
        self._send_size = smss if size is None else max(smss, size // smss * smss)
        self.cc = congestion.make(cfg.congestion_control, self.smss, cfg.initial_window_segments)
        self.cc.recover = self.iss
        self._rack = Rack() if cfg.rack else None
