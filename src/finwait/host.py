"""A TCP host: connections by 4-tuple, listeners, ISNs, ports, and RSTs.

Read RFC 9293 §3.10.7.1-2 (segments for no connection and for a listener),
§3.4.1 and RFC 6528 (initial sequence numbers), RFC 6056 (ephemeral ports),
RFC 4987 (SYN queues) and §3.6.1 / RFC 6191 (reusing a TIME-WAIT 4-tuple).

The Host is sans-IO like the connections it owns: it takes ``now`` on every
call, queues the segments every connection emits in one list (so their
order on the wire is the order they were produced), and keeps one timer heap
so that ``next_deadline()`` costs O(log n) with a hundred thousand
connections.  Malformed input is counted by reason and dropped, never
raised.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .tcp import seqnum
from .tcp.config import Config
from .tcp.connection import Connection, Outbox, scale_for
from .tcp.cookies import MAX_AGE, PERIOD, SynCookies
from .tcp.events import Event
from .tcp.state import State
from .tcp.verdict import Verdict
from .wire.errors import ParseError
from .wire.segment import ACK, FIN, RST, SYN, Segment

EPHEMERAL_LOW = 32768  # Linux ip_local_port_range
EPHEMERAL_HIGH = 60999
SOMAXCONN = 4096  # Linux net.core.somaxconn since 5.4: the backlog nobody chose


# The states as module names: on Python 3.11 ``State.X`` goes through
# EnumType.__getattr__, ten times the cost of a global (see state.py).
_CLOSED, _LISTEN, _SYN_RECEIVED = State.CLOSED, State.LISTEN, State.SYN_RECEIVED
_ESTABLISHED, _TIME_WAIT = State.ESTABLISHED, State.TIME_WAIT

Key = tuple[str, int, str, int]  # local addr, local port, remote addr, remote port


@dataclass(eq=False)
class Listener:
    """A passive OPEN on ``port`` (``addr`` "" = every local address), with a
    bounded SYN queue (connections in SYN-RECEIVED) and a bounded accept
    queue (established, not yet accepted): MUST-41/42, RFC 4987 §3.2."""

    addr: str
    port: int
    backlog: int
    syn_queue: set[Connection] = field(default_factory=set)
    accept_queue: deque[Connection] = field(default_factory=deque)
    closed: bool = False
    cookies_until: float = float("-inf")  # cookie ACKs are checked until then

    def accept(self) -> Connection | None:
        return self.accept_queue.popleft() if self.accept_queue else None


class Host:
    def __init__(
        self,
        addrs: Iterable[str],
        config: Config | None = None,
        *,
        isn_key: bytes = b"finwait-default-isn-key",
        name: str = "",
        max_connections: int = 65536,
        isn_source: Callable[[str, int, str, int, float], int] | None = None,
        syncookies: bool = True,
    ) -> None:
        self.addrs = set(addrs)
        self.config = config or Config()
        self.name = name
        self.max_connections = max_connections
        self._isn_key = isn_key
        # The keyed hash state, made once and copied for each hash (_hash32).
        self._keyed = hashlib.blake2s(key=isn_key[:32], digest_size=4)
        self._isn_source = isn_source  # tests pin ISNs to read like the seed
        self.conns: dict[Key, Connection] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        self._listener_of: dict[Connection, Listener] = {}
        self.counters: Counter[str] = Counter()
        # The Host's output queue, and the emit handle every connection gets.
        self._touched: dict[Connection, None] = {}  # timers to settle (in place)
        self._outbox = Outbox(self.counters, self._touch, self._touched)
        self._out: list[Segment] = self._outbox.segments
        self._events: list[tuple[Connection, Event]] = self._outbox.events
        self._timers: list[tuple[float, int, Connection]] = []
        self._deadline: dict[Connection, float | None] = {}
        self._tick = 0
        self._port_counter = 0
        self._port_offsets: dict[tuple[str, str, int], int] = {}
        # RFC 4987 §3.6, as Linux tcp_syncookies=1: only when a SYN queue is full.
        self._cookies = SynCookies(isn_key) if syncookies else None

    # ------------------------------------------------------------------
    # User side

    def listen(self, port: int, addr: str = "", backlog: int = SOMAXCONN) -> Listener:
        """Passive OPEN (§3.10.1).  ``addr`` "" accepts on every local address.
        ``backlog`` bounds both the SYN queue and the accept queue, as Linux's
        listen() does (beyond it: SYN cookies, RFC 4987 §3.6)."""
        key = (addr, port)
        if key in self.listeners and not self.listeners[key].closed:
            raise OSError(f"port {port} already has a listener")
        lst = Listener(addr, port, max(backlog, 1))
        self.listeners[key] = lst
        return lst

    def unlisten(self, listener: Listener, now: float) -> None:
        """CLOSE on a listener (CL-2), as Linux inet_csk_listen_stop(): the
        listener sends nothing; its half-open connections (SYN-RECEIVED) go
        silently, so a handshake's last ACK finds no connection and is
        answered with a RST (§3.10.7.1) instead of completing into a
        connection nobody can accept; established connections nobody
        accepted are aborted (RST), as they too can never be accepted."""
        listener.closed = True
        self.listeners.pop((listener.addr, listener.port), None)
        for conn in list(listener.syn_queue):
            if conn.state is _SYN_RECEIVED:
                mark = len(self._out)
                conn.abort(now)
                del self._out[mark:]  # dropped silently: no RST for a half-open one
            self._touch(conn)
        while listener.accept_queue:
            conn = listener.accept_queue.popleft()
            if conn.state is not _CLOSED:
                conn.abort(now)
            self._touch(conn)
        self._settle()

    def connect(
        self,
        dst: str,
        dport: int,
        now: float,
        *,
        src: str | None = None,
        sport: int | None = None,
    ) -> Connection:
        """Active OPEN (§3.10.1): picks a local address and an ephemeral port
        (RFC 6056), refuses a 4-tuple that is in use (TW-5)."""
        if src is None:
            src = self._source_for(dst)
        if sport is None:
            sport = self._ephemeral_port(src, dst, dport)
        key = (src, sport, dst, dport)
        if key in self.conns:
            raise OSError(f"connection {src}:{sport} -> {dst}:{dport} already exists")
        if len(self.conns) >= self.max_connections:
            self._drop(Verdict.CONNECTION_TABLE_FULL)
            raise OSError("connection table full")
        iss, ts_offset = self._initial_numbers(src, sport, dst, dport, now)
        conn = Connection.open_active(
            (src, sport), (dst, dport), iss, now, self.config,
            ts_offset=ts_offset, outbox=self._outbox,
        )  # fmt: skip
        self.conns[key] = conn
        self._touch(conn)
        return conn

    def _source_for(self, dst: str) -> str:
        v6 = ":" in dst
        for a in sorted(self.addrs):
            if (":" in a) == v6:
                return a
        raise OSError(f"no local address of {dst}'s family")

    # ------------------------------------------------------------------
    # RFC 6528 ISNs and RFC 6056 ports

    def _hash32(self, tag: bytes, text: str) -> int:
        """F(tag, text): the keyed hash's first 32 bits."""
        h = self._keyed.copy()
        h.update(tag)
        h.update(text.encode())
        return int.from_bytes(h.digest(), "big")

    def _isn(self, src: str, sport: int, dst: str, dport: int, now: float) -> int:
        return self._initial_numbers(src, sport, dst, dport, now)[0]

    def _initial_numbers(
        self, src: str, sport: int, dst: str, dport: int, now: float
    ) -> tuple[int, int]:
        """(ISN, timestamp offset).  ISN = M + F(4-tuple, secret): M a 4 µs
        clock, F a keyed hash (RFC 6528 §3).  The per-connection timestamp
        offset (RFC 7323 §5.4) is F's bits, rotated, so one hash serves both."""
        f = self._hash32(b"isn", f"{src}|{sport}|{dst}|{dport}")
        ts_offset = f >> 7 | (f & 0x7F) << 25
        if self._isn_source is not None:
            return self._isn_source(src, sport, dst, dport, now) & seqnum.MASK, ts_offset
        return (int(now * 250_000) + f) & seqnum.MASK, ts_offset

    def _ephemeral_port(self, src: str, dst: str, dport: int) -> int:
        """RFC 6056 §3.3.3 (double-hash): a per-destination offset plus a counter."""
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        dest = (src, dst, dport)
        offset = self._port_offsets.get(dest)
        if offset is None:
            if len(self._port_offsets) >= 4096:
                self._port_offsets.clear()  # bounded: it is only a cache
            offset = self._port_offsets[dest] = self._hash32(b"port", f"{src}|{dst}|{dport}")
        for _ in range(span):
            self._port_counter += 1
            port = EPHEMERAL_LOW + (offset + self._port_counter) % span
            if (src, port, dst, dport) not in self.conns and ("", port) not in self.listeners:
                return port
        raise OSError("no free ephemeral port")

    # ------------------------------------------------------------------
    # Input

    def receive_packet(self, data: bytes, now: float) -> Verdict:
        """Raw IPv4/IPv6 bytes: parse, count and drop what is malformed."""
        from .wire.ip import decode_packet  # the codec is optional for pure-Segment use

        try:
            seg = decode_packet(data)
        except ParseError as exc:
            self.counters["parse_error"] += 1
            self.counters["parse_error:" + exc.reason] += 1
            return Verdict.PARSE_ERROR
        return self.receive(seg, now)

    def _drop(self, verdict: Verdict) -> Verdict:
        self.counters[verdict.value] += 1
        return verdict

    def receive(self, seg: Segment, now: float) -> Verdict:
        """A segment arrives (§3.10.7); returns what became of it."""
        conn = self.conns.get((seg.dst, seg.dport, seg.src, seg.sport))
        if conn is not None:
            st = conn.state
            if st is _ESTABLISHED:  # in no listener's queue, and never back to LISTEN
                verdict = conn.receive(seg, now)
                if conn.state is _CLOSED:
                    self._update_tables(conn)
                return verdict
            if st is _TIME_WAIT and self._reopen_time_wait(conn, seg, now):
                return Verdict.ACCEPTED
            lst = self._listener_of.get(conn)
            if (
                lst is not None
                and st is _SYN_RECEIVED
                and seg.flags & ACK
                and len(lst.accept_queue) >= lst.backlog
            ):
                # Linux tcp_check_req(): with the accept queue full, the final
                # ACK is dropped and the SYN,ACK retransmitted later.
                return self._drop(Verdict.ACCEPT_QUEUE_FULL)
            verdict = conn.receive(seg, now)
            st = conn.state  # what _update_tables acts on (see _touch)
            if st is _CLOSED or st is _LISTEN or lst is not None:
                self._update_tables(conn)
            return verdict
        if seg.dst not in self.addrs:
            return self._drop(Verdict.NOT_FOR_US)
        listener = self.listeners.get((seg.dst, seg.dport)) or self.listeners.get(("", seg.dport))
        if listener is not None:
            return self._arrive_listen(listener, seg, now)
        return self._arrive_closed(seg, now)

    def _arrive_closed(self, seg: Segment, now: float) -> Verdict:
        """§3.10.7.1: no TCB.  Never answer a RST (SA-CL-2)."""
        flags = seg.flags
        if flags & RST:
            return self._drop(Verdict.RST_FOR_NO_CONNECTION)
        if flags & ACK:
            self._send_rst(seg, seg.ack, 0, RST)  # SA-CL-3
        else:
            self._send_rst(seg, 0, seqnum.add(seg.seq, seg.seg_len), RST | ACK)  # SA-CL-4
        return self._drop(Verdict.NO_MATCHING_CONNECTION)

    @property
    def device_drops(self) -> bool:
        """The device takes no segment (a queueing discipline that holds
        nothing, ``tc qdisc add dev D root pfifo limit 0``): every
        connection's transmissions fail as Linux's do (LX-18)."""
        return self._outbox.drops

    @device_drops.setter
    def device_drops(self, value: bool) -> None:
        self._outbox.drops = value

    @property
    def device_paces(self) -> bool:
        """The device is Linux's fq queueing discipline (``tc qdisc add dev D
        root fq``): every connection's data segments leave at its pacing
        rate (CC-16), as with ``Config.pacing``."""
        return self._outbox.paces

    @device_paces.setter
    def device_paces(self, value: bool) -> None:
        self._outbox.paces = value

    def _send_rst(self, seg: Segment, seq: int, ack: int, flags: int) -> None:
        if self._outbox.drops:
            self.counters["local_drop"] += 1
            return
        self._out.append(Segment(seg.dst, seg.src, seg.dport, seg.sport, seq, ack, flags, 0))

    def _arrive_listen(self, lst: Listener, seg: Segment, now: float) -> Verdict:
        """§3.10.7.2."""
        flags = seg.flags
        if flags & RST:
            return self._drop(Verdict.RST_TO_LISTENER)  # SA-LI-1
        if flags & ACK:
            if not flags & (SYN | RST):
                verdict = self._cookie_ack(lst, seg, now)
                if verdict is not None:
                    return verdict
            self._send_rst(seg, seg.ack, 0, RST)
            return self._drop(Verdict.ACK_TO_LISTENER)  # SA-LI-2
        if not flags & SYN:
            # SA-LI-4: a bare FIN to a listener is dropped silently
            return self._drop(
                Verdict.FIN_WITHOUT_ACK if flags & FIN else Verdict.NO_SYN_TO_LISTENER
            )
        return self._accept_syn(lst, seg, now, None)

    def _accept_syn(self, lst: Listener, seg: Segment, now: float, iss: int | None) -> Verdict:
        if len(lst.syn_queue) >= lst.backlog:
            self.counters["syn_queue_full"] += 1
            if self._cookies is not None and iss is None:
                self._cookie_syn_ack(lst, seg, now)
            return Verdict.SYN_QUEUE_FULL
        if len(self.conns) >= self.max_connections:
            return self._drop(Verdict.CONNECTION_TABLE_FULL)
        src, sport, dst, dport = seg.dst, seg.dport, seg.src, seg.sport
        isn, ts_offset = self._initial_numbers(src, sport, dst, dport, now)
        if iss is None:
            iss = isn
        conn = Connection.open_passive(
            seg, iss, now, self.config, ts_offset=ts_offset, outbox=self._outbox
        )
        self.counters["passive_open"] += 1
        self.conns[(src, sport, dst, dport)] = conn
        lst.syn_queue.add(conn)
        self._listener_of[conn] = lst
        self._touch(conn)
        return Verdict.ACCEPTED

    def _cookie_syn_ack(self, lst: Listener, seg: Segment, now: float) -> None:
        """Answer a SYN the full queue cannot hold with a cookie (RFC 4987 §3.6)."""
        assert self._cookies is not None
        if self._outbox.drops:
            self.counters["local_drop"] += 1
            return
        cfg = self.config
        src, sport, dst, dport = seg.dst, seg.dport, seg.src, seg.sport
        _, ts_offset = self._initial_numbers(src, sport, dst, dport, now)
        ts_now = (int(now * 1000) + ts_offset) & seqnum.MASK if cfg.timestamps else None
        self._out.append(
            self._cookies.syn_ack(
                seg,
                now,
                mss=cfg.mss,
                window=cfg.recv_buffer,
                wscale=scale_for(cfg.recv_buffer) if cfg.window_scaling else None,
                ts_now=ts_now,
            )
        )
        lst.cookies_until = now + MAX_AGE * PERIOD
        self.counters["syncookies_sent"] += 1

    def _cookie_ack(self, lst: Listener, seg: Segment, now: float) -> Verdict | None:
        """An ACK to a listener that recently sent cookies: when it returns a
        valid one, the connection is made now, as Linux cookie_v4_check().
        None: not a cookie (the ACK is an ordinary one to a listener)."""
        if self._cookies is None or now > lst.cookies_until:
            return None
        syn = self._cookies.syn_from_ack(seg, now)
        if syn is None:
            self.counters["syncookies_failed"] += 1
            return None
        if len(lst.accept_queue) >= lst.backlog:
            # dropped; the peer retransmits (Linux tcp_check_req)
            return self._drop(Verdict.ACCEPT_QUEUE_FULL)
        if len(self.conns) >= self.max_connections:
            return self._drop(Verdict.CONNECTION_TABLE_FULL)
        src, sport, dst, dport = seg.dst, seg.dport, seg.src, seg.sport
        _, ts_offset = self._initial_numbers(src, sport, dst, dport, now)
        conn = Connection.open_passive(
            syn, seqnum.add(seg.ack, -1), now, self.config,
            ts_offset=ts_offset, outbox=self._outbox, cookie=True,
        )  # fmt: skip
        self.counters["syncookies_ok"] += 1
        self.counters["passive_open"] += 1
        self.conns[(src, sport, dst, dport)] = conn
        lst.syn_queue.add(conn)
        self._listener_of[conn] = lst
        verdict = conn.receive(seg, now)
        self._touch(conn)
        return verdict

    def _reopen_time_wait(self, conn: Connection, seg: Segment, now: float) -> bool:
        """MAY-2 / SA-3.3, as Linux tcp_timewait_state_process(): a new SYN
        above the old RCV.NXT (or with a newer timestamp) ends TIME-WAIT and
        opens a new incarnation with an ISS beyond the old sequence space."""
        if seg.flags & (SYN | ACK | RST) != SYN:
            return False
        lst = self.listeners.get((seg.dst, seg.dport)) or self.listeners.get(("", seg.dport))
        if lst is None:
            return False
        ts = seg.options.timestamps
        newer_ts = conn.ts_ok and ts is not None and seqnum.lt(conn.ts_recent, ts[0])
        if not (seqnum.lt(conn.rcv_nxt, seg.seq) or newer_ts):
            return False
        self.counters["time_wait_reopened"] += 1
        iss = seqnum.add(conn.snd_max, 65537)  # Linux: old snd_nxt + 65535 + 2
        self._remove(conn)
        conn.timers.clear()
        self._accept_syn(lst, seg, now, iss)
        return True

    # ------------------------------------------------------------------
    # Timers and output

    def _touch(self, conn: Connection) -> None:
        """A connection's ``changed`` handle, called at the end of every user
        call and timer, and by ``receive`` here after the connection's (which
        only enters it in ``_touched``): the tables (SYN and accept queues,
        the connection table) follow its state at once, so ``accept()``
        returns a connection right after the ``receive()`` that established
        it; the timer heap is brought up to date lazily (``_settle``)."""
        self._touched[conn] = None
        st = conn.state  # what _update_tables acts on: a listener's, or the end of a TCB
        if st is _CLOSED or st is _LISTEN or (self._listener_of and conn in self._listener_of):
            self._update_tables(conn)

    def _update_tables(self, conn: Connection) -> None:
        st = conn.state
        lst = self._listener_of.get(conn)
        if lst is not None and st is not _SYN_RECEIVED:
            lst.syn_queue.discard(conn)
            del self._listener_of[conn]
            if st.synchronized and not lst.closed:
                lst.accept_queue.append(conn)
        if st is _CLOSED or st is _LISTEN:
            self._remove(conn)

    def _settle(self) -> None:
        """Bring the timer heap up to date with every connection that changed
        since the last call."""
        touched = self._touched
        if not touched:
            return
        for conn in touched:
            st = conn.state
            if st is _CLOSED or st is _LISTEN:
                continue  # removed from the tables by _touch already
            d = conn.timers.next()
            if d != self._deadline.get(conn):
                self._deadline[conn] = d
                if d is not None:
                    self._tick += 1
                    heapq.heappush(self._timers, (d, self._tick, conn))
        touched.clear()  # in place: every connection's Outbox holds it

    def _remove(self, conn: Connection) -> None:
        key = (conn.local[0], conn.local[1], conn.remote[0], conn.remote[1])
        if self.conns.get(key) is conn:
            del self.conns[key]
        self._deadline.pop(conn, None)
        lst = self._listener_of.pop(conn, None)
        if lst is not None:
            lst.syn_queue.discard(conn)

    def next_deadline(self) -> float | None:
        self._settle()
        timers = self._timers
        while timers:
            d, _, conn = timers[0]
            if self._deadline.get(conn) == d:
                return d
            heapq.heappop(timers)  # stale entry
        return None

    def on_timer(self, now: float) -> None:
        """Fire every connection timer due at or before ``now``."""
        self._settle()
        timers = self._timers
        due: list[Connection] = []
        while timers and timers[0][0] <= now:
            d, _, conn = heapq.heappop(timers)
            if self._deadline.get(conn) == d:
                self._deadline[conn] = None
                due.append(conn)
        for conn in due:
            conn.on_timer(now)  # which calls the change handle, _touch
        self._settle()

    def take_segments(self) -> list[Segment]:
        # The timer heap is settled when it is read (next_deadline, on_timer).
        out = self._out
        if not out:
            return []  # a drain loop asks once more than there is
        segs = out[:]
        out.clear()  # in place: every connection's Outbox holds it
        return segs

    def take_events(self) -> list[tuple[Connection, Event]]:
        self._settle()
        evs = self._events[:]
        self._events.clear()
        return evs

    def stats(self) -> dict[str, object]:
        self._settle()
        states = Counter(str(c.state) for c in self.conns.values())
        return {
            "connections": len(self.conns),
            "states": dict(states),
            "listeners": len(self.listeners),
            "counters": dict(self.counters),
        }
