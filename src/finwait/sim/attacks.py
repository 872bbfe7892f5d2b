"""Simulated attacks on finwait Hosts: SYN floods, out-of-order floods and
blind (off-path) RST, SYN and data injection.

Read RFC 4987 (SYN flooding and its defences, §3.6 SYN cookies), RFC 5961
(blind in-window attacks: §3 RST, §4 SYN, §5 data, and the success
probabilities it derives) and RFC 9293 §3.10.7.4 (segment acceptability).
The attacks run on a :class:`AttackLab`: sans-IO Hosts joined by a fixed-delay wire
on a virtual clock, smaller than :class:`~finwait.sim.network.Network` on
purpose: it records no trace (a 100,000-SYN flood would otherwise measure
the trace, not the Host) and drops what is addressed to nobody, as the
spoofed sources of a flood never answer.  Everything random comes from
:class:`~finwait.sim.rng.Rng`, so a run is repeatable; memory is measured by
the caller (``tracemalloc`` in the tests and benchmarks).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..drive import Events, drain
from ..host import Host
from ..tcp import seqnum
from ..tcp.config import Config
from ..tcp.connection import Connection
from ..tcp.events import Closed, Connected, DataReceived, EndOfStream, Event, Reset, TimedOut
from ..wire.segment import ACK, RST, SYN, Segment
from .rng import Rng

SERVER = "198.18.0.2"
CLIENT = "198.18.0.1"
PORT = 80
# 198.18.0.0/15 (RFC 2544's benchmarking block): the only addresses used.
_NET15 = (198 << 24) | (18 << 16)

App = Callable[[Connection, Event, float], None]


def spoofed_source(rng: Rng) -> str:
    """A random address in 198.18.0.0/15."""
    a = _NET15 | rng.randrange(1 << 17)
    return f"{a >> 24}.{a >> 16 & 0xFF}.{a >> 8 & 0xFF}.{a & 0xFF}"


class AttackLab:
    """Hosts by address, a wire with one fixed one-way delay, a virtual clock.
    After every input to a host its segments go on the wire and its events to
    its application, the one drain loop (``finwait.drive``)."""

    def __init__(self, delay: float = 0.005) -> None:
        self.delay = delay
        self.now = 0.0
        self.hosts: dict[str, Host] = {}
        self.apps: dict[int, App] = {}
        self.unrouted = 0  # segments to addresses nobody owns (spoofed sources)
        self.delivered = 0
        self._wire: list[tuple[float, int, Segment]] = []
        self._tick = 0

    def add(self, host: Host, app: App | None = None) -> Host:
        for a in host.addrs:
            self.hosts[a] = host
        if app is not None:
            self.apps[id(host)] = app
        return host

    def drive(self, host: Host) -> None:
        """Drain ``host`` (finwait.drive): its segments onto the wire, its
        events to its application."""
        app = self.apps.get(id(host))

        def dispatch(evs: Events) -> None:
            if app is not None:
                for conn, ev in evs:
                    app(conn, ev, self.now)

        drain(host, self._put_on_wire, dispatch)

    def _put_on_wire(self, segs: list[Segment]) -> None:
        for seg in segs:
            if seg.dst in self.hosts:
                self._tick += 1
                heapq.heappush(self._wire, (self.now + self.delay, self._tick, seg))
            else:
                self.unrouted += 1

    def inject(self, seg: Segment) -> None:
        """An attacker next to the receiver: ``seg`` arrives now."""
        host = self.hosts[seg.dst]
        host.receive(seg, self.now)
        self.drive(host)

    def run_until(self, end: float) -> None:
        """Deliver segments and fire timers in time order up to ``end``."""
        hosts = list({id(h): h for h in self.hosts.values()}.values())
        while True:
            t = self._wire[0][0] if self._wire else None
            timer_host: Host | None = None
            for h in hosts:
                d = h.next_deadline()
                if d is not None and (t is None or d < t):
                    t, timer_host = d, h
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            if timer_host is not None:
                timer_host.on_timer(self.now)
                self.drive(timer_host)
                continue
            _, _, seg = heapq.heappop(self._wire)
            host = self.hosts[seg.dst]
            self.delivered += 1
            host.receive(seg, self.now)
            self.drive(host)
        self.now = max(self.now, end)


# -- SYN flood ------------------------------------------------------------------


@dataclass(slots=True)
class FloodReport:
    spoofed: int
    legit: int
    completed: int  # legitimate connections whose bytes arrived intact and closed
    peak_connections: int
    peak_syn_queue: int
    server_counters: dict[str, int]
    unanswered: int  # SYN,ACKs sent to spoofed sources (counted, never delivered)


def syn_flood(
    spoofed: int = 100_000,
    rate: float = 20_000.0,
    legit: int = 50,
    *,
    syncookies: bool = True,
    backlog: int = 128,
    seed: int = 1,
    payload: int = 2000,
) -> FloodReport:
    """``spoofed`` SYNs from random 198.18.0.0/15 sources at ``rate`` per
    second while ``legit`` clients (198.19.1.x) each open a connection during
    the flood, send ``payload`` bytes and close.  The server accepts, reads
    and closes on EOF."""
    rng = Rng(seed)
    cfg = Config(msl=1.0)  # short TIME-WAIT: the run ends with empty tables
    lab = AttackLab()
    duration = spoofed / rate
    server = Host([SERVER], cfg, isn_key=rng.derive("server").randbytes(16), syncookies=syncookies)
    listener = server.listen(PORT, backlog=backlog)
    received: dict[tuple[str, int], bytearray] = {}
    done: set[tuple[str, int]] = set()

    def server_app(conn: Connection, ev: Event, now: float) -> None:
        while listener.accept() is not None:
            pass  # the application accepts promptly
        if isinstance(ev, DataReceived):
            received.setdefault(conn.remote, bytearray()).extend(conn.recv())
        elif isinstance(ev, EndOfStream):
            done.add(conn.remote)
            conn.close(now)

    lab.add(server, server_app)
    data = rng.derive("payload").randbytes(payload)
    legit_addrs = [f"198.19.1.{i + 1}" for i in range(legit)]
    starts = sorted((rng.uniform(0.0, duration), a) for a in legit_addrs)
    clients: dict[str, Host] = {}
    for a in legit_addrs:

        def client_app(conn: Connection, ev: Event, now: float) -> None:
            if isinstance(ev, Connected):
                conn.send(data, now)
                conn.close(now)

        clients[a] = lab.add(
            Host([a], cfg, isn_key=rng.derive(a).randbytes(16), name=a), client_app
        )
    attacker = rng.derive("attacker")
    legit_set = set(legit_addrs) | {SERVER}
    peak_conns = peak_syn = 0
    step = 0.001
    per_step = rate * step
    sent = 0
    owed = 0.0
    t = 0.0
    si = 0
    while sent < spoofed:
        t += step
        while si < len(starts) and starts[si][0] <= t:
            lab.run_until(starts[si][0])
            h = clients[starts[si][1]]
            h.connect(SERVER, PORT, lab.now)
            lab.drive(h)
            si += 1
        lab.run_until(t)
        owed += per_step
        while owed >= 1.0 and sent < spoofed:
            owed -= 1.0
            src = spoofed_source(attacker)
            while src in legit_set:
                src = spoofed_source(attacker)
            isn = attacker.next_u64() & seqnum.MASK
            sport = 1024 + attacker.randrange(64512)
            lab.inject(Segment(src, SERVER, sport, PORT, isn, 0, SYN, 65535))
            sent += 1
        peak_conns = max(peak_conns, len(server.conns))
        peak_syn = max(peak_syn, len(listener.syn_queue))
    for _, a in starts[si:]:
        clients[a].connect(SERVER, PORT, lab.now)
        lab.drive(clients[a])
    lab.run_until(lab.now + 300.0)  # SYN,ACK retries, TIME-WAIT: everything settles
    completed = sum(
        1 for a in legit_addrs for k in done if k[0] == a and bytes(received.get(k, b"")) == data
    )
    return FloodReport(
        spoofed=sent,
        legit=legit,
        completed=completed,
        peak_connections=peak_conns,
        peak_syn_queue=peak_syn,
        server_counters=dict(server.counters),
        unanswered=lab.unrouted,
    )


# -- a connection carrying data, for the in-window attacks ------------------------


@dataclass(slots=True)
class _AttackStream:
    """A sends a deterministic byte stream to B in ``chunk``-byte writes every
    ``interval`` seconds; B reads and checks every byte as it arrives."""

    lab: AttackLab
    a: Host
    b: Host
    source: Rng
    chunk: int = 1000
    interval: float = 0.01
    conn_a: Connection | None = None
    conn_b: Connection | None = None
    sent: bytearray = field(default_factory=bytearray)
    checked: int = 0
    total_checked: int = 0
    corrupted: int = 0  # connections whose stream at B differed from A's
    resets: int = 0
    connections: int = 0
    port: int = 40000
    listener: Any = None
    script: bytes | None = None  # when set, A's stream is these bytes, in order

    def open(self) -> None:
        self.port += 1
        self.connections += 1
        self.sent = bytearray()
        self.checked = 0
        self.conn_b = None
        self.conn_a = self.a.connect(SERVER, PORT, self.lab.now, sport=self.port)
        self.lab.drive(self.a)
        self.lab.run_until(self.lab.now + 0.1)

    def app_a(self, conn: Connection, ev: Event, now: float) -> None:
        if conn is self.conn_a and isinstance(ev, Reset | TimedOut):
            self.resets += 1
            self.conn_a = None

    def app_b(self, conn: Connection, ev: Event, now: float) -> None:
        if isinstance(ev, Connected):
            self.conn_b = self.listener.accept() or conn
        if conn is not self.conn_b:
            return
        if isinstance(ev, DataReceived):
            got = conn.recv(-1, now)
            want = bytes(self.sent[self.checked : self.checked + len(got)])
            self.checked += len(got)
            self.total_checked += len(got)
            if got != want:
                self.corrupted += 1
                conn.abort(now)  # an application would notice; start over
        elif isinstance(ev, Reset | TimedOut | Closed):
            self.conn_b = None

    def write(self) -> None:
        c = self.conn_a
        if c is None or c.state.name != "ESTABLISHED":
            return
        if self.script is not None:
            data = self.script[len(self.sent) : len(self.sent) + self.chunk]
        else:
            data = self.source.randbytes(self.chunk)
        n = c.send(data, self.lab.now)
        self.sent += data[:n]
        self.lab.drive(self.a)


def _stream(seed: int, config: Config) -> _AttackStream:
    rng = Rng(seed)
    lab = AttackLab()
    a = Host([CLIENT], config, isn_key=rng.derive("A").randbytes(16), name="A")
    b = Host([SERVER], config, isn_key=rng.derive("B").randbytes(16), name="B")
    s = _AttackStream(lab, a, b, rng.derive("stream"))
    s.listener = b.listen(PORT)
    lab.add(a, s.app_a)
    lab.add(b, s.app_b)
    s.open()
    return s


# -- out-of-order flood -----------------------------------------------------------


@dataclass(slots=True)
class OooReport:
    segments: int
    peak_held_segments: int
    peak_held_bytes: int
    receive_window: int
    dropped_queue_full: int
    stream_intact: bool


def ooo_flood(segments: int = 100_000, *, seed: int = 1, config: Config | None = None) -> OooReport:
    """Tiny (one-byte) segments at random offsets far ahead of RCV.NXT but
    inside B's window, with a valid ACK, while A's stream continues: the
    peer itself (or an on-path sender) trying to pin B's memory.  The bytes
    are the stream's own (the flood is about memory, not content), so B's
    stream must still arrive byte-exact.  The reassembly queue must stay
    bounded by its segment count and by the receive window."""
    cfg = config or Config()
    s = _stream(seed, cfg)
    s.script = Rng(seed).derive("ooo stream").randbytes(segments * 20 + 100_000)
    rng = Rng(seed).derive("ooo")
    peak_n = peak_bytes = 0
    for i in range(segments):
        if i % 100 == 0:
            s.write()
            s.lab.run_until(s.lab.now + s.interval)
        cb = s.conn_b
        if cb is None:
            s.open()
            continue
        off = 1 + cfg.mss * 4 + rng.randrange(max(cb.rcv_wnd - cfg.mss * 4 - 1, 1))
        pos = s.checked + off  # B reads at once: RCV.NXT is stream position s.checked
        if pos >= len(s.script):
            continue
        seg = Segment(CLIENT, SERVER, cb.remote[1], PORT, seqnum.add(cb.rcv_nxt, off),
                      cb.snd_nxt, ACK, 65535, s.script[pos : pos + 1])  # fmt: skip
        s.lab.inject(seg)
        ooo = cb._ooo
        peak_n = max(peak_n, len(ooo))
        if i % 97 == 0:
            peak_bytes = max(peak_bytes, ooo.held_bytes)
    s.lab.run_until(s.lab.now + 5.0)
    return OooReport(
        segments=segments,
        peak_held_segments=peak_n,
        peak_held_bytes=peak_bytes,
        receive_window=cfg.recv_buffer,
        dropped_queue_full=s.b.counters["ooo_queue_full"],
        stream_intact=s.corrupted == 0 and s.resets == 0,
    )


# -- blind injection ---------------------------------------------------------------

KINDS = ("rst", "syn", "data")


@dataclass(slots=True)
class BlindReport:
    kind: str
    tries: int
    in_window: int  # tries whose sequence number fell in B's receive window
    exact: int  # tries whose sequence number was exactly RCV.NXT (RFC 5961 §3: a RST resets)
    successes: int  # connections reset, or bytes of the attacker in B's stream
    connections: int  # connections used (one more after each success)
    receive_window: int
    challenge_acks: int
    ratelimited: int
    stream_bytes: int  # bytes A delivered to B, checked byte for byte
    sender_fast_retransmits: int  # A's, set off by B's duplicate ACKs to the attack
    counters: dict[str, int]

    @property
    def rfc5961_bound(self) -> float:
        """RFC 5961's per-try success probability for this attack."""
        if self.kind == "syn":
            return 0.0  # §4: every SYN gets a challenge ACK
        if self.kind == "rst":
            # §3: only SEG.SEQ == RCV.NXT resets.
            return 1 / 2**32 if self.in_window < self.tries else 1 / self.receive_window
        # §5: the ACK must also fall in [SND.UNA - MAX.SND.WND, SND.NXT].
        ack_space = 2 * self.receive_window / 2**32
        seq_space = self.in_window / self.tries if self.tries else 0.0
        return seq_space * ack_space


def blind_attack(
    kind: str,
    tries: int = 20_000,
    *,
    in_window: bool = False,
    rate: float = 1000.0,
    seed: int = 1,
    config: Config | None = None,
) -> BlindReport:
    """An off-path attacker who knows the 4-tuple injects ``tries`` RSTs,
    SYNs or 100-byte data segments (with an ACK flag and a random ACK number)
    at B, ``rate`` per second, with random sequence numbers (``in_window``:
    drawn inside B's receive window, to measure RFC 5961's in-window bound),
    while A streams data to B.  A success resets the connection or puts
    attacker bytes into B's stream; the run then opens a new one."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    cfg = config or Config()
    s = _stream(seed, cfg)
    rng = Rng(seed).derive("blind " + kind)
    hits_window = exact = 0
    per_write = max(int(rate * s.interval), 1)
    flags = {"rst": RST, "syn": SYN, "data": ACK}[kind]
    evil = bytes(range(100)) if kind == "data" else b""
    for i in range(tries):
        if i % per_write == 0:
            s.write()
            s.lab.run_until(s.lab.now + s.interval)
        cb = s.conn_b
        if cb is None or s.conn_a is None:
            s.open()
            cb = s.conn_b
            if cb is None:
                continue
        wnd = max(cb.rcv_wnd, 1)
        if in_window:
            seq = seqnum.add(cb.rcv_nxt, rng.randrange(wnd))
        else:
            seq = rng.next_u64() & seqnum.MASK
        if seqnum.in_window(seq, cb.rcv_nxt, wnd):
            hits_window += 1
            exact += seq == cb.rcv_nxt
        ack = rng.next_u64() & seqnum.MASK if flags & ACK else 0
        s.lab.inject(Segment(CLIENT, SERVER, s.port, PORT, seq, ack, flags, 65535, evil))
    s.write()
    s.lab.run_until(s.lab.now + 5.0)
    counters = dict(s.b.counters)
    return BlindReport(
        kind=kind,
        tries=tries,
        in_window=hits_window,
        exact=exact,
        successes=s.connections - 1,
        connections=s.connections,
        receive_window=cfg.recv_buffer,
        challenge_acks=sum(v for k, v in counters.items() if k.startswith("challenge_ack"))
        + counters.get("unacceptable_segment", 0)
        + counters.get("ack_too_old", 0)
        + counters.get("ack_of_unsent_data", 0),
        ratelimited=counters.get("ack_ratelimited", 0),
        stream_bytes=s.total_checked,
        sender_fast_retransmits=s.a.counters["fast_retransmit"],
        counters=counters,
    )
