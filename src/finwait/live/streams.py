"""The asyncio streams API over the live engine: :class:`Stack`,
:func:`open_connection`, :func:`start_server`, :class:`StreamReader`,
:class:`StreamWriter`.

Owns the mapping from TCP's user interface (RFC 9293 §3.9.1: OPEN, SEND,
RECEIVE, CLOSE, ABORT, STATUS) to the shape of ``asyncio.open_connection``:
``write`` + ``drain`` is SEND with back-pressure from the engine's bounded
send buffer, ``read`` is RECEIVE (it opens the receive window, so a reader
that stops reading stops the peer), ``write_eof`` is CLOSE — a half-close, the
FIN goes after the queued data and reading goes on (the seed's point) —,
``abort`` is ABORT (RST), ``get_extra_info("tcp_state")`` is STATUS.  Errors
are the standard ones: ``ConnectionRefusedError`` (RST in answer to our SYN),
``ConnectionResetError``, ``TimeoutError`` (retransmissions gave up),
``asyncio.IncompleteReadError``.

A :class:`Stack` owns one Host, one TUN fd and its :class:`Driver`, in the
current process and event loop.  The process does **not** move into the lab's
namespace: only the thread that opens the TUN enters it, for the ``open()``
(see finwait.live.lab).  Every connection's packets and state changes are
recorded in a :class:`~finwait.trace.Trace` (``writer.trace``) unless
``record=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..host import SOMAXCONN, Host
from ..tcp.config import Config
from ..tcp.connection import Connection, TcpError
from ..tcp.events import (
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
from ..tcp.state import State
from ..tcp.verdict import Verdict
from ..trace import DROPPED, SegmentEvent, Trace
from ..wire.segment import SYN, Segment
from .driver import GSO_MAX_PAYLOAD, IN, Driver, DropHook, PcapFile
from .lab import LabConfig, open_tun, tun_running

LOCAL = "finwait"
REMOTE = "kernel"
# Closed by the application, not yet released by TCP: what a kernel keeps
# after the process exits, and Stack.linger() holds.
LINGER_STATES = frozenset(
    {State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING, State.LAST_ACK, State.TIME_WAIT}
)
_MAX_TRACES = 4096  # bound on traces of 4-tuples no connection claimed
# The secret of the ISNs, timestamp offsets and ports (RFC 6528, RFC 7323
# §5.4, RFC 6056): one per process, as Linux keeps one per boot, not one per
# Stack.  A new Stack picks the same ports again, and the kernel still holds
# the earlier connections of those 4-tuples in TIME-WAIT: it takes a new SYN
# only if its sequence number and timestamp lie beyond the old connection's
# (RFC 6191, tcp_timewait_state_process()).  With a key per Stack, half of
# them did not: the kernel answered the old ACK, we reset it and sent the
# SYN again a second later.
_ISN_KEY = os.urandom(16)

Addr = tuple[str, int]
Handler = Callable[["StreamReader", "StreamWriter"], Awaitable[None]]


class Stack:
    """One live TCP host: Host + TUN + Driver, in this event loop."""

    def __init__(self, host: Host, driver: Driver, *, record: bool = True) -> None:
        self.host = host
        self.driver = driver
        self.record = record
        self._streams: dict[int, _Stream] = {}
        # Events of connections the user has not accepted yet, replayed on accept.
        self._stash: dict[int, tuple[Connection, list[Event]]] = {}
        self._servers: list[Server] = []
        self._traces: OrderedDict[tuple[str, int, str, int], Trace] = OrderedDict()
        self._last_in: tuple[Trace, int, SegmentEvent] | None = None
        self.t0 = driver.now()  # trace times are seconds since the stack started
        # Resolved with the reason when the TUN goes away (``finwait lab
        # down``, the device deleted): every connection is then dead.
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        driver.on_close.append(self._on_driver_closed)
        driver.on_event = self._on_event
        driver.after_pump.append(self._accept_all)
        if record:
            driver.observers.append(self._observe)
            driver.on_state = self._record_state
            driver.on_verdict = self._mark_dropped

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        netns: str = "finwait",
        tun: str = "fw0",
        addr: str | list[str] | None = None,
        *,
        config: Config | None = None,
        pcap: str | None = None,
        drop: DropHook | None = None,
        record: bool = True,
        batch: int = 64,
        name: str = LOCAL,
        offload: bool = True,
        linger: bool = True,
    ) -> AsyncIterator[Stack]:
        """``async with Stack.open() as stack:`` — the engine on the lab's TUN.

        ``addr`` defaults to both of finwait's lab addresses.  ``drop`` is the
        driver's loss hook (tests).  ``offload``: TUN segmentation offload
        (:func:`finwait.live.lab.open_tun`), up to 64 KB per read and write;
        with it the engine builds segments of up to 64 KB (``send_size``, when
        the config leaves it None) and the default congestion control,
        ``newreno``, counts bytes in slow start (``newreno-abc``): the
        kernel ACKs each super-packet once, a stretch ACK for up to 45
        segments.

        On a normal exit, with ``linger`` (the default), the stack first holds
        every connection the application has closed and TCP has not finished
        releasing — TIME-WAIT, LAST-ACK, CLOSING, FIN-WAIT-1/2 — until it
        ends (:meth:`linger`), answering a retransmitted FIN as a kernel does
        after the process exited.  Then the TUN fd is closed; connections
        still open simply stop (the kernel sees silence, as after a crash).
        """
        lab = LabConfig(netns=netns, tun=tun)
        addrs = [addr] if isinstance(addr, str) else addr or [lab.finwait_v4, lab.finwait_v6]
        fd = open_tun(netns, tun, offload=offload)
        cfg = config or Config()
        if offload and cfg.send_size is None:
            # The device segments (TSO): _push builds segments of up to 64 KB.
            cfg = dataclasses.replace(cfg, send_size=GSO_MAX_PAYLOAD)
        if offload and cfg.congestion_control == "newreno":
            # The kernel ACKs a super-packet once: one ACK for up to 45
            # segments.  Slow start counting one SMSS per ACK (RFC 3465's
            # L = 1, the default newreno) then grows cwnd by a 45th of what
            # was delivered, and a bulk sender waits for ACKs all along;
            # byte counting (newreno-abc: what an ACK delivers, as Linux's
            # tcp_slow_start()) doubles it per round trip as intended.
            cfg = dataclasses.replace(cfg, congestion_control="newreno-abc")
        host = Host(addrs, cfg, isn_key=_ISN_KEY, name=name)
        sink = PcapFile(pcap) if pcap else None
        driver = Driver(host, fd, batch=batch, pcap=sink, drop=drop, offload=offload)
        stack = cls(host, driver, record=record)
        driver.start()
        try:
            # Not before the kernel can send to the device (lab.tun_running).
            deadline = driver.now() + 2.0
            while not tun_running(netns, tun) and driver.now() < deadline:
                await asyncio.sleep(0.001)
            yield stack
            if linger:
                await stack.linger()
        finally:
            for server in list(stack._servers):
                server.close()
            driver.close()
            # Nothing moves any more: whoever still waits on a connection
            # (a handler task left running) gets an error, not silence.
            stack._on_driver_closed("the stack was closed")

    def now(self) -> float:
        return self.driver.now()

    def pump(self) -> None:
        self.driver.pump()

    # -- the release after the application ----------------------------------

    def releasing(self) -> list[Connection]:
        """Connections the application closed whose release TCP has not
        finished (states of :data:`LINGER_STATES`)."""
        return [c for c in self.host.conns.values() if c.state in LINGER_STATES]

    async def linger(
        self,
        on_tick: Callable[[list[Connection], float | None], None] | None = None,
        *,
        tick: float = 1.0,
    ) -> None:
        """Run until no connection is left in :data:`LINGER_STATES` (or the
        TUN goes away).  ``on_tick(connections, seconds_left)`` is called at
        once and every ``tick`` seconds; ``seconds_left`` is the latest end of
        a TIME-WAIT among them (None when none is in TIME-WAIT: the others end
        when the peer answers or retransmissions give up)."""
        last_tick: float | None = None
        while not self.lost.done():
            conns = self.releasing()
            if not conns:
                return
            now = self.now()
            if on_tick is not None and (last_tick is None or now - last_tick >= tick):
                last_tick = now
                # In TIME-WAIT the only deadline is 2 MSL's end.
                ends = [
                    d
                    for c in conns
                    if c.state is State.TIME_WAIT and (d := c.next_deadline()) is not None
                ]
                on_tick(conns, max(ends) - now if ends else None)
            await asyncio.wait([self.lost], timeout=0.05)

    def _on_driver_closed(self, error: str | None) -> None:
        if error is None or self.lost.done():
            return
        self.lost.set_result(error)
        for stream in list(self._streams.values()):
            stream._fail(ConnectionAbortedError(error))

    # -- event routing ------------------------------------------------------

    def _on_event(self, conn: Connection, ev: Event) -> None:
        stream = self._streams.get(id(conn))
        if stream is not None:
            stream.on_event(ev)
            return
        entry = self._stash.setdefault(id(conn), (conn, []))
        entry[1].append(ev)
        if isinstance(ev, Closed | Reset | TimedOut):
            # Died before it was accepted.  Had it been established (the peer
            # completed the handshake, maybe sent data, then reset), it is a
            # connection all the same, as Linux's accept() returns one that
            # was reset in its accept queue: its server gets it, and its
            # reader gives the data, then the error.
            server = None
            if any(isinstance(e, Connected) for e in entry[1]):
                server = next((x for x in self._servers if x.listener.port == conn.local[1]), None)
            if server is not None and conn in server.listener.accept_queue:
                return  # accept_ready() takes it, with these events
            del self._stash[id(conn)]
            if server is not None:
                server.accept_dead(conn, entry[1])

    def _register(self, conn: Connection, events: list[Event] | None = None) -> _Stream:
        # Not recording: the (empty) trace is made only if someone asks.
        stream = _Stream(self, conn, self._trace_for(conn) if self.record else None)
        self._streams[id(conn)] = stream
        conn_events = self._stash.pop(id(conn), None)
        if conn_events is not None:
            events = conn_events[1]
        for ev in events or ():
            stream.on_event(ev)
        stream.sync_state()
        return stream

    def _forget(self, stream: _Stream) -> None:
        self._streams.pop(id(stream.conn), None)
        self._traces.pop(stream.key, None)

    def _accept_all(self) -> None:
        for server in self._servers:
            server.accept_ready()

    # -- trace recording ------------------------------------------------------

    def _observe(self, direction: str, seg: Segment, now: float) -> None:
        if direction == IN:
            key = (seg.dst, seg.dport, seg.src, seg.sport)
        else:
            key = (seg.src, seg.sport, seg.dst, seg.dport)
        trace = self._traces.get(key)
        if trace is None:
            trace = self._new_trace(key)
        if seg.flags & SYN:
            trace.endpoints[REMOTE if direction == IN else LOCAL].isn = seg.seq
        ev = trace.add_segment(now - self.t0, seg)
        if direction == IN:
            self._last_in = (trace, len(trace.events) - 1, ev)

    def _mark_dropped(self, seg: Segment, verdict: Verdict, now: float) -> None:
        """The driver's on_verdict: the segment just recorded arriving was
        discarded by the engine — its fate in the Trace says so, with the
        verdict's reason (as the simulator marks it)."""
        last = self._last_in
        if last is not None and last[2].segment is seg:
            trace, i, ev = last
            if i < len(trace.events) and trace.events[i] is ev:
                trace.events[i] = dataclasses.replace(ev, fate=DROPPED, reason=verdict.reason)

    def _new_trace(self, key: tuple[str, int, str, int]) -> Trace:
        trace = Trace()
        trace.add_endpoint(LOCAL, key[0], key[1])
        trace.add_endpoint(REMOTE, key[2], key[3])
        self._traces[key] = trace
        while len(self._traces) > _MAX_TRACES:
            self._traces.popitem(last=False)
        return trace

    def _record_state(self, conn: Connection, ev: StateChanged) -> None:
        """The driver's on_state: every state change goes into its
        connection's trace when the drain takes it, before the segments of
        the same round are written (finwait.drive's one order rule), so no
        event is ever inserted out of order."""
        self._trace_for(conn).add_state(ev.time - self.t0, LOCAL, ev.new)

    def _trace_for(self, conn: Connection) -> Trace:
        key = (*conn.local, *conn.remote)
        return self._traces.get(key) or self._new_trace(key)


class _Stream:
    """The state shared by one connection's reader and writer."""

    def __init__(self, stack: Stack, conn: Connection, trace: Trace | None) -> None:
        self.stack = stack
        self.conn = conn
        self.key = (*conn.local, *conn.remote)
        self._trace = trace
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.exc: BaseException | None = None
        self.eof_received = False
        self.rbuf = bytearray()
        self.pending = bytearray()  # written by the user, not yet in the engine
        self.eof_requested = False
        self.fin_queued = False
        self.reading_closed = False
        self.aborted = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.reset_before_accept = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()

    @property
    def trace(self) -> Trace:
        trace = self._trace
        if trace is None:  # a stack that does not record: endpoints only
            trace = self._trace = Trace()
            trace.add_endpoint(LOCAL, *self.conn.local)
            trace.add_endpoint(REMOTE, *self.conn.remote)
        return trace

    # -- from the engine ---------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        if type(ev) is StateChanged:
            # Recorded by the Stack, in the drain's order (_record_state).
            # The state only moves with one of these: the one place to look.
            self.sync_state()
            return
        if isinstance(ev, Connected):
            _resolve(self.connected)
        elif isinstance(ev, DataReceived):
            self._readable.set()
        elif isinstance(ev, EndOfStream):
            self.eof_received = True
            self._readable.set()
        elif isinstance(ev, SendAcknowledged):
            self.flush_pending()
        elif isinstance(ev, Reset):
            if ev.refused:
                self._fail(
                    ConnectionRefusedError(f"connection refused by {_fmt(self.conn.remote)}")
                )
            elif ev.local:
                self._fail(ConnectionAbortedError("connection aborted locally (RST sent)"))
            else:
                self._fail(ConnectionResetError(f"connection reset by {_fmt(self.conn.remote)}"))
        elif isinstance(ev, TimedOut):
            self._fail(TimeoutError(f"TCP gave up in {ev.state} (retransmissions exhausted)"))
        elif isinstance(ev, Closed):
            if not self.connected.done():
                self._fail(ConnectionResetError("connection closed before it was established"))
            self._finish()

    def sync_state(self) -> None:
        state = self.conn.state
        if state is not State.SYN_SENT and state is not State.SYN_RECEIVED and state.synchronized:
            _resolve(self.connected)
        # TIME-WAIT: the release is complete for the user.  CLOSED is left to
        # the event that says why (Closed, Reset, TimedOut), which follows
        # StateChanged(CLOSED) in the same batch.
        if state is State.TIME_WAIT:
            self._finish()

    def _fail(self, exc: BaseException) -> None:
        if self.exc is None:
            self.exc = exc
        if not self.connected.done():
            self.connected.set_exception(exc)
            self.connected.exception()  # retrieved: no "never retrieved" warning
        self._finish()

    def _finish(self) -> None:
        _resolve(self.done)
        self._readable.set()
        self._writable.set()
        if self.conn.state is State.CLOSED:
            self.stack._forget(self)

    # -- reading -------------------------------------------------------------

    def recv_some(self, n: int) -> bytes:
        """Take up to ``n`` (``-1``: all) bytes from our buffer or the engine."""
        if self.rbuf:
            k = len(self.rbuf) if n < 0 else min(n, len(self.rbuf))
            data = bytes(self.rbuf[:k])
            del self.rbuf[:k]
            return data
        if self.conn.readable <= 0:
            return b""
        data = self.conn.recv(n, self.stack.now())  # RECEIVE: opens the window
        self.bytes_in += len(data)
        self.stack.pump()
        return data

    async def wait_readable(self) -> None:
        self._readable.clear()
        if self.conn.readable > 0 or self.eof_received or self.exc is not None or self.done.done():
            return
        await self._readable.wait()

    # -- writing -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.pending:
            self.pending += data
            return
        try:
            k = self.conn.send(data, self.stack.now())
        except TcpError as exc:
            raise ConnectionResetError(f"cannot send: {exc}") from exc
        self.bytes_out += k
        if k < len(data):
            self.pending += data[k:]
        self.stack.pump()

    def flush_pending(self) -> None:
        now = self.stack.now()
        while self.pending and self.conn.send_space > 0 and self.conn.state.can_send:
            k = self.conn.send(bytes(self.pending[:65536]), now)
            if k <= 0:
                break
            self.bytes_out += k
            del self.pending[:k]
        if not self.pending:
            self._writable.set()
            if self.eof_requested and not self.fin_queued:
                self.fin_queued = True
                # CLOSE: FIN after everything queued; discard: socket close()
                self.conn.close(now, discard=self.reading_closed)
        self.stack.pump()

    async def wait_writable(self) -> None:
        self._writable.clear()
        if not self.pending or self.exc is not None:
            return
        await self._writable.wait()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _fmt(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StreamReader:
    """Reads one connection's incoming stream, like ``asyncio.StreamReader``."""

    def __init__(self, stream: _Stream, limit: int = 2**16) -> None:
        self._s = stream
        self._limit = limit

    def at_eof(self) -> bool:
        s = self._s
        return s.eof_received and not s.rbuf and s.conn.readable <= 0

    def exception(self) -> BaseException | None:
        return self._s.exc

    def _check(self) -> None:
        s = self._s
        if s.exc is not None and not s.rbuf and s.conn.readable <= 0:
            raise s.exc

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes, or (``n = -1``) everything until the peer's FIN.
        ``b""`` means end of stream."""
        if n == 0:
            return b""
        if n < 0:
            chunks: list[bytes] = []
            while True:
                chunk = await self.read(1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        s = self._s
        while True:
            self._check()
            data = s.recv_some(n)
            if data:
                return data
            if s.eof_received or s.done.done():
                return b""
            await s.wait_readable()

    async def readexactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = await self.read(n - len(buf))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(buf), n)
            buf += chunk
        return bytes(buf)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        s = self._s
        while True:
            idx = s.rbuf.find(separator)
            if idx >= 0:
                end = idx + len(separator)
                data = bytes(s.rbuf[:end])
                del s.rbuf[:end]
                return data
            if len(s.rbuf) > self._limit:
                raise asyncio.LimitOverrunError("separator not found within the limit", len(s.rbuf))
            chunk = await self._more()
            if not chunk:
                partial = bytes(s.rbuf)
                s.rbuf.clear()
                raise asyncio.IncompleteReadError(partial, None)

    async def readline(self) -> bytes:
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    async def _more(self) -> bytes:
        """Pull engine data into the reader's own buffer (for readuntil)."""
        s = self._s
        while True:
            self._check()
            if s.conn.readable > 0:
                data = s.conn.recv(-1, s.stack.now())
                s.bytes_in += len(data)
                s.stack.pump()
                s.rbuf += data
                return data
            if s.eof_received or s.done.done():
                return b""
            await s.wait_readable()

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class StreamWriter:
    """Writes one connection's outgoing stream, like ``asyncio.StreamWriter``."""

    def __init__(self, stream: _Stream, reader: StreamReader) -> None:
        self._s = stream
        self._reader = reader

    @property
    def trace(self) -> Trace:
        """Every segment of this connection seen on the TUN, and our states."""
        return self._s.trace

    @property
    def connection(self) -> Connection:
        return self._s.conn

    @property
    def stats(self) -> dict[str, int]:
        s = self._s
        return {
            "bytes_sent": s.bytes_out,
            "bytes_received": s.bytes_in,
            "bytes_pending": len(s.pending),
        }

    def write(self, data: bytes | bytearray | memoryview) -> None:
        s = self._s
        if s.exc is not None:
            raise s.exc
        if s.eof_requested:
            raise RuntimeError("write after write_eof()/close()")
        if data:
            s.send(bytes(data))

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    async def drain(self) -> None:
        """Wait until everything written is in the engine's send buffer
        (which the peer's ACKs empty)."""
        s = self._s
        while s.pending:
            if s.exc is not None:
                raise s.exc
            await s.wait_writable()
        if s.exc is not None and not s.aborted:
            raise s.exc

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Half-close: our FIN goes after all queued data; reading goes on."""
        s = self._s
        if s.eof_requested or s.exc is not None:
            return
        s.eof_requested = True
        s.flush_pending()

    def close(self) -> None:
        """Close both directions, as ``socket.close()`` does: FIN after the
        queued data, and we read no more.  As Linux's ``tcp_close()`` (RFC 2525
        §2.17, LX-5/LX-7) the engine sends RST instead if received data is
        left unread or more data arrives later."""
        s = self._s
        if s.reading_closed:
            return
        s.reading_closed = True
        if s.exc is not None or s.done.done():
            return
        if s.rbuf:  # unread bytes in our own buffer count as unread too
            self.abort()
            return
        if s.fin_queued:  # after write_eof(): only tell the engine we stop reading
            with contextlib.suppress(TcpError):
                s.conn.close(s.stack.now(), discard=True)
            s.stack.pump()
            return
        s.eof_requested = True
        s.flush_pending()

    def is_closing(self) -> bool:
        return self._s.eof_requested or self._s.reading_closed or self._s.done.done()

    async def wait_closed(self) -> None:
        """Wait until the connection is released (TIME-WAIT or CLOSED) or reset.
        A reset by the peer after close() is not an error, as with asyncio."""
        await asyncio.shield(self._s.done)

    async def wait_state(self, *states: State) -> State:
        """Wait until the connection is in one of ``states`` (tests, CLIs)."""
        s = self._s
        while s.conn.state not in states:
            if s.done.done() and s.conn.state is State.CLOSED:
                break
            s._readable.clear()
            waiter = asyncio.ensure_future(s._readable.wait())
            try:
                await asyncio.wait([waiter], timeout=0.05)
            finally:
                waiter.cancel()
        return s.conn.state

    def abort(self) -> None:
        """ABORT: send RST now and drop everything (RFC 9293 §3.10.5)."""
        s = self._s
        if s.done.done():
            return
        s.aborted = True
        s.reading_closed = True
        s.pending.clear()
        s.conn.abort(s.stack.now())
        s.stack.pump()
        if not s.done.done():  # the engine's Reset(local) normally does this
            s._fail(ConnectionAbortedError("connection aborted locally (RST sent)"))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        s = self._s
        if name == "peername":
            return s.conn.remote
        if name == "sockname":
            return s.conn.local
        if name == "tcp_state":
            return str(s.conn.state)
        if name == "connection":
            return s.conn
        if name == "trace":
            return s.trace
        if name == "reset_before_accept":
            return s.reset_before_accept
        return default


def _pair(stream: _Stream) -> tuple[StreamReader, StreamWriter]:
    reader = StreamReader(stream)
    return reader, StreamWriter(stream, reader)


async def open_connection(
    host: str,
    port: int,
    *,
    stack: Stack,
    timeout: float | None = None,
    local_addr: Addr | None = None,
) -> tuple[StreamReader, StreamWriter]:
    """Active OPEN to ``host:port``; returns once ESTABLISHED.

    ``local_addr``: ``(address, port)`` to connect from, as asyncio's
    (``""`` or port 0: the stack picks).  Raises ``ConnectionRefusedError``
    when a RST answers the SYN and ``TimeoutError`` when the SYN
    retransmissions (or ``timeout``) run out.
    """
    src, sport = local_addr or ("", 0)
    conn = stack.host.connect(host, port, stack.now(), src=src or None, sport=sport or None)
    stream = stack._register(conn)
    stack.pump()
    try:
        await asyncio.wait_for(asyncio.shield(stream.connected), timeout)
    except TimeoutError as exc:
        if not stream.connected.done():
            conn.abort(stack.now())
            stack.pump()
            raise TimeoutError(
                f"no answer from {_fmt((host, port))} within {timeout:g} s "
                f"({conn.counters.get('syn_retransmitted', 0) or 'no'} SYN retransmissions)"
            ) from exc
        raise
    return _pair(stream)


class Server:
    """A listening port; each accepted connection runs ``handler`` in a task."""

    def __init__(self, stack: Stack, port: int, handler: Handler, backlog: int) -> None:
        self.stack = stack
        self.port = port
        self.handler = handler
        self.listener = stack.host.listen(port, backlog=backlog)
        self.tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.reset_before_accept = 0  # of the accepted: established, then died unaccepted
        self._closed = asyncio.get_running_loop().create_future()

    def accept_ready(self) -> None:
        while (conn := self.listener.accept()) is not None:
            stream = self.stack._register(conn)
            if conn.state is State.CLOSED:  # queued, then reset before accept
                stream.reset_before_accept = True
                self.reset_before_accept += 1
            self._start(stream)

    def accept_dead(self, conn: Connection, events: list[Event]) -> None:
        """A connection that was established and died (RST, timeout) before
        it was accepted: the handler gets it all the same."""
        if self._closed.done():
            return
        self.reset_before_accept += 1
        stream = self.stack._register(conn, events)
        stream.reset_before_accept = True
        self._start(stream)

    def _start(self, stream: _Stream) -> None:
        self.accepted += 1
        task = asyncio.ensure_future(self._run(stream))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, stream: _Stream) -> None:
        reader, writer = _pair(stream)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            if not stream.done.done():
                writer.abort()

    def close(self) -> None:
        """Stop listening (RFC 9293 §3.10.4 CLOSE in LISTEN); accepted
        connections carry on, those not yet accepted are reset."""
        if self._closed.done():
            return
        self.stack.host.unlisten(self.listener, self.stack.now())
        if self in self.stack._servers:
            self.stack._servers.remove(self)
        _resolve(self._closed)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def sockets(self) -> list[Addr]:
        return [(a, self.port) for a in sorted(self.stack.host.addrs)]

    async def serve_forever(self) -> None:
        await self.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def start_server(
    handler: Handler,
    port: int,
    *,
    stack: Stack,
    backlog: int = SOMAXCONN,
) -> Server:
    """Passive OPEN on ``port`` (all of the stack's addresses).  ``backlog``
    bounds the SYN queue and the accept queue (default: Linux's somaxconn)."""
    server = Server(stack, port, handler, backlog)
    stack._servers.append(server)
    return server
