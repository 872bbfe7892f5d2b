"""The asyncio driver: the sans-IO Host on a TUN file descriptor.

Owns the one drive loop of the live stack (STYLE §5): read packets from the
TUN (non-blocking, up to ``batch`` per wake-up, until EAGAIN), hand each to
``Host.receive_packet(pkt, now)``, then drain the Host — write every segment
of ``take_segments()`` to the TUN, dispatch ``take_events()`` to whoever
listens — and re-arm the one timer from ``next_deadline()``.  The same drain
follows every timer expiry and every user call (:meth:`Driver.pump`), so
nothing waits for "someone to remember to transmit".  The clock is the event
loop's, ``loop.time()``, which is ``time.monotonic()``.

Optional extras: a pcap of every packet in and out (LINKTYPE_RAW, what
tshark opens), per-packet observers (the Trace recorder of the streams layer),
and a drop hook for loss tests: a predicate that sees each packet's direction
and decoded segment and returns True to lose it.  Read RFC 9293 §3.10 for the
event order the Host follows; the TUN interface is Linux's
Documentation/networking/tuntap.rst.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from ..host import Host
from ..tcp.connection import Connection
from ..tcp.events import Event
from ..wire.errors import ParseError
from ..wire.ip import decode_packet, encode_packet
from ..wire.segment import Segment

IN = "in"  # kernel -> finwait (read from the TUN)
OUT = "out"  # finwait -> kernel (written to the TUN)

DropHook = Callable[[str, Segment], bool]
"""``(direction, segment) -> True`` to lose the packet (tests only)."""
PacketObserver = Callable[[str, Segment, float], None]
EventSink = Callable[[Connection, Event], None]


class PacketSink(Protocol):
    """What the driver needs of a pcap writer."""

    def write_packet(self, ts: float, data: bytes) -> None: ...

    def close(self) -> None: ...


class Driver:
    """Runs one :class:`Host` on one TUN fd inside an asyncio loop."""

    def __init__(
        self,
        host: Host,
        fd: int,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        batch: int = 64,
        pcap: PacketSink | None = None,
        drop: DropHook | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.host = host
        self.fd = fd
        self.loop = loop or asyncio.get_running_loop()
        self.batch = batch
        self.pcap = pcap
        self.drop = drop
        self.on_event = on_event
        self.observers: list[PacketObserver] = []
        self.after_pump: list[Callable[[], None]] = []
        self.counters: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        self.loop.add_reader(self.fd, self._on_readable)
        self.pump()

    def close(self) -> None:
        """Stop reading and timing; close the fd and the pcap.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        os.close(self.fd)
        if self.pcap is not None:
            self.pcap.close()

    def now(self) -> float:
        return self.loop.time()

    # -- input ------------------------------------------------------------

    def _on_readable(self) -> None:
        now = self.loop.time()
        receive = self.host.receive_packet
        fd = self.fd
        want_segment = self.drop is not None or bool(self.observers)
        n = 0
        # Several packets per wake-up: one epoll round per packet would cost
        # more than the engine's work on it.  Bounded, so timers and writers
        # still run under a flood.
        while n < self.batch:
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                # EBADFD/EIO: the device went away (lab down); stop cleanly.
                self.counters[
                    f"tun read error {errno.errorcode.get(exc.errno or 0, exc.errno)}"
                ] += 1
                self.close()
                return
            n += 1
            if self.pcap is not None:
                self.pcap.write_packet(now, pkt)
            if want_segment and not self._observe(IN, pkt, now):
                continue
            receive(pkt, now)
        self.counters["packets in"] += n
        self.pump()

    def _observe(self, direction: str, pkt: bytes, now: float) -> bool:
        """Decode for the drop hook and observers; False: lose the packet."""
        try:
            seg = decode_packet(pkt)
        except ParseError:
            return True  # the Host counts it by reason
        if self.drop is not None and self.drop(direction, seg):
            self.counters[f"dropped {direction} by hook"] += 1
            return False
        for obs in self.observers:
            obs(direction, seg, now)
        return True

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.host.on_timer(self.loop.time())
        self.pump()

    # -- the drive loop -----------------------------------------------------

    def pump(self) -> None:
        """Drain the Host after any input: write its segments, dispatch its
        events, re-arm the timer.  Event handlers may call the engine again
        (a read opens the window); their output is drained in the same call."""
        if self._pumping or self._closed:
            return  # re-entered from an event handler: the outer loop drains
        self._pumping = True
        try:
            for _ in range(64):  # bounded: handlers cannot make us spin
                segs = self.host.take_segments()
                if segs:
                    self._write(segs)
                events = self.host.take_events()
                if events and self.on_event is not None:
                    for conn, ev in events:
                        self.on_event(conn, ev)
                for hook in self.after_pump:
                    hook()
                if not segs and not events:
                    break
        finally:
            self._pumping = False
        self._rearm()

    def _write(self, segs: list[Segment]) -> None:
        now = self.loop.time()
        fd = self.fd
        drop = self.drop
        observers = self.observers
        for seg in segs:
            if drop is not None and drop(OUT, seg):
                self.counters["dropped out by hook"] += 1
                continue
            pkt = encode_packet(seg)
            for obs in observers:
                obs(OUT, seg, now)
            if self.pcap is not None:
                self.pcap.write_packet(now, pkt)
            try:
                os.write(fd, pkt)
            except OSError as exc:
                # A TUN write only fails if the device is down or the packet is
                # malformed for the kernel; the engine retransmits like a loss.
                self.counters[
                    f"tun write error {errno.errorcode.get(exc.errno or 0, exc.errno)}"
                ] += 1
        self.counters["packets out"] += len(segs)

    def _rearm(self) -> None:
        deadline = self.host.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def stats(self) -> dict[str, Any]:
        return {"driver": dict(self.counters), "host": dict(self.host.counters)}


class PcapFile:
    """Adapter from :class:`finwait.capture.writer.PcapWriter` to :class:`PacketSink`."""

    def __init__(self, path: str) -> None:
        from ..capture.writer import LINKTYPE_RAW, PcapWriter

        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = PcapWriter(self._file, linktype=LINKTYPE_RAW)
        # The driver's clock is monotonic; a capture wants wall-clock time.
        self._epoch = time.time() - time.monotonic()

    def write_packet(self, ts: float, data: bytes) -> None:
        self._writer.write(data, ts + self._epoch)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.flush()
        self._file.close()
