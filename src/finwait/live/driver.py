"""The asyncio driver: the sans-IO Host on a TUN file descriptor.

Runs the live stack around the one drain loop (``finwait.drive``): read packets from the
TUN (non-blocking, up to ``batch`` at a time, until EAGAIN) — on every wake-up
*and* at the start of every drain, so input is never left queued in the
kernel while the event loop runs other tasks —, hand each to
``Host.receive(seg, now)``, then drain the Host with ``drive.drain`` —
record state changes (``on_state``), write every segment to the TUN,
dispatch the events to whoever listens — and re-arm the one timer from
``next_deadline()``.  The same drain
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
import errno
import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..drive import Events, drain
from ..host import Host
from ..tcp.connection import Connection
from ..tcp.events import Event, StateChanged
from ..tcp.verdict import Verdict
from ..wire.errors import ParseError
from ..wire.ip import decode_packet, encode_packet
from ..wire.segment import ACK, FIN, PSH, RST, SYN, URG, Segment
from .lab import VNET_HDR_LEN

IN = "in"  # kernel -> finwait (read from the TUN)
OUT = "out"  # finwait -> kernel (written to the TUN)

# linux/virtio_net.h: the header in front of every packet with IFF_VNET_HDR.
_VNET = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_VNET_PLAIN = bytes(VNET_HDR_LEN)  # one ordinary packet, checksum complete
VNET_F_NEEDS_CSUM = 1  # the kernel left the TCP checksum partial (never computed)
VNET_GSO_TCPV4 = 1
VNET_GSO_TCPV6 = 4
# Payload of one super-packet: an IPv4 total length is 16 bits, and the
# headers (IP 20, TCP up to 60) come on top.
GSO_MAX_PAYLOAD = 65535 - 20 - 60
_MOD32 = 0xFFFFFFFF
_ANSWERED = SYN | FIN | RST  # what the kernel answers at once, as data
# Event-loop turns a held handshake ACK waits for the application's first
# write: the Connected event reaches a task awaiting open_connection() through
# up to three callbacks (the stream's future, shield(), wait_for()).
_HOLD_TURNS = 4

Parts = tuple[bytes, ...]
"""One packet as the buffers of one gathering write (see :func:`packet_parts`)."""
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
        offload: bool = False,
    ) -> None:
        self.host = host
        self.fd = fd
        # The fd was opened with open_tun(offload=True): virtio_net_hdr in front
        # of every packet, super-packets both ways.
        self.offload = offload
        self.loop = loop or asyncio.get_running_loop()
        self.batch = batch
        self.pcap = pcap
        self.drop = drop
        self.on_event = on_event
        # Called for every StateChanged before the segments of its round are
        # written (finwait.drive's order rule): the trace recorder.
        self.on_state: Callable[[Connection, StateChanged], None] | None = None
        self.observers: list[PacketObserver] = []
        # Called with every arriving segment the Host discarded, and its verdict
        # (the streams layer marks it dropped in its Trace, with the reason).
        self.on_verdict: Callable[[Segment, Verdict, float], None] | None = None
        self.after_pump: list[Callable[[], None]] = []
        # Called once by close(), with the reason when the TUN failed
        # (the device went away: ``finwait lab down``), None otherwise.
        self.on_close: list[Callable[[str | None], None]] = []
        self.error: str | None = None
        self.counters: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False
        self._closed = False
        # Packets written so far that the kernel answers at once: data, SYN,
        # FIN, RST (pump reads again after a round that wrote one).
        self._written = 0
        # Read/drain passes per pump (see pump).
        self.passes = 4
        # The ACK that completes an active open, held until the application
        # has had its turn to write (see _hold): 4-tuple -> (ACK, pump number).
        self.merge_handshake_ack = True
        self._held: dict[tuple[str, int, str, int], tuple[Segment, int]] = {}
        self._pumps = 0
        self._flush_armed = False

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        self.loop.add_reader(self.fd, self._on_readable)
        self.pump()

    def close(self, error: str | None = None) -> None:
        """Stop reading and timing; close the fd and the pcap.  Idempotent.
        ``error``: why (the TUN failed), passed to the ``on_close`` hooks."""
        if self._closed:
            return
        self._closed = True
        self.error = error
        self._held.clear()
        self.loop.remove_reader(self.fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        os.close(self.fd)
        if self.pcap is not None:
            self.pcap.close()
        for hook in self.on_close:
            hook(error)

    def now(self) -> float:
        return self.loop.time()

    # -- input ------------------------------------------------------------

    def _on_readable(self) -> None:
        self.pump()  # which reads first

    def _read_some(self) -> None:
        """Read up to ``batch`` packets (until EAGAIN) and hand them to the Host."""
        if self._closed:
            return
        now = self.loop.time()
        receive = self.host.receive
        counters = self.host.counters
        fd = self.fd
        offload = self.offload
        size = 65536 + VNET_HDR_LEN if offload else 65536
        pcap = self.pcap
        drop = self.drop
        observers = self.observers
        on_verdict = self.on_verdict
        n = supers = 0
        # Several packets per wake-up: one epoll round per packet would cost
        # more than the engine's work on it.  Bounded, so timers and writers
        # still run under a flood.
        while n < self.batch:
            try:
                pkt = os.read(fd, size)
            except BlockingIOError:
                break
            except OSError as exc:
                # EBADFD/EIO: the device went away (lab down); stop cleanly.
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                self.counters[f"tun read error {name}"] += 1
                self.close(f"the TUN device stopped working ({name}: {exc.strerror})")
                return
            n += 1
            verify = True
            if offload:
                # NEEDS_CSUM: the kernel's own packet, handed over before its
                # checksum was computed (it never crossed a wire); there is
                # nothing to verify, only a pseudo-header sum in the field.
                verify = not pkt[0] & VNET_F_NEEDS_CSUM
                if pkt[1]:  # gso_type: a TCP super-packet, up to 64 KB
                    supers += 1
                pkt = pkt[VNET_HDR_LEN:]
            if pcap is not None:
                pcap.write_packet(now, pkt)
            # Decoded here, once, for the hooks and the Host alike; errors are
            # counted under the Host's own keys (Host.receive_packet).
            try:
                seg = decode_packet(pkt, verify_checksum=verify)
            except ParseError as exc:
                counters["parse_error"] += 1
                counters["parse_error:" + exc.reason] += 1
                continue
            if drop is not None and drop(IN, seg):
                self.counters[f"dropped {IN} by hook"] += 1
                continue
            for obs in observers:
                obs(IN, seg, now)
            verdict = receive(seg, now)
            if on_verdict is not None and verdict.dropped:
                on_verdict(seg, verdict, now)
        self.counters["packets in"] += n
        if supers:
            self.counters["super-packets in"] += supers

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
        self._pumps += 1
        try:
            # Input first: whatever the kernel queued since the last read is
            # taken now, not after every ready task of the event loop has run
            # (a burst of connections wakes thousands of them, and the TUN's
            # queue overflows meanwhile: docs/live.md, "Under load").
            # A TUN write runs the kernel's receive path in the writer's own
            # system call: its answer (a SYN,ACK, the ACK of our data or of
            # our FIN) is already queued when the write returns.  So after a
            # round that wrote such a segment, read again at once, rather
            # than one event-loop wake-up (an epoll wait, a callback) later
            # for every exchange.  Not after pure ACKs: what answers them is
            # the next data of a bulk transfer, better taken in one batch
            # when epoll reports it (read at once, it came one super-packet
            # per pass: 20 % more CPU per MB received).  Bounded: the loop's
            # other callbacks still run under a flood.
            for _ in range(self.passes):
                self._read_some()
                if self._closed:
                    return  # the device went away while reading
                written = self._written
                # The one drain loop (finwait.drive), bounded: handlers cannot
                # make us spin.  after_pump hooks run after every round, the
                # last (empty) one included.
                if drain(self.host, self._write, self._dispatch, self.on_state, max_rounds=64):
                    for hook in self.after_pump:
                        hook()
                if self._written == written:
                    break
            if self._held:
                self._flush_held(self._pumps)
        finally:
            self._pumping = False
        self._rearm()

    def _dispatch(self, events: Events) -> None:
        on_event = self.on_event
        if on_event is not None:
            for conn, ev in events:
                on_event(conn, ev)
        for hook in self.after_pump:
            hook()

    def _write(self, segs: list[Segment]) -> None:
        if self._held or self.merge_handshake_ack:
            segs = self._hold(segs)
        if segs:
            self._write_now(segs)

    def _hold(self, segs: list[Segment]) -> list[Segment]:
        """Hold the pure ACK that completes an active open (SYN-SENT ->
        ESTABLISHED) until the application has had its turn: a client
        usually writes at once, and its first data segment carries the same
        ACK — one packet instead of two, and one wake-up of the peer (its
        accept() and its read return together), as Linux does when a write
        is pending at the SYN,ACK (tcp_rcv_synsent_state_process()).  A
        later segment of the connection that carries an ACK replaces the
        held one; otherwise it goes out at the end of the next pump, or after
        a few turns of the event loop if nothing else happens (the
        application awaits the peer's first word).  The engine is not told:
        a pure ACK occupies no sequence space."""
        held = self._held
        conns = self.host.conns
        out: list[Segment] = []
        for seg in segs:
            key = (seg[0], seg[2], seg[1], seg[3])
            if held:
                h = held.pop(key, None)
                if h is not None and not seg[6] & ACK:
                    out.append(h[0])  # a RST without ACK: the ACK goes first
            if seg[6] == ACK and not seg[8] and self.merge_handshake_ack:
                conn = conns.get(key)
                if (
                    conn is not None
                    and seg[4] == conn.snd_nxt == (conn.iss + 1) & _MOD32
                    and seg[5] == (conn.irs + 1) & _MOD32
                ):
                    held[key] = (seg, self._pumps)
                    if not self._flush_armed:
                        self._flush_armed = True
                        self.loop.call_soon(self._flush_later, _HOLD_TURNS)
                    continue
            out.append(seg)
        return out

    def _flush_held(self, before: int) -> None:
        """Write the held ACKs of pumps before number ``before``."""
        due = [k for k, (_, n) in self._held.items() if n < before]
        if due:
            self._write_now([self._held.pop(k)[0] for k in due])

    def _flush_later(self, turns: int) -> None:
        """The event loop turned ``turns`` times since an ACK was held: the
        application that would have written at once did not."""
        if turns > 1 and self._held:
            self.loop.call_soon(self._flush_later, turns - 1)
            return
        self._flush_armed = False
        if self._held and not self._closed:
            self._flush_held(self._pumps + 1)

    def _write_now(self, segs: list[Segment]) -> None:
        now = self.loop.time()
        drop = self.drop
        observers = self.observers
        if drop is not None or observers:
            kept = []
            for seg in segs:
                if drop is not None and drop(OUT, seg):
                    self.counters["dropped out by hook"] += 1
                    continue
                for obs in observers:
                    obs(OUT, seg, now)
                kept.append(seg)
            segs = kept
        packets: Iterator[Parts] = (
            # Without a pcap to keep whole, the kernel completes the
            # super-packets' checksums (it never computes them for one
            # delivered locally): no pass over 64 KB in Python.
            packet_parts(segs, self._mss_of, partial_checksum=self.pcap is None)
            if self.offload
            else ((encode_packet(seg),) for seg in segs)
        )
        fd = self.fd
        pcap = self.pcap
        skip = VNET_HDR_LEN if self.offload else 0
        n = supers = 0
        for parts in packets:
            n += 1
            if pcap is not None:
                pcap.write_packet(now, b"".join(parts)[skip:])
            try:
                if len(parts) == 1:
                    os.write(fd, parts[0])
                else:  # a super-packet: header, headers, payload gathered
                    supers += 1
                    os.writev(fd, parts)
            except OSError as exc:
                # A TUN write only fails if the device is down or the packet is
                # malformed for the kernel; the engine retransmits like a loss.
                self.counters[
                    f"tun write error {errno.errorcode.get(exc.errno or 0, exc.errno)}"
                ] += 1
        for seg in segs:
            if seg.payload or seg.flags & _ANSWERED:
                self._written += 1
                break
        self.counters["packets out"] += n
        if supers:
            self.counters["super-packets out"] += supers

    def _mss_of(self, seg: Segment) -> int:
        """The SMSS of the connection that sent ``seg`` (0: none known)."""
        conn = self.host.conns.get((seg.src, seg.sport, seg.dst, seg.dport))
        return conn.smss if conn is not None else 0

    def inject(self, seg: Segment) -> None:
        """Write ``seg`` to the TUN now, past the drop hook and the observers
        (tests that reorder packets: the held segment goes out here)."""
        now = self.loop.time()
        pkt = encode_packet(seg)
        if self.pcap is not None:
            self.pcap.write_packet(now, pkt)
        os.write(self.fd, _VNET_PLAIN + pkt if self.offload else pkt)
        self.counters["packets out"] += 1

    def _rearm(self) -> None:
        """Make the one timer fire by the Host's next deadline.  A timer armed
        earlier than that stays: it fires, finds nothing due (or something
        due by then) and re-arms — rather than a cancel and a new handle in
        the loop's heap every time a connection moves its deadline later
        (each new connection, each ACK that restarts a retransmission timer)."""
        deadline = self.host.next_deadline()
        at = self._timer_at
        if deadline is None or (at is not None and at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def stats(self) -> dict[str, Any]:
        return {"driver": dict(self.counters), "host": dict(self.host.counters)}


def _gso_parts(seg: Segment, gso_size: int, partial_checksum: bool = False) -> Parts:
    """``seg`` as one TCP super-packet the kernel cuts into ``gso_size``
    pieces, in three buffers for one gathering write: the virtio_net_hdr, the
    IP and TCP headers, the payload (not copied).  ``partial_checksum``: the
    TCP checksum is left to the kernel (NEEDS_CSUM, as a VM's virtio-net
    hands it over), which never computes it for a packet delivered locally;
    otherwise it is complete (flags 0) and the kernel verifies the whole
    super-packet once, as one that GRO built."""
    hdrs = encode_packet(seg, partial_checksum=partial_checksum, headers_only=True)
    v6 = hdrs[0] >> 4 == 6
    ip_len = 40 if v6 else (hdrs[0] & 0x0F) << 2
    gso = VNET_GSO_TCPV6 if v6 else VNET_GSO_TCPV4
    if partial_checksum:
        # csum_start: the TCP header; csum_offset: its checksum field.
        vnet = _VNET.pack(VNET_F_NEEDS_CSUM, gso, len(hdrs), gso_size, ip_len, 16)
    else:
        vnet = _VNET.pack(0, gso, len(hdrs), gso_size, 0, 0)
    return (vnet, hdrs, seg.payload)


def _gso_packet(seg: Segment, gso_size: int, partial_checksum: bool = False) -> bytes:
    """:func:`_gso_parts` in one piece."""
    return b"".join(_gso_parts(seg, gso_size, partial_checksum))


def packet_parts(
    segs: list[Segment],
    mss_of: Callable[[Segment], int] | None = None,
    *,
    partial_checksum: bool = False,
) -> Iterator[Parts]:
    """The packets of :func:`super_packets`, each as the buffers one
    ``os.writev`` gathers: ``(packet,)`` for an ordinary one, ``(virtio
    header, headers, payload)`` for a super-packet — its up to 64 KB are
    handed to the kernel as they are, not copied twice more into one."""
    i, n = 0, len(segs)
    while i < n:
        first = segs[i]
        size = len(first.payload)
        if mss_of is not None and size > 536 and not first.flags & (SYN | RST | URG):
            mss = mss_of(first)
            if 0 < mss < size:
                yield _gso_parts(first, mss, partial_checksum)
                i += 1
                continue
        j = i + 1
        if first.flags == ACK and size:
            end = (first.seq + size) & _MOD32
            total = size
            while j < n:
                b = segs[j]
                k = len(b.payload)
                if not (
                    0 < k <= size
                    and b.seq == end
                    and (b.flags == ACK or b.flags == ACK | PSH)
                    and total + k <= GSO_MAX_PAYLOAD
                    and b.ack == first.ack
                    and b.window == first.window
                    and b.options == first.options
                    and b.dport == first.dport
                    and b.sport == first.sport
                    and b.dst == first.dst
                    and b.src == first.src
                    and not b.urgent
                ):
                    break
                j += 1
                total += k
                end = (end + k) & _MOD32
                if k < size or b.flags != ACK:
                    break  # a short or pushed segment ends the run
        if j == i + 1:
            yield (_VNET_PLAIN + encode_packet(first),)
        else:
            payload = b"".join([s.payload for s in segs[i:j]])
            merged = first._replace(payload=payload, flags=segs[j - 1].flags)
            yield _gso_parts(merged, size, partial_checksum)
        i = j


def super_packets(
    segs: list[Segment],
    mss_of: Callable[[Segment], int] | None = None,
    *,
    partial_checksum: bool = False,
) -> Iterator[bytes]:
    """Each packet to write, with its virtio_net_hdr.  A run of consecutive
    data segments of one connection becomes one TCP super-packet (GSO): the
    same header fields but the sequence number, all but the last exactly
    ``gso_size`` long, no flag but ACK before the last (which may add PSH) —
    segments the kernel's own segmentation (tcp_gso_segment()) would cut the
    super-packet back into.  A segment longer than its connection's SMSS
    (``mss_of``; the engine builds them with ``Config.send_size``, TSO) is
    one super-packet by itself, cut at the SMSS.  Everything else goes out
    as it is.  ``partial_checksum``: the super-packets' TCP checksums are
    left for the kernel to complete (:func:`_gso_parts`)."""
    for parts in packet_parts(segs, mss_of, partial_checksum=partial_checksum):
        yield parts[0] if len(parts) == 1 else b"".join(parts)


class PcapFile:
    """Adapter from :class:`finwait.capture.writer.PcapWriter` to :class:`PacketSink`."""

    def __init__(self, path: str) -> None:
        from ..capture.writer import LINKTYPE_RAW, PcapWriter

        # The writer owns the file: whole records only, whenever we stop.
        self._writer = PcapWriter(path, linktype=LINKTYPE_RAW)
        # The driver's clock is monotonic; a capture wants wall-clock time.
        self._epoch = time.time() - time.monotonic()

    def write_packet(self, ts: float, data: bytes) -> None:
        self._writer.write(data, ts + self._epoch)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
