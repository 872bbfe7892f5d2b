"""The kernel target: a script against Linux's TCP, as packetdrill runs it.

Each run makes a private lab (:class:`finwait.live.lab.Lab`: a uniquely
named network namespace with a TUN device; the kernel's address is
198.18.0.1 / 2001:db8::1 and the script's peer is 198.18.0.2 /
2001:db8::2 behind the TUN), sets the namespace's TCP sysctls to
packetdrill's defaults (``gtests/net/common/defaults.sh``), and removes it
all afterwards.  The script's socket calls run on real kernel sockets made
by a worker thread that has entered the namespace with ``setns`` (a socket
stays in the namespace it was made in); a blocking call (``a...b``) keeps
the worker busy while the main thread goes on writing inbound segments to
the TUN at their scripted times.  The kernel's segments are read from an
AF_PACKET socket on the TUN, each with the kernel's own transmit time
(SO_TIMESTAMPNS), so a segment that Python reads late is still judged by
when it left.  Script time runs from the first event, and is held back
whenever the runner is late for an event it makes itself (an injected
segment, a call): Python is slower to act than packetdrill's C, and only
the kernel's timing is under test.  That includes a sleep that wakes late:
otherwise the next event, already due, would follow at once, and Linux
reacts to short gaps (``tcp_tso_should_defer()`` holds back new data when
an ACK comes less than 1 ms after its last transmission).  Gaps may come
out longer on a loaded machine, so a script must not sit at an
RTT-relative edge.  Backquoted shell commands run inside the namespace
(``ip netns exec``).
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import fcntl
import os
import queue
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable

from ..wire.errors import ParseError
from ..wire.ip import decode_packet, encode_packet
from ..wire.segment import Segment
from .engine import CONSTANTS, const
from .model import Array, ScriptError, Struct, Syscall
from .runner import DEFAULT_BIND_PORT, LOCAL_V4, LOCAL_V6, REMOTE_V4, REMOTE_V6, CallResult
from .tcpinfo import kernel_tcp_info

ETH_P_ALL = 0x0003  # linux/if_ether.h
SO_TIMESTAMPNS = 35  # asm-generic/socket.h
PACKET_OUTGOING = 4  # linux/if_packet.h
READ_GRACE = 0.2  # seconds a segment may take to reach Python after it left

# packetdrill's device name: scripts' shell commands name it (tc qdisc … dev
# tun0).  The device lives in the lab's private namespace, so the name is free.
TUN_NAME = "tun0"

DEFAULT_CC = "cubic"  # packetdrill's defaults.sh


def _netns_cc() -> str:
    """The congestion control new sockets get in this thread's namespace."""
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        return f.read().strip()


# packetdrill's gtests/net/common/defaults.sh, the ones a namespace has.
SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net/ipv4/tcp_rmem", f"4096 540000 {15 * 1024 * 1024}"),
    ("net/ipv4/tcp_wmem", f"4096 {256 * 1024} 4194304"),
    ("net/ipv4/tcp_timestamps", "1"),
    ("net/ipv4/tcp_syn_retries", "5"),
    ("net/ipv4/tcp_synack_retries", "5"),
    ("net/ipv4/tcp_frto", "2"),
    ("net/ipv4/tcp_sack", "1"),
    ("net/ipv4/tcp_dsack", "1"),
    ("net/ipv4/tcp_reordering", "3"),
    ("net/ipv4/tcp_congestion_control", DEFAULT_CC),
    ("net/ipv4/tcp_slow_start_after_idle", "0"),
    ("net/ipv4/tcp_early_retrans", "4"),
    ("net/ipv4/tcp_recovery", "1"),
    ("net/ipv4/tcp_tso_win_divisor", "3"),
    ("net/ipv4/tcp_ecn", "0"),
    ("net/ipv4/tcp_pacing_ss_ratio", "200"),
    ("net/ipv4/tcp_pacing_ca_ratio", "120"),
    ("net/ipv4/tcp_notsent_lowat", "4294967295"),
    ("net/ipv4/tcp_syncookies", "1"),
)


SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def command_env() -> dict[str, str]:
    """The environment a script's shell commands run in: ours, with
    PACKETDRILL_PID set and the sbin directories on PATH (the commands are
    root's tools, ``tc`` and ``sysctl``, which a user's PATH may lack: Debian
    puts them in /usr/sbin)."""
    env = {**os.environ, "PACKETDRILL_PID": str(os.getpid())}
    path = [d for d in env.get("PATH", "").split(os.pathsep) if d]
    env["PATH"] = os.pathsep.join(path + [d for d in SBIN if d not in path])
    return env


def _realtime_offset() -> float:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC (capture stamps are the former),
    from the tightest of a few bracketed readings: a thread preempted between
    two clock reads would otherwise shift every stamp by as long."""
    best = (float("inf"), 0.0)
    for _ in range(20):
        m1 = time.monotonic()
        r = time.time()
        m2 = time.monotonic()
        best = min(best, (m2 - m1, r - (m1 + m2) / 2))
    return best[1]


class KernelTarget:
    name = "kernel"

    def __init__(
        self,
        path: str = "",
        ipv6: bool = False,
        options: tuple[tuple[str, str, int], ...] = (),
    ) -> None:
        from ..live.lab import Lab, LabError, check_prerequisites

        self.path = path
        self.ipv6 = ipv6
        self.local_addr = LOCAL_V6 if ipv6 else LOCAL_V4
        self.remote_addr = REMOTE_V6 if ipv6 else REMOTE_V4
        self.family = socket.AF_INET6 if ipv6 else socket.AF_INET
        try:
            check_prerequisites()
            self.lab = Lab(tun=TUN_NAME)
            self.lab.__enter__()
        except LabError as exc:
            raise ScriptError(f"kernel target unavailable: {exc}", 0, path) from None
        self.record: list[tuple[float, Segment, bool]] = []
        self._cc_refused: str | None = None  # the namespace's default, if not DEFAULT_CC
        self._under_test: socket.socket | None = None  # whose tcp_info %{ }% blocks see
        self.socks: dict[int, socket.socket] = {}
        self._closed = False
        self._stop = threading.Event()
        self._out: queue.Queue[tuple[float, Segment]] = queue.Queue()  # (monotonic, seg)
        self._calls: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._results: queue.Queue[tuple[float, CallResult | BaseException]] = queue.Queue()
        self._busy = False
        try:
            self.tun = self.lab.open_tun()
            self._wait_running()
            self.cap = self._capture()
            self._worker = threading.Thread(target=self._work, name="script-syscalls", daemon=True)
            self._ready = threading.Event()
            self._setup_error: BaseException | None = None
            self._worker.start()
            self._ready.wait(10)
            if self._setup_error is not None:
                raise self._setup_error
        except BaseException:
            self.close()
            raise
        self.t0 = time.monotonic()
        self._reader = threading.Thread(target=self._read_tun, name="script-tun", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------
    # Threads

    def _work(self) -> None:
        from pyroute2 import netns

        try:
            netns.setns(self.lab.name, flags=0)  # this thread only, for its lifetime
            for key, value in SYSCTLS:
                with contextlib.suppress(OSError), open(f"/proc/sys/{key}", "w") as f:
                    f.write(value)
            # A namespace other than the initial one may only make an algorithm
            # of net.ipv4.tcp_allowed_congestion_control its default: where
            # CUBIC is not one (the host's own default being, say, BBR, which
            # paces), the sockets ask for it themselves (CAP_NET_ADMIN may).
            cc = _netns_cc()
            self._cc_refused = cc if cc != DEFAULT_CC else None
        except BaseException as exc:
            self._setup_error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            job = self._calls.get()
            if job is None:
                return
            job()

    def _wait_running(self, timeout: float = 2.0) -> None:
        """Until the kernel can send through the TUN (``lab.tun_running``):
        it drops what it sends before its link watcher has attached the
        device's queue, a moment after the attach (later on a loaded
        machine), and a script's first SYN,ACK would be lost."""
        from ..live.lab import tun_running

        end = time.monotonic() + timeout
        while not tun_running(self.lab.name, TUN_NAME) and time.monotonic() < end:
            time.sleep(0.001)

    def _capture(self) -> socket.socket:
        """An AF_PACKET socket on the TUN, in the namespace, that sees what
        the kernel sends with the kernel's own transmit time (SO_TIMESTAMPNS):
        the time a segment left is then not the time Python got round to
        reading it."""
        with self.lab.inside():
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        try:
            cap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            cap.bind((TUN_NAME, ETH_P_ALL))
            cap.setblocking(False)
        except OSError:
            cap.close()
            raise
        return cap

    def _read_tun(self) -> None:
        fd, cap = self.tun, self.cap
        cfd = cap.fileno()
        offset = _realtime_offset()
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([fd, cfd], [], [], 0.05)
            except (OSError, ValueError):
                return
            if fd in r:
                with contextlib.suppress(OSError):
                    os.read(fd, 65536)  # the same packets; the TUN queue must not fill
            if cfd not in r:
                continue
            try:
                data, anc, _flags, addr = cap.recvmsg(65536, 64)
            except BlockingIOError:
                continue
            except OSError:
                return
            if addr[2] != PACKET_OUTGOING:
                continue
            mono = time.monotonic()
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    mono = min(mono, sec + nsec / 1e9 - offset)
            try:
                seg = decode_packet(data)
            except ParseError:
                continue  # not TCP (IPv6 neighbour discovery, ...)
            if seg.dst != self.remote_addr:
                continue
            self.record.append((mono - self.t0, seg, False))
            self._out.put((mono, seg))

    # ------------------------------------------------------------------
    # Time and segments

    def now(self) -> float:
        return time.monotonic() - self.t0

    def advance(self, t: float) -> None:
        """Wait until script time ``t``.  When the runner itself is late (a
        loaded machine, the worker thread slow to wake), the clock is moved
        back so that this event happens at ``t``: the lateness is ours, not
        the kernel's, and must not count against the kernel's own timing.
        Outbound segments are still timed from when they were read."""
        delay = t - self.now()
        if delay > 0:
            time.sleep(delay)  # a loaded machine may wake us late: held back too
            delay = t - self.now()
        if delay < -0.001:
            self.t0 -= delay

    def inject(self, seg: Segment) -> None:
        self.record.append((self.now(), seg, True))
        os.write(self.tun, encode_packet(seg))

    def next_outbound(self, deadline: float) -> tuple[float, Segment] | None:
        # Segments carry the kernel's transmit time, so one read late is
        # still judged by when it left: wait a little past the deadline.
        try:
            mono, seg = self._out.get(timeout=max(deadline - self.now(), 0.0) + READ_GRACE)
        except queue.Empty:
            return None
        return mono - self.t0, seg

    def run_command(self, text: str, line: int) -> None:
        # As packetdrill runs them: from the script's directory (upstream
        # scripts call ./defaults.sh beside them), with PACKETDRILL_PID set
        # to the runner's pid, which is also the shell's ${PPID} (``ip netns
        # exec`` execs the shell), for set_sysctls.py's restore file.
        proc = subprocess.run(
            ["ip", "netns", "exec", self.lab.name, "sh", "-c", text],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=os.path.dirname(os.path.abspath(self.path)) if self.path else None,
            env=command_env(),
        )
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            raise ScriptError(f"command failed ({proc.returncode}): {text!r}"
                              + (f": {err[-1]}" if err else ""), line, self.path)  # fmt: skip

    def tcp_info(self) -> dict[str, int] | None:
        """``getsockopt(TCP_INFO)`` of the connection under test (the last
        one accepted or connected)."""
        sock = self._under_test
        if sock is None:
            return None
        try:
            raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        except OSError:
            return None
        return kernel_tcp_info(raw)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for sock in self.socks.values():
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()
        self.socks.clear()
        if hasattr(self, "_worker"):
            self._calls.put(None)
            if not self._busy:
                self._worker.join(5)
        if hasattr(self, "_reader"):
            self._reader.join(2)
        if hasattr(self, "cap"):
            self.cap.close()
        if hasattr(self, "tun"):
            with contextlib.suppress(OSError):
                os.close(self.tun)
        self.lab.__exit__(None, None, None)

    # ------------------------------------------------------------------
    # Socket calls

    def start_call(self, call: Syscall, line: int, may_block: bool) -> None:
        handler = getattr(self, "_sys_" + call.name, None)
        if handler is None:
            raise ScriptError(f"socket call {call.name}() is not supported", line, self.path)
        args = self._prepare(call, line)
        scheduled = time.monotonic()

        def job() -> None:
            # A worker slow to wake is the runner's lateness, not the kernel's:
            # hold script time back by it, as advance() does.
            late = time.monotonic() - scheduled
            if late > 0.001:
                self.t0 += late
            self._busy = True
            try:
                res: CallResult | BaseException = handler(call, line, args)
            except OSError as exc:
                res = CallResult(-1, errno_mod.errorcode.get(exc.errno or 0, str(exc.errno)))
            except BaseException as exc:
                res = exc
            self._busy = False
            self._results.put((self.now(), res))

        self._calls.put(job)

    def _prepare(self, call: Syscall, line: int) -> object:
        return None

    def call_result(self, wait_until: float | None) -> tuple[float, CallResult] | None:
        timeout = None if wait_until is None else max(wait_until - self.now(), 0.0)
        try:
            t, res = self._results.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(res, BaseException):
            raise res
        return t, res

    def _c(self, expr: object, line: int) -> int:
        return const(expr, line, self.path)  # type: ignore[arg-type]

    def _sock(self, call: Syscall, line: int) -> socket.socket:
        fd = self._c(call.args[0], line) if call.args else -1
        sock = self.socks.get(fd)
        if sock is None:
            raise OSError(errno_mod.EBADF, "bad fd")
        return sock

    def _sys_socket(self, call: Syscall, line: int, _: object) -> CallResult:
        want = call.ret if isinstance(call.ret, int) and call.ret >= 0 else None
        sock = socket.socket(self.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        if self._cc_refused is not None and _netns_cc() == self._cc_refused:
            # The namespace could not take the default (see _work): ask per socket.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, DEFAULT_CC.encode())
        fd = want if want is not None else 3 + len(self.socks)
        if fd in self.socks:
            sock.close()
            raise ScriptError(f"fd {fd} is already open", line, self.path)
        self.socks[fd] = sock
        return CallResult(fd)

    def _sys_bind(self, call: Syscall, line: int, _: object) -> CallResult:
        self._sock(call, line).bind((self.local_addr, DEFAULT_BIND_PORT))
        return CallResult(0)

    def _sys_listen(self, call: Syscall, line: int, _: object) -> CallResult:
        backlog = self._c(call.args[1], line) if len(call.args) > 1 else 128
        self._sock(call, line).listen(backlog)
        return CallResult(0)

    def _sys_accept(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        fd, _addr = sock._accept()  # type: ignore[attr-defined]
        child = socket.socket(fileno=fd)
        want = call.ret if isinstance(call.ret, int) and call.ret >= 0 else None
        num = want if want is not None and want not in self.socks else 3 + len(self.socks)
        while num in self.socks:
            num += 1
        self.socks[num] = child
        self._under_test = child
        return CallResult(num)

    _sys_accept4 = _sys_accept

    def _sys_connect(self, call: Syscall, line: int, _: object) -> CallResult:
        self._under_test = sock = self._sock(call, line)
        err = sock.connect_ex((self.remote_addr, DEFAULT_BIND_PORT))
        if err:
            return CallResult(-1, errno_mod.errorcode.get(err, str(err)))
        return CallResult(0)

    def _sys_setsockopt(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        level, name = self._c(call.args[1], line), self._c(call.args[2], line)
        value = call.args[3]
        if isinstance(value, Struct):
            onoff = self._c(value.get("onoff") or 0, line)
            linger = self._c(value.get("linger") or 0, line)
            sock.setsockopt(level, name, struct.pack("ii", onoff, linger))
        else:
            sock.setsockopt(level, name, self._c(value, line))
        return CallResult(0)

    def _sys_getsockopt(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        level, name = self._c(call.args[1], line), self._c(call.args[2], line)
        value = sock.getsockopt(level, name)
        return self._out_value(call, 3, value, line)

    def _out_value(self, call: Syscall, index: int, value: int, line: int) -> CallResult:
        if len(call.args) > index and isinstance(call.args[index], Array):
            want = self._c(call.args[index], line)
            if want != value:
                return CallResult(0, None, f"wrote [{value}], script says [{want}]")
        return CallResult(0)

    def _sys_fcntl(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        cmd = self._c(call.args[1], line)
        if cmd == fcntl.F_SETFL:
            fcntl.fcntl(sock.fileno(), fcntl.F_SETFL, self._c(call.args[2], line))
            return CallResult(0)
        if cmd == fcntl.F_GETFL:
            return CallResult(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL))
        raise ScriptError(f"fcntl command {cmd} is not supported", line, self.path)

    def _sys_ioctl(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        req = self._c(call.args[1], line)
        if req not in (CONSTANTS["SIOCINQ"], CONSTANTS["SIOCOUTQ"]):
            raise ScriptError(f"ioctl request {req:#x} is not supported", line, self.path)
        raw = fcntl.ioctl(sock.fileno(), req, struct.pack("i", 0))
        return self._out_value(call, 2, struct.unpack("i", raw)[0], line)

    def _sys_write(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        return CallResult(os.write(sock.fileno(), bytes(self._c(call.args[2], line))))

    def _sys_send(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        flags = self._c(call.args[3], line) if len(call.args) > 3 else 0
        return CallResult(sock.send(bytes(self._c(call.args[2], line)), flags))

    _sys_sendto = _sys_send

    def _sys_writev(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        bufs = []
        iov = call.args[1] if len(call.args) > 1 else None
        if isinstance(iov, Array):
            for item in iov.items:
                if isinstance(item, Struct):
                    bufs.append(bytes(self._c(item.get("iov_len") or 0, line)))
        return CallResult(os.writev(sock.fileno(), bufs))

    def _sys_read(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        return CallResult(len(os.read(sock.fileno(), self._c(call.args[2], line))))

    def _sys_recv(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        flags = self._c(call.args[3], line) if len(call.args) > 3 else 0
        return CallResult(len(sock.recv(self._c(call.args[2], line), flags)))

    _sys_recvfrom = _sys_recv

    def _sys_shutdown(self, call: Syscall, line: int, _: object) -> CallResult:
        self._sock(call, line).shutdown(self._c(call.args[1], line))
        return CallResult(0)

    def _sys_close(self, call: Syscall, line: int, _: object) -> CallResult:
        sock = self._sock(call, line)
        fd = self._c(call.args[0], line)
        del self.socks[fd]
        sock.close()
        return CallResult(0)

    def _sys_poll(self, call: Syscall, line: int, _: object) -> CallResult:
        fds = call.args[0]
        if not isinstance(fds, Array):
            raise ScriptError("poll() takes [{fd=..., events=..., revents=...}]", line, self.path)
        p = select.poll()
        wanted: dict[int, tuple[Struct, int]] = {}
        for item in fds.items:
            if not isinstance(item, Struct):
                raise ScriptError("poll() takes [{fd=..., events=...}]", line, self.path)
            fd = self._c(item.get("fd") or 0, line)
            sock = self.socks.get(fd)
            real = sock.fileno() if sock is not None else 10_000 + fd
            p.register(real, self._c(item.get("events") or 0, line))
            wanted[real] = (item, fd)
        timeout = self._c(call.args[2], line) if len(call.args) > 2 else -1
        ready = p.poll(None if timeout < 0 else timeout)
        mismatch = None
        for real, revents in ready:
            item, _fd = wanted[real]
            want = item.get("revents")
            if want is not None and self._c(want, line) != revents:
                mismatch = f"revents {revents:#x}, script says {self._c(want, line):#x}"
        return CallResult(len(ready), None, mismatch)
