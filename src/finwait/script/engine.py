"""The engine target: a script against finwait's sans-IO Host in virtual time.

Time is the script's own: nothing sleeps, the Host's timers fire at their
deadlines as the clock is moved to each event, so a script that spans
minutes of retransmission timeouts runs in milliseconds and the same way
every time.  The socket calls are mapped onto the Host and Connection API
(:class:`Sockets`): ``listen``/``accept`` on a Listener, ``connect``,
``write``/``read`` as ``send``/``recv``, ``shutdown(SHUT_WR)`` as CLOSE,
``close()`` as Linux's close (read no more: unread data resets), SO_LINGER
with a zero timeout as ABORT, and errors reported with Linux's errno.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..host import Host, Listener
from ..tcp.config import Config
from ..tcp.connection import Connection, TcpError
from ..tcp.events import Reset, TimedOut
from ..tcp.state import State
from ..wire.segment import Segment
from .model import Array, BitOr, Ellipsis_, Expr, ScriptError, Struct, Symbol, Syscall
from .runner import (
    DEFAULT_BIND_PORT,
    LOCAL_V4,
    LOCAL_V6,
    REMOTE_V4,
    REMOTE_V6,
    CallResult,
)
from .sndbuf import SendQueue, size_goal, tso_piece, writable
from .tcpinfo import engine_tcp_info

# Linux's values, so that scripts may write either the name or the number.
CONSTANTS: dict[str, int] = {
    "AF_INET": 2, "AF_INET6": 10, "SOCK_STREAM": 1, "IPPROTO_TCP": 6, "IPPROTO_IP": 0,
    "SOL_SOCKET": 1, "SOL_TCP": 6, "SO_REUSEADDR": 2, "SO_ERROR": 4, "SO_SNDBUF": 7,
    "SO_RCVBUF": 8, "SO_KEEPALIVE": 9, "SO_LINGER": 13, "SO_REUSEPORT": 15,
    "TCP_NODELAY": 1, "TCP_MAXSEG": 2, "TCP_CORK": 3, "TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 5,
    "TCP_KEEPCNT": 6, "TCP_LINGER2": 8, "TCP_QUICKACK": 12, "TCP_USER_TIMEOUT": 18,
    "TCP_CONGESTION": 13,
    "SOL_IP": 0, "IP_TOS": 1, "IP_TTL": 2, "IP_MTU_DISCOVER": 10, "IP_PMTUDISC_DONT": 0,
    "IP_PMTUDISC_WANT": 1, "IP_PMTUDISC_DO": 2, "SOL_IPV6": 41, "IPV6_TCLASS": 67,
    "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2,
    "F_GETFL": 3, "F_SETFL": 4, "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_NONBLOCK": 0o4000,
    "SIOCINQ": 0x541B, "FIONREAD": 0x541B, "SIOCOUTQ": 0x5411, "TIOCOUTQ": 0x5411,
    "SIOCOUTQNSD": 0x894B,
    "POLLIN": 0x1, "POLLPRI": 0x2, "POLLOUT": 0x4, "POLLERR": 0x8, "POLLHUP": 0x10,
    "POLLNVAL": 0x20, "POLLRDNORM": 0x40, "POLLRDBAND": 0x80, "POLLWRNORM": 0x100,
    "POLLRDHUP": 0x2000,
    "MSG_DONTWAIT": 0x40, "MSG_PEEK": 0x2, "MSG_WAITALL": 0x100,
    "EPIPE": 32, "EAGAIN": 11, "EINPROGRESS": 115, "ECONNRESET": 104, "ENOTCONN": 107,
    "ECONNREFUSED": 111, "ETIMEDOUT": 110, "EALREADY": 114, "EISCONN": 106,
}  # fmt: skip


SOCK_MIN_RCVBUF = 2304  # Linux: 2 * (2048 + sizeof(struct sk_buff)), rounded
SOCK_MIN_SNDBUF = 4608


def linux_receive_space(value: int, mss: int) -> int:
    """The receive window Linux opens for ``setsockopt(SO_RCVBUF, value)``:
    the buffer is doubled (at least SOCK_MIN_RCVBUF), half of it is window
    (``tcp_win_from_space()``), rounded down to whole segments of our MSS
    when it holds one (``tcp_select_initial_window()``).  Measured on Linux
    6.18: 1024 -> 1152, 2048 -> 1460, 4096 -> 2920, 16384 -> 16060."""
    space = max(2 * value, SOCK_MIN_RCVBUF) // 2
    return space - space % mss if space >= mss else space


def const(expr: Expr, line: int, path: str) -> int:
    """An integer argument: a number, a known name, or ``A|B``."""
    if isinstance(expr, bool):
        return int(expr)
    if isinstance(expr, int):
        return expr
    if isinstance(expr, Symbol):
        if expr.name in CONSTANTS:
            return CONSTANTS[expr.name]
        raise ScriptError(f"unknown symbol {expr.name}", line, path)
    if isinstance(expr, BitOr):
        v = 0
        for item in expr.items:
            v |= const(item, line, path)
        return v
    if isinstance(expr, Array) and len(expr.items) == 1:
        return const(expr.items[0], line, path)
    raise ScriptError(f"expected a number, got {expr!r}", line, path)


# A script's shell commands may choose the kernel's congestion control; the
# engine runs its counterpart (the Linux profile's as Linux counts in slow
# start, the RFC profile's as RFC 5681 does).
# net.ipv4.tcp_min_tso_segs (sysctl, or packetdrill's set_sysctls.py /proc/...=N).
_MIN_TSO_SYSCTL = re.compile(r"tcp_min_tso_segs\s*=\s*[\"']?(\d+)")
_CC_SYSCTL = re.compile(
    r"net[./]ipv4[./]tcp_congestion_control\s*=\s*[\"']?(\w+)"
    r"|echo\s+[\"']?(\w+)[\"']?\s*>\s*/proc/sys/net/ipv4/tcp_congestion_control"
)
# Queueing disciplines (tc commands) are a property of the virtual device.
# The engine models two: a pfifo of limit 0, which takes no packet (every
# transmission fails, LX-18), and fq with its defaults, which paces each
# connection (CC-16); deleting the root qdisc restores the default.  Any
# other tc command (fq with options included) is an error naming it.
_SHELL_SPLIT = re.compile(r"\n|;|&&|\|\|")
_REDIRECT = re.compile(r"\s*\d?>\s*/dev/null")
_TC_DROP_ALL = re.compile(r"tc\s+qdisc\s+(?:add|replace)\s+dev\s+\S+\s+root\s+pfifo\s+limit\s+0")
_TC_FQ = re.compile(r"tc\s+qdisc\s+(?:add|replace)\s+dev\s+\S+\s+root\s+fq")
_PACING_SYSCTL = re.compile(r"tcp_pacing_(ss|ca)_ratio\s*=\s*[\"']?(\d+)")
_TC_DELETE = re.compile(r"tc\s+qdisc\s+(?:del|delete)\s+dev\s+\S+\s+root")
_CC_NAMES = {
    ("linux", "reno"): "newreno-abc",
    ("linux", "cubic"): "cubic-linux",
    ("rfc", "reno"): "newreno",
    ("rfc", "cubic"): "cubic",
}


def script_config(profile: str = "linux") -> Config:
    """The engine configuration scripts run with.  ``linux`` (the default):
    the Linux profile, offering the window scale Linux picks for
    packetdrill's tcp_rmem maximum of 15 MB (8); ``rfc``: finwait's
    defaults."""
    if profile == "rfc":
        return Config()
    if profile == "linux":
        return Config.linux(window_scale=8)
    raise ValueError(f"unknown profile {profile!r}")


@dataclass(eq=False)
class Sock:
    fd: int
    config: Config
    nonblock: bool = False
    bound: bool = False
    listener: Listener | None = None
    conn: Connection | None = None
    error: str | None = None  # pending error (Linux sk_err)
    shut_rd: bool = False
    shut_wr: bool = False
    linger: tuple[int, int] | None = None
    reset_seen: bool = False  # a reset was reported once: later writes get EPIPE
    written: int = 0  # bytes a blocking write has queued so far
    sendq: SendQueue | None = None  # Linux's accounting, once SO_SNDBUF is set
    opts: dict[tuple[int, int], int] = field(default_factory=dict)


class _Blocked(Exception):
    """The call cannot complete now."""


class EngineTarget:
    name = "engine"

    def __init__(
        self, path: str = "", ipv6: bool = False, config: Config | None = None,
        profile: str = "linux",
    ) -> None:  # fmt: skip
        self.path = path
        self.local_addr = LOCAL_V6 if ipv6 else LOCAL_V4
        self.remote_addr = REMOTE_V6 if ipv6 else REMOTE_V4
        self.profile = profile
        self.base_config = config or script_config(profile)
        self.min_tso_segs = 2  # net.ipv4.tcp_min_tso_segs
        self.under_test: Connection | None = None  # whose tcp_info %{ }% blocks see
        self.host = Host([self.local_addr], self.base_config, syncookies=True)
        self.t = 0.0
        self.out: deque[tuple[float, Segment]] = deque()
        self.socks: dict[int, Sock] = {}
        self.by_conn: dict[Connection, Sock] = {}
        self.pending: tuple[Callable[[], CallResult], float | None] | None = None
        self.pending_until: float | None = None
        self.done: tuple[float, CallResult] | None = None
        self.record: list[tuple[float, Segment, bool]] = []  # (t, seg, inbound) for --pcap

    # ------------------------------------------------------------------
    # Time and segments

    def now(self) -> float:
        return self.t

    def _drain(self) -> None:
        for seg in self.host.take_segments():
            self.out.append((self.t, seg))
            self.record.append((self.t, seg, False))
        for conn, ev in self.host.take_events():
            sock = self.by_conn.get(conn)
            if sock is None:
                continue
            if isinstance(ev, Reset) and not ev.local:
                sock.error = "ECONNREFUSED" if ev.refused else "ECONNRESET"
            elif isinstance(ev, TimedOut):
                sock.error = "ETIMEDOUT"
        self._poll_pending()

    def _step_timers(self, t: float, stop_on_output: bool) -> None:
        host = self.host
        while True:
            d = host.next_deadline()
            if d is None or d > t:
                break
            self.t = max(self.t, d)
            host.on_timer(self.t)
            self._drain()
            if stop_on_output and self.out:
                return
            if self.pending is not None and self.pending[1] is not None and self.pending[1] <= t:
                self._expire_pending()
        if self.pending is not None and self.pending[1] is not None and self.pending[1] <= t:
            self.t = max(self.t, self.pending[1])
            self._expire_pending()
        if not (stop_on_output and self.out):
            self.t = max(self.t, t)

    def advance(self, t: float) -> None:
        self._step_timers(t, stop_on_output=False)

    def inject(self, seg: Segment) -> None:
        self.record.append((self.t, seg, True))
        self.host.receive(seg, self.t)
        self._drain()

    def next_outbound(self, deadline: float) -> tuple[float, Segment] | None:
        if not self.out:
            self._step_timers(deadline, stop_on_output=True)
        return self.out.popleft() if self.out else None

    def run_command(self, text: str, line: int) -> None:
        """Shell commands configure a kernel; the engine follows the one
        setting it models, the congestion-control algorithm (``sysctl
        net.ipv4.tcp_congestion_control=reno``, or the same through /proc),
        for the sockets made after it.  The rest is the kernel's."""
        for part in _SHELL_SPLIT.split(text):
            cmd = _REDIRECT.sub("", part).strip()
            if cmd.split()[:1] == ["tc"]:
                self._run_tc(cmd, line)
        for m in _PACING_SYSCTL.finditer(text):
            ratio = int(m.group(2))
            if m.group(1) == "ss":
                self.base_config = replace(self.base_config, pacing_ss_ratio=ratio)
            else:
                self.base_config = replace(self.base_config, pacing_ca_ratio=ratio)
        for m in _MIN_TSO_SYSCTL.finditer(text):
            self.min_tso_segs = max(int(m.group(1)), 1)  # the TSO piece (sndbuf.py)
            self.base_config = replace(self.base_config, pacing_min_segs=self.min_tso_segs)
        for m in _CC_SYSCTL.finditer(text):
            name = m.group(1) or m.group(2)
            algo = _CC_NAMES.get((self.profile, name))
            if algo is None:
                raise ScriptError(f"congestion control {name!r} is not modelled by the engine",
                                  line, self.path)  # fmt: skip
            self.base_config = replace(self.base_config, congestion_control=algo)
            for sock in self.socks.values():
                if sock.conn is None and sock.listener is None:
                    sock.config = replace(sock.config, congestion_control=algo)

    def _run_tc(self, cmd: str, line: int) -> None:
        """A ``tc`` command: the device's queueing discipline.  ``pfifo
        limit 0`` takes no packet (``Host.device_drops``, LX-18), ``fq``
        paces (``Host.device_paces``, CC-16); deleting the root qdisc brings
        the default back."""
        host = self.host
        if _TC_DROP_ALL.fullmatch(cmd):
            host.device_drops, host.device_paces = True, False
        elif _TC_FQ.fullmatch(cmd):
            host.device_drops, host.device_paces = False, True
        elif _TC_DELETE.fullmatch(cmd):
            host.device_drops = host.device_paces = False
        else:
            raise ScriptError(f"shell command {cmd!r} changes what the kernel's device does "
                              "in a way the engine target does not model", line, self.path)  # fmt: skip

    def close(self) -> None:
        pass

    def tcp_info(self) -> dict[str, int] | None:
        """``struct tcp_info`` of the connection under test (the last one
        accepted or connected): the fields the engine keeps (tcpinfo.py)."""
        conn = self.under_test
        return None if conn is None else engine_tcp_info(conn)

    # ------------------------------------------------------------------
    # Socket calls

    def start_call(self, call: Syscall, line: int, may_block: bool) -> None:
        self.done = None
        handler = getattr(self, "_sys_" + call.name, None)
        if handler is None:
            raise ScriptError(f"socket call {call.name}() is not supported", line, self.path)

        def attempt() -> CallResult:
            result: CallResult = handler(call, line)
            return result

        self.pending = (attempt, None)
        if call.name == "poll" and len(call.args) >= 3:
            timeout = const(call.args[2], line, self.path)
            if timeout >= 0:
                self.pending = (attempt, self.t + timeout / 1000.0)
        self._poll_pending()

    def _poll_pending(self) -> None:
        if self.pending is None:
            return
        pending, self.pending = self.pending, None  # no re-entry from the call's own drain
        try:
            res = pending[0]()
        except _Blocked:
            if self.done is None:
                self.pending = pending
            return
        self.done = (self.t, res)
        self._drain()

    def _expire_pending(self) -> None:
        """A poll() whose timeout passed: it returns 0."""
        self.pending = None
        self.done = (self.t, CallResult(0))

    def call_result(self, wait_until: float | None) -> tuple[float, CallResult] | None:
        if self.done is None and self.pending is not None and wait_until is not None:
            self._step_timers(wait_until, stop_on_output=False)
        if self.done is None:
            return None
        done, self.done = self.done, None
        return done

    def _sock(self, call: Syscall, line: int) -> Sock:
        fd = const(call.args[0], line, self.path) if call.args else -1
        sock = self.socks.get(fd)
        if sock is None:
            raise _Fail("EBADF")
        return sock

    # Each _sys_X returns a CallResult, raises _Blocked, or raises _Fail(errno).

    def _sys_socket(self, call: Syscall, line: int) -> CallResult:
        fd = call.ret if isinstance(call.ret, int) and call.ret >= 0 else self._free_fd()
        if fd in self.socks:
            raise ScriptError(f"fd {fd} is already open", line, self.path)
        self.socks[fd] = Sock(fd, self.base_config)
        return CallResult(fd)

    def _free_fd(self) -> int:
        fd = 3
        while fd in self.socks:
            fd += 1
        return fd

    def _sys_bind(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        sock.bound = True
        return CallResult(0)

    def _sys_listen(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        backlog = const(call.args[1], line, self.path) if len(call.args) > 1 else 128
        self.host.config = sock.config  # children of this listener take its options
        sock.listener = self.host.listen(DEFAULT_BIND_PORT, backlog=max(backlog, 0) + 1)
        return CallResult(0)

    def _sys_accept(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        lst = sock.listener
        if lst is None:
            raise _Fail("EINVAL")
        conn = lst.accept()
        if conn is None:
            if sock.nonblock:
                raise _Fail("EAGAIN")
            raise _Blocked
        want = call.ret
        fd = want if isinstance(want, int) and want >= 0 and want not in self.socks else None
        fd = self._free_fd() if fd is None else fd
        child = Sock(fd, sock.config, conn=conn)
        if sock.sendq is not None:  # SO_SNDBUF is inherited
            child.sendq = SendQueue(sock.sendq.sndbuf)
        self.socks[fd] = child
        self.by_conn[conn] = child
        self.under_test = conn
        if conn.state is State.CLOSED:
            child.error = "ECONNRESET" if conn.reset_received else None
        return CallResult(fd)

    _sys_accept4 = _sys_accept

    def _sys_connect(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        conn = sock.conn
        if conn is None:
            saved = self.host.config
            self.host.config = sock.config
            try:
                conn = self.host.connect(self.remote_addr, DEFAULT_BIND_PORT, self.t)
            finally:
                self.host.config = saved
            sock.conn = conn
            self.by_conn[conn] = sock
            self.under_test = conn
            self._drain()
            if sock.nonblock:
                raise _Fail("EINPROGRESS")
        if sock.error is not None:
            err, sock.error = sock.error, None
            raise _Fail(err)
        if conn.state is State.SYN_SENT or conn.state is State.SYN_RECEIVED:
            if sock.nonblock:
                raise _Fail("EALREADY")
            raise _Blocked
        if sock.nonblock and not getattr(sock, "_connect_reported", False):
            sock._connect_reported = True  # type: ignore[attr-defined]
            raise _Fail("EISCONN")
        return CallResult(0)

    def _sys_setsockopt(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        level = const(call.args[1], line, self.path)
        name = const(call.args[2], line, self.path)
        value = call.args[3]
        cfg = sock.config
        if (level, name) == (1, 13):  # SO_LINGER
            if not isinstance(value, Struct):
                raise ScriptError("SO_LINGER takes {onoff=..., linger=...}", line, self.path)
            onoff = const(value.get("onoff") or 0, line, self.path)
            linger = const(value.get("linger") or 0, line, self.path)
            sock.linger = (onoff, linger) if onoff else None
            return CallResult(0)
        v = const(value, line, self.path)
        sock.opts[(level, name)] = v
        if (level, name) == (6, 1):  # TCP_NODELAY
            cfg = replace(cfg, nagle=not v)
        elif (level, name) == (6, 18):  # TCP_USER_TIMEOUT, milliseconds
            cfg = replace(cfg, user_timeout=v / 1000.0 if v > 0 else None)
        elif (level, name) == (6, 8):  # TCP_LINGER2, seconds
            cfg = replace(cfg, fin_wait_2_timeout=float(v) if v > 0 else cfg.fin_wait_2_timeout)
        elif (level, name) == (6, 2):  # TCP_MAXSEG
            cfg = replace(cfg, mss=max(v, 88))
        elif (level, name) == (1, 8):  # SO_RCVBUF
            cfg = replace(cfg, recv_buffer=linux_receive_space(v, cfg.mss))
        elif (level, name) == (1, 7):  # SO_SNDBUF
            cfg = replace(cfg, send_buffer=max(2 * v, SOCK_MIN_SNDBUF))
            sock.sendq = SendQueue(cfg.send_buffer)
        elif (level, name) == (1, 9):  # SO_KEEPALIVE
            cfg = replace(cfg, keepalive=7200.0 if v else None)
        elif (level, name) == (6, 4):  # TCP_KEEPIDLE
            cfg = replace(cfg, keepalive=float(v))
        sock.config = cfg
        if sock.conn is not None:
            sock.conn.config = cfg
        return CallResult(0)

    def _sys_getsockopt(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        level = const(call.args[1], line, self.path)
        name = const(call.args[2], line, self.path)
        if (level, name) == (1, 4):  # SO_ERROR
            err, sock.error = sock.error, None
            value = CONSTANTS.get(err, 0) if err else 0
        elif (level, name) == (1, 8) and (level, name) in sock.opts:  # Linux doubles it
            value = max(2 * sock.opts[(level, name)], SOCK_MIN_RCVBUF)
        elif (level, name) == (1, 7) and (level, name) in sock.opts:
            value = max(2 * sock.opts[(level, name)], SOCK_MIN_SNDBUF)
        elif (level, name) in sock.opts:
            value = sock.opts[(level, name)]
        elif (level, name) == (6, 2) and sock.conn is not None:
            value = sock.conn.smss
        else:
            raise ScriptError(f"getsockopt level {level} name {name} is not supported",
                              line, self.path)  # fmt: skip
        return self._out_value(call, 3, value, line)

    def _out_value(self, call: Syscall, index: int, value: int, line: int) -> CallResult:
        if len(call.args) > index and isinstance(call.args[index], Array):
            want = const(call.args[index], line, self.path)
            if want != value:
                return CallResult(0, None, f"wrote [{value}], script says [{want}]")
        return CallResult(0)

    def _sys_fcntl(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        cmd = const(call.args[1], line, self.path)
        if cmd == 4:  # F_SETFL
            sock.nonblock = bool(const(call.args[2], line, self.path) & 0o4000)
            return CallResult(0)
        if cmd == 3:  # F_GETFL
            return CallResult(2 | (0o4000 if sock.nonblock else 0))
        raise ScriptError(f"fcntl command {cmd} is not supported", line, self.path)

    def _sys_ioctl(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        req = const(call.args[1], line, self.path)
        conn = sock.conn
        if req == 0x541B:  # SIOCINQ
            value = conn.readable if conn is not None else 0
        elif req == 0x5411:  # SIOCOUTQ: bytes not yet acknowledged
            value = conn.unacked if conn is not None and conn.state is not State.CLOSED else 0
        else:
            raise ScriptError(f"ioctl request {req:#x} is not supported", line, self.path)
        return self._out_value(call, 2, value, line)

    def _conn_for_io(self, sock: Sock) -> Connection:
        if sock.conn is None:
            raise _Fail("ENOTCONN")
        return sock.conn

    def _sys_write(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        n = const(call.args[2], line, self.path) if len(call.args) > 2 else 0
        return self._send(sock, n)

    def _sys_send(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        n = const(call.args[2], line, self.path)
        return self._send(sock, n)

    _sys_sendto = _sys_send

    def _sys_writev(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        total = 0
        iov = call.args[1] if len(call.args) > 1 else None
        if isinstance(iov, Array):
            for item in iov.items:
                if isinstance(item, Struct):
                    total += const(item.get("iov_len") or 0, line, self.path)
        return self._send(sock, total)

    def _send(self, sock: Sock, n: int) -> CallResult:
        """A blocking write returns once all ``n`` bytes are queued, as
        Linux's tcp_sendmsg() waits for room (``sk_stream_wait_memory()``);
        a non-blocking one queues what fits."""
        done = sock.written
        try:
            res = self._send_some(sock, n - done)
        except _Fail:
            sock.written = 0
            if done:
                return CallResult(done)  # what was queued before the error
            raise
        done += res.ret
        if done < n and not sock.nonblock:
            sock.written = done
            raise _Blocked
        sock.written = 0
        return CallResult(done)

    def _send_some(self, sock: Sock, n: int) -> CallResult:
        if sock.error is not None:
            err, sock.error = sock.error, None
            sock.reset_seen = True
            raise _Fail(err)
        conn = sock.conn
        if conn is None:
            raise _Fail("EPIPE" if sock.bound or sock.listener else "ENOTCONN")
        if sock.shut_wr or conn.state is State.CLOSED or not conn.state.can_send:
            if conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
                raise _Blocked if not sock.nonblock else _Fail("EAGAIN")
            raise _Fail("EPIPE")
        try:
            sent = self._queue(sock, conn, n)
        except TcpError:
            raise _Fail("EPIPE") from None
        if sent == 0 and n > 0:
            if sock.nonblock:
                raise _Fail("EAGAIN")
            raise _Blocked
        return CallResult(sent)

    def _queue(self, sock: Sock, conn: Connection, n: int) -> int:
        """Queue up to ``n`` bytes on ``conn``: under SO_SNDBUF as Linux
        does (``sndbuf.py``), else as much as ``Config.send_buffer`` takes."""
        q = sock.sendq
        if q is None:
            sent = conn.send(bytes(n), self.t)
            self._drain()
            return sent
        unsent = (conn._snd_base + len(conn._sndbuf) - conn.snd_nxt) & 0xFFFFFFFF
        unsent = unsent if unsent < 0x80000000 else 0  # past the data: the FIN
        cc, rtt, mss = conn.cc, conn.rtt, conn.smss
        flight = (conn.snd_nxt - conn.snd_una) & 0xFFFFFFFF
        room = max(min(cc.cwnd, conn.snd_wnd) - flight, 0)
        piece = tso_piece(mss, cc.cwnd, cc.ssthresh, rtt.srtt, rtt.min_rtt, self.min_tso_segs)
        goal = size_goal(mss, conn.max_snd_wnd)
        k = q.fill(n, conn.unacked, unsent, room, goal, piece, conn.max_snd_wnd >> 1)
        if k <= 0:
            return 0
        if conn.config.send_buffer < conn.unacked + k:  # the engine's own limit
            conn.config = replace(conn.config, send_buffer=conn.unacked + k)
        sent = conn.send(bytes(k), self.t)
        self._drain()
        if sock.nonblock:
            q.asleep = False  # no sleeper: the next write tests for room afresh
        return sent

    def _sys_read(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        n = const(call.args[2], line, self.path) if len(call.args) > 2 else 0
        return self._recv(sock, n, nonblock=sock.nonblock)

    def _sys_recv(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        n = const(call.args[2], line, self.path)
        flags = const(call.args[3], line, self.path) if len(call.args) > 3 else 0
        return self._recv(sock, n, nonblock=sock.nonblock or bool(flags & 0x40))

    _sys_recvfrom = _sys_recv

    def _recv(self, sock: Sock, n: int, nonblock: bool) -> CallResult:
        conn = sock.conn
        if conn is None:
            raise _Fail("ENOTCONN")
        if conn.readable:
            data = conn.recv(n, self.t)
            self._drain()
            return CallResult(len(data))
        if sock.error is not None:
            err, sock.error = sock.error, None
            sock.reset_seen = True
            raise _Fail(err)
        if sock.shut_rd or conn.peer_fin or conn.state is State.CLOSED:
            return CallResult(0)
        if conn.state in (State.SYN_SENT,) and not nonblock:
            raise _Blocked
        if nonblock:
            raise _Fail("EAGAIN")
        raise _Blocked

    def _sys_shutdown(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        how = const(call.args[1], line, self.path)
        conn = sock.conn
        if conn is None or conn.state in (State.CLOSED, State.SYN_SENT, State.TIME_WAIT):
            raise _Fail("ENOTCONN")  # Linux: a socket in TIME-WAIT is detached (CLOSE)
        if how in (0, 2):
            sock.shut_rd = True
        if how in (1, 2) and not sock.shut_wr:
            sock.shut_wr = True
            with contextlib.suppress(TcpError):
                conn.close(self.t)
            self._drain()
        return CallResult(0)

    def _sys_close(self, call: Syscall, line: int) -> CallResult:
        sock = self._sock(call, line)
        del self.socks[sock.fd]
        if sock.listener is not None:
            self.host.unlisten(sock.listener, self.t)
        conn = sock.conn
        # TIME-WAIT outlives the socket (Linux's timewait sock): left alone.
        if conn is not None and conn.state not in (State.CLOSED, State.TIME_WAIT):
            try:
                if sock.linger is not None and sock.linger[1] == 0:
                    conn.abort(self.t)  # SO_LINGER {1, 0}: RST (Linux tcp_close)
                else:
                    conn.close(self.t, discard=True)
            except TcpError:
                pass
        self._drain()
        return CallResult(0)

    def _sys_poll(self, call: Syscall, line: int) -> CallResult:
        fds = call.args[0]
        if not isinstance(fds, Array):
            raise ScriptError("poll() takes [{fd=..., events=..., revents=...}]", line, self.path)
        ready = 0
        mismatch: str | None = None
        results = []
        for item in fds.items:
            if not isinstance(item, Struct):
                raise ScriptError("poll() takes [{fd=..., events=...}]", line, self.path)
            fd = const(item.get("fd") or 0, line, self.path)
            events = const(item.get("events") or 0, line, self.path)
            revents = self._revents(self.socks.get(fd)) & (events | 0x8 | 0x10 | 0x20)
            results.append((item, revents))
            if revents:
                ready += 1
        if not ready:
            raise _Blocked
        for item, revents in results:
            want = item.get("revents")
            if want is not None and const(want, line, self.path) != revents:
                mismatch = f"revents {revents:#x}, script says {const(want, line, self.path):#x}"
        return CallResult(ready, None, mismatch)

    def _revents(self, sock: Sock | None) -> int:
        if sock is None:
            return 0x20  # POLLNVAL
        if sock.listener is not None:
            return 0x1 | 0x40 if sock.listener.accept_queue else 0
        conn = sock.conn
        if conn is None:
            return 0x4 | 0x10  # Linux: an unconnected socket is POLLOUT|POLLHUP
        ev = 0
        if conn.readable:
            ev |= 0x1 | 0x40
        if sock.error is not None:
            ev |= 0x8
        st = conn.state
        if st is State.CLOSED or (sock.shut_wr and (conn.peer_fin or sock.shut_rd)):
            ev |= 0x10
        if conn.peer_fin or sock.shut_rd or st is State.CLOSED:
            ev |= 0x1 | 0x40 | 0x2000
        room = (
            conn.send_space > 0
            if sock.sendq is None
            else conn.state.can_send and writable(sock.sendq.sndbuf, conn.unacked)
        )
        if st.synchronized and st is not State.CLOSED and room and not sock.shut_wr:
            ev |= 0x4 | 0x100
        if st is State.CLOSED and conn.reset_received:
            ev |= 0x4 | 0x100
        return ev


class _Fail(Exception):
    """A socket call that returns -1 with ``errno``."""

    def __init__(self, errno: str) -> None:
        super().__init__(errno)
        self.errno = errno


def _wrap(fn: Callable[[EngineTarget, Syscall, int], CallResult]) -> Callable[..., CallResult]:
    def call(self: EngineTarget, c: Syscall, line: int) -> CallResult:
        try:
            return fn(self, c, line)
        except _Fail as f:
            return CallResult(-1, f.errno)

    return call


for _name in list(vars(EngineTarget)):
    if _name.startswith("_sys_"):
        setattr(EngineTarget, _name, _wrap(getattr(EngineTarget, _name)))

del _name
__all__ = ["CONSTANTS", "Ellipsis_", "EngineTarget", "const", "script_config"]
