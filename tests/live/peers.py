"""The kernel side of the live tests: ordinary Python sockets inside the lab's
namespace (run in a thread, so the event loop driving finwait keeps going),
and an independent capture: an AF_PACKET socket on the TUN, decoded with dpkt,
not with finwait's own codec."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dpkt

from finwait.live.lab import Lab

T = TypeVar("T")
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # linux/if_packet.h: sent by the kernel (towards finwait)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # asm-generic/socket.h; needs root

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def kernel_socket(lab: Lab, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket of the kernel inside the lab's namespace."""
    with lab.inside():
        return socket.socket(family, socket.SOCK_STREAM)


def kernel_listener(lab: Lab, port: int, family: int = socket.AF_INET) -> socket.socket:
    s = kernel_socket(lab, family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(1024)
    s.settimeout(10)
    return s


def in_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run blocking kernel-socket code in its own (joined) thread."""
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:
            fut.set_exception(exc)

    t = threading.Thread(target=run, name=f"kernel-peer-{getattr(fn, '__name__', '?')}")
    t.start()
    return asyncio.wrap_future(fut)


def recv_all(s: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


@dataclass(frozen=True)
class Pkt:
    """One captured TCP segment; ``out`` = sent by the kernel."""

    t: float
    out: bool
    src: str
    dst: str
    sport: int
    dport: int
    flags: int
    seq: int
    ack: int
    length: int

    @property
    def seg_len(self) -> int:
        return self.length + bool(self.flags & SYN) + bool(self.flags & FIN)

    def has(self, flags: int) -> bool:
        return self.flags & flags == flags

    def __str__(self) -> str:
        names = [
            n
            for b, n in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"))
            if self.flags & b
        ]
        who = "kernel->finwait" if self.out else "finwait->kernel"
        return f"{who} {','.join(names)} seq={self.seq} ack={self.ack} len={self.length}"


class Capture:
    """AF_PACKET on the lab's TUN, in a thread; ``packets`` grows as they pass."""

    def __init__(self, lab: Lab) -> None:
        with lab.inside():
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            self._sock.bind((lab.cfg.tun, ETH_P_ALL))
        # 16 MB so that a loaded machine's slow capture thread loses nothing.
        self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self._sock.settimeout(0.02)
        self.raw: list[tuple[float, bool, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return  # the device went away with the namespace
            self.raw.append((time.monotonic(), addr[2] == PACKET_OUTGOING, data))

    def stop(self) -> list[Pkt]:
        time.sleep(0.05)  # let the last packets reach the socket
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return self.packets()

    def packets(self) -> list[Pkt]:
        out = []
        for t, outgoing, data in list(self.raw):
            ip: Any = dpkt.ip.IP(data) if data[0] >> 4 == 4 else dpkt.ip6.IP6(data)
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            fam = socket.AF_INET if data[0] >> 4 == 4 else socket.AF_INET6
            out.append(
                Pkt(t, outgoing, socket.inet_ntop(fam, ip.src), socket.inet_ntop(fam, ip.dst),
                    tcp.sport, tcp.dport, tcp.flags, tcp.seq, tcp.ack, len(tcp.data))
            )  # fmt: skip
        return out


def relative(pkts: list[Pkt]) -> list[Pkt]:
    """Sequence numbers relative to each side's ISN (from its SYN), as Wireshark."""
    isn: dict[bool, int] = {}
    for p in pkts:
        if p.flags & SYN and p.out not in isn:
            isn[p.out] = p.seq
    rel = []
    for p in pkts:
        mine, theirs = isn.get(p.out, 0), isn.get(not p.out, 0)
        ack = (p.ack - theirs) % 2**32 if p.flags & ACK else 0
        rel.append(
            Pkt(
                p.t,
                p.out,
                p.src,
                p.dst,
                p.sport,
                p.dport,
                p.flags,
                (p.seq - mine) % 2**32,
                ack,
                p.length,
            )
        )
    return rel


def one_connection(pkts: list[Pkt], port: int) -> list[Pkt]:
    return [p for p in pkts if port in (p.sport, p.dport)]


def echo_server(srv: socket.socket, total: int) -> int:
    """Kernel echo server for ``total`` connections at once or in turn: echo
    everything, close after the peer's FIN.  Returns the bytes echoed."""
    import selectors

    sel = selectors.DefaultSelector()
    srv.setblocking(False)
    sel.register(srv, selectors.EVENT_READ)
    accepted = closed = echoed = 0
    try:
        while closed < total:
            events = sel.select(timeout=10)
            if not events:
                raise TimeoutError(f"echo server idle: {accepted} accepted, {closed} closed")
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is srv:
                    while accepted < total:
                        try:
                            c, _ = srv.accept()
                        except BlockingIOError:
                            break
                        c.setblocking(True)
                        c.settimeout(10)
                        sel.register(c, selectors.EVENT_READ)
                        accepted += 1
                    continue
                data = sock.recv(65536)
                if data:
                    sock.sendall(data)
                    echoed += len(data)
                else:
                    sel.unregister(sock)
                    sock.close()
                    closed += 1
    finally:
        sel.close()
        srv.close()
    return echoed
