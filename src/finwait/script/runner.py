"""Run a parsed script against a target: the timing, the sequence-number
mapping and the comparison of segments, shared by both targets.

As packetdrill does: the script plays the remote TCP.  Its own sequence
numbers are absolute; the local stack's are written relative to the ISN it
chose (learned from its SYN or SYN,ACK), so an inbound ``ack`` and inbound
SACK blocks are shifted by that ISN and an outbound ``seq`` is compared
after subtracting it.  An inbound ``TS ecr`` that is not 0 carries the last
TSval the stack sent (what a real peer echoes); an outbound ``TS ecr`` is
compared exactly, its ``TS val`` only for presence.

A target (:mod:`.engine`, :mod:`.kernel`) provides time, injection, the
outbound segments with their times, and the socket calls.  Times are
seconds from the script's start.  Each outbound segment is compared with
the next ``>`` line: flags (SYN, RST, ACK, URG, FIN, ECE, CWR; PSH under
``--strict_segments``), seq, payload length, ack, and window, urgent
pointer and options when the line gives them; its time must be within
max(tolerance_usecs, tolerance_percent of the gap since the previous event)
of the scripted time.  Option layout (NOP padding, order) is not compared;
each option's presence and value is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..wire.segment import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, Segment, TcpOptions
from .model import (
    Code,
    Command,
    Event,
    Packet,
    Script,
    ScriptError,
    Syscall,
)
from .tcpinfo import AssertionFailed, Unsupported, run_block

MASK = 0xFFFFFFFF
LOCAL_V4, REMOTE_V4 = "198.18.0.1", "198.18.0.2"
LOCAL_V6, REMOTE_V6 = "2001:db8::1", "2001:db8::2"
DEFAULT_REMOTE_PORT = 48000  # the script's own port for connections it opens
DEFAULT_BIND_PORT = 8080  # packetdrill's --bind_port and --connect_port
ANY_TIME_WAIT = 30.0  # how long a "*" outbound line waits

_CHECKED_FLAGS = SYN | RST | ACK | URG | FIN | ECE | CWR
_FLAG_LETTERS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"), (CWR, "W"))


class Mismatch(Exception):
    """The stack did something else than the script says."""

    def __init__(self, line: int, message: str, expected: str = "", got: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.expected = expected
        self.got = got


@dataclass(frozen=True, slots=True)
class CallResult:
    """What a socket call returned: ``ret``, ``errno`` (a name or None), and
    a mismatch found in its output arguments (a ``[value]`` it wrote)."""

    ret: int
    errno: str | None = None
    out_mismatch: str | None = None


class Target(Protocol):
    name: str
    local_addr: str
    remote_addr: str

    def now(self) -> float: ...
    def advance(self, t: float) -> None: ...
    def inject(self, seg: Segment) -> None: ...
    def next_outbound(self, deadline: float) -> tuple[float, Segment] | None: ...
    def start_call(self, call: Syscall, line: int, may_block: bool) -> None: ...
    def call_result(self, wait_until: float | None) -> tuple[float, CallResult] | None: ...
    def run_command(self, text: str, line: int) -> None: ...

    def tcp_info(self) -> dict[str, int] | None: ...
    def close(self) -> None: ...


@dataclass
class Outcome:
    path: str
    target: str
    status: str  # PASS, FAIL, ERROR
    line: int | None = None
    message: str = ""
    expected: str = ""
    got: str = ""
    skipped: list[int] = field(default_factory=list)  # lines of %{ }% blocks
    events: int = 0
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        if self.status == "PASS":
            extra = f" ({len(self.skipped)} code block(s) skipped)" if self.skipped else ""
            return f"PASS {self.path} [{self.target}]{extra}"
        text = f"{self.status} {where} [{self.target}]: {self.message}"
        if self.expected or self.got:
            text += f"\n  expected: {self.expected}\n  got:      {self.got}"
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "target": self.target,
            "status": self.status,
            "line": self.line,
            "message": self.message,
            "expected": self.expected,
            "got": self.got,
            "skipped_code_lines": self.skipped,
            "events": self.events,
        }

    def json_line(self) -> str:
        return json.dumps(self.to_json())


def describe(flags: int, seq: int, length: int, ack: int | None, win: int | None,
             opts: TcpOptions | None) -> str:  # fmt: skip
    """A segment in the script's own notation."""
    letters = "".join(c for bit, c in _FLAG_LETTERS if flags & bit)
    if flags & ACK:
        letters += "."
    text = f"{letters or '-'} {seq}:{(seq + length) & MASK}({length})"
    if ack is not None and flags & ACK:
        text += f" ack {ack}"
    if win is not None:
        text += f" win {win}"
    if opts is not None and opts != TcpOptions():
        text += f" <{format_options(opts)}>"
    return text


def format_options(opts: TcpOptions) -> str:
    parts: list[str] = []
    if opts.mss is not None:
        parts.append(f"mss {opts.mss}")
    if opts.sack_permitted:
        parts.append("sackOK")
    if opts.timestamps is not None:
        parts.append(f"TS val {opts.timestamps[0]} ecr {opts.timestamps[1]}")
    if opts.wscale is not None:
        parts.append(f"wscale {opts.wscale}")
    if opts.sack_blocks:
        parts.append("sack " + " ".join(f"{a}:{b}" for a, b in opts.sack_blocks))
    parts.extend(f"kind {k}" for k, _ in opts.unknown)
    return ",".join(parts)


def _script_options(pkt: Packet) -> str:
    if pkt.options is None:
        return "<...>"
    parts = []
    for opt in pkt.options:
        if opt[0] == "sack":
            blocks = opt[1]
            assert isinstance(blocks, tuple)
            parts.append("sack " + " ".join(f"{a}:{b}" for a, b in blocks))
        elif opt[0] == "TS":
            parts.append(f"TS val {opt[1]} ecr {opt[2]}")
        else:
            parts.append(" ".join(str(x) for x in opt))
    return ",".join(parts)


def script_packet_text(pkt: Packet) -> str:
    text = f"{pkt.flags_text} {pkt.start}:{pkt.end}({pkt.length})"
    for key in ("ack", "win", "urg"):
        value = getattr(pkt, key)
        if value is not None:
            text += f" {key} {value}"
    if pkt.options != ():
        text += f" <{_script_options(pkt)}>"
    return text


class Runner:
    """One script on one target."""

    def __init__(
        self,
        script: Script,
        target: Target,
        log: Callable[[str], None] | None = None,
        min_tolerance: float = 0.0,
    ):
        self.script = script
        self.target = target
        self._log = log
        opt = script.option
        try:
            self.tol = max(int(opt("tolerance_usecs", "4000") or 0) / 1e6, min_tolerance)
            self.tol_pct = float(opt("tolerance_percent", "0") or 0)
        except ValueError as exc:
            raise ScriptError(f"bad tolerance option: {exc}", self._opt_line("tolerance"),
                              script.path) from None  # fmt: skip
        self.strict = opt("strict_segments") is not None
        self.local_isn: int | None = None
        self.local_port: int | None = None
        self.remote_port = DEFAULT_REMOTE_PORT
        self.bind_port = DEFAULT_BIND_PORT
        self.last_tsval: int | None = None
        self.last_time = 0.0
        self.outcome = Outcome(script.path, target.name, "PASS")
        # A blocking call under way: its event, when it started, when it must return.
        self.pending: tuple[Event, float, float] | None = None
        self._held: list[tuple[float, Segment]] = []  # read ahead while merging a burst
        self.code_names: dict[str, object] = {}  # what %{ }% blocks assign, block to block

    def _opt_line(self, prefix: str) -> int:
        for key, _, line in self.script.options:
            if key.startswith(prefix):
                return line
        return 0

    def log(self, line: int, t: float | None, text: str) -> None:
        """One event for ``-v``: script line, time (seconds), what happened."""
        when = "" if t is None else f"{t:.3f}"
        text = f"{line:>4} {when:>8}  {text}"
        self.outcome.log.append(text)
        if self._log is not None:
            self._log(text)

    # ------------------------------------------------------------------

    def run(self) -> Outcome:
        out = self.outcome
        try:
            if self.script.init_command is not None:
                self.target.run_command(self.script.init_command.text, self.script.init_line)
            for ev in self.script.events:
                self._event(ev)
                out.events += 1
            self._finish_pending(None)
            if self.script.cleanup_command is not None:
                self.target.run_command(self.script.cleanup_command.text, 0)
        except Mismatch as exc:
            out.status, out.line, out.message = "FAIL", exc.line, exc.message
            out.expected, out.got = exc.expected, exc.got
        except ScriptError as exc:
            out.status, out.line, out.message = "ERROR", exc.line, exc.message
        return out

    def _when(self, ev: Event) -> tuple[float | None, float | None]:
        """The earliest and latest scripted time of ``ev`` (None: any)."""
        ts = ev.time
        if ts.kind == "any":
            return None, None
        base = self.last_time if ts.kind == "rel" else 0.0
        lo = base + ts.start
        hi = lo
        if ts.until is not None:
            hi = (self.last_time if ts.until_rel else 0.0) + ts.until
            if ts.kind == "rel" and not ts.until_rel:
                hi = base + ts.until  # "+a~b": both from the previous event
        return lo, hi

    def _tolerance(self, t: float) -> float:
        gap = max(t - self.last_time, 0.0)
        return max(self.tol, self.tol_pct / 100.0 * gap)

    def _event(self, ev: Event) -> None:
        act = ev.action
        lo, hi = self._when(ev)
        if isinstance(act, Code):
            self._code(ev, act, lo)
            return
        if isinstance(act, Packet) and act.direction == ">":
            self._outbound(ev, act, lo, hi)
            return
        if isinstance(act, Syscall):
            self._finish_pending(ev)
        t = lo if lo is not None else self.target.now()
        self.target.advance(t)
        if isinstance(act, Packet):
            self._inbound(ev, act)
        elif isinstance(act, Command):
            self.target.run_command(act.text, ev.line)
        else:
            self._syscall(ev, act, t)
        self.last_time = t

    def _code(self, ev: Event, act: Code, lo: float | None) -> None:
        """A ``%{ }%`` block, at its time, on the connection's tcp_info
        (``tcpinfo.py``); one this runner cannot evaluate, or one naming a
        field the target does not report, is skipped and listed."""
        t = lo if lo is not None else self.target.now()
        self.target.advance(t)
        info = self.target.tcp_info()
        try:
            if info is None:
                raise Unsupported("no connection")
            run_block(act.text, info, self.code_names)
        except Unsupported as exc:
            self.outcome.skipped.append(ev.line)
            self.log(ev.line, t, f"%{{ }}% block skipped ({exc})")
        except AssertionFailed as exc:
            raise Mismatch(ev.line, "tcp_info assertion failed", act.text.strip(),
                           str(exc)) from None  # fmt: skip
        else:
            self.log(ev.line, t, "%{ }% block holds")
        self.last_time = t

    # ------------------------------------------------------------------
    # Segments

    def _inbound(self, ev: Event, pkt: Packet) -> None:
        tg = self.target
        if self.local_port is None:
            self.local_port = self.bind_port
        ack = pkt.ack or 0
        if pkt.flags & ACK and self.local_isn is not None:
            ack = (ack + self.local_isn) & MASK
        opts = self._inbound_options(ev, pkt)
        seg = Segment(
            tg.remote_addr, tg.local_addr, self.remote_port, self.local_port,
            pkt.start, ack, pkt.flags, 65535 if pkt.win is None else pkt.win,
            bytes(pkt.length), opts, pkt.urg or 0,
        )  # fmt: skip
        self.log(ev.line, tg.now(), "< " + script_packet_text(pkt))
        tg.inject(seg)

    def _inbound_options(self, ev: Event, pkt: Packet) -> TcpOptions:
        if pkt.options is None:
            raise ScriptError("<...> options on an inbound segment", ev.line, self.script.path)
        mss = wscale = None
        sack_ok = False
        ts: tuple[int, int] | None = None
        blocks: list[tuple[int, int]] = []
        isn = self.local_isn or 0
        for opt in pkt.options:
            kind = opt[0]
            if kind == "mss":
                mss = int(opt[1])  # type: ignore[call-overload]
            elif kind == "wscale":
                wscale = int(opt[1])  # type: ignore[call-overload]
            elif kind == "sackOK":
                sack_ok = True
            elif kind == "TS":
                val, ecr = int(opt[1]), int(opt[2])  # type: ignore[call-overload]
                if ecr and self.last_tsval is not None:
                    ecr = self.last_tsval
                ts = (val, ecr)
            elif kind == "sack":
                for a, b in opt[1]:  # type: ignore[attr-defined]
                    blocks.append(((a + isn) & MASK, (b + isn) & MASK))
        return TcpOptions(mss, wscale, sack_ok, ts, tuple(blocks))

    def _outbound(self, ev: Event, pkt: Packet, lo: float | None, hi: float | None) -> None:
        tg = self.target
        if lo is None or hi is None:
            deadline = tg.now() + ANY_TIME_WAIT
            tol = 0.0
        else:
            tol = self._tolerance(lo)
            deadline = hi + tol
        got = self._next_outbound(deadline)
        want = "> " + script_packet_text(pkt)
        when = "any time" if lo is None else f"{lo:.6f}"
        if got is None:
            raise Mismatch(ev.line, "expected segment not sent", f"{want} at {when}",
                           f"nothing by {deadline:.6f}")  # fmt: skip
        t, seg = got
        if seg.flags & SYN:
            self.local_isn = seg.seq
            self.local_port = seg.sport
            self.remote_port = seg.dport  # an active open chose the peer's port
        if seg.options.timestamps is not None:
            self.last_tsval = seg.options.timestamps[0]
        isn = self.local_isn or 0
        rel_seq = (seg.seq - isn) & MASK
        if seg.payload and len(seg.payload) < pkt.length and rel_seq == pkt.start:
            within = 0.0 if tg.name == "engine" else max(tol, 0.002)  # virtual time: same instant
            seg = self._coalesce(seg, t, pkt.length, within)
        got_text = "> " + describe(
            seg.flags, rel_seq, len(seg.payload), seg.ack, seg.window, seg.options
        ) + f" at {t:.6f}"  # fmt: skip
        self.log(ev.line, t, got_text.rsplit(" at ", 1)[0])
        problem = self._compare(pkt, seg, rel_seq)
        if problem is None and lo is not None and hi is not None:
            if t < lo - tol:
                problem = f"sent {lo - t:.6f} s early"
            elif t > hi + tol:
                problem = f"sent {t - hi:.6f} s late"
        if problem is not None:
            raise Mismatch(ev.line, problem, f"{want} at {when}", got_text)
        self.last_time = t if lo is None or lo != hi else lo

    def _next_outbound(self, deadline: float) -> tuple[float, Segment] | None:
        if self._held:
            return self._held.pop(0)
        return self.target.next_outbound(deadline)

    def _coalesce(self, seg: Segment, t: float, length: int, within: float) -> Segment:
        """One line for a burst, as packetdrill sees TSO: its TUN takes
        64 KB super-packets, so upstream scripts write ``P. 1:10001(10000)``
        for ten segments that leave together.  Contiguous data segments sent
        within the tolerance of the first are merged until the line's length
        is reached (the last may carry the FIN: ``FP. 13001:20001(7000)``);
        anything else is kept for the next line."""
        while len(seg.payload) < length:
            got = self._next_outbound(t + within)
            if got is None:
                break
            t2, nxt = got
            # The burst's last segment may carry the FIN (Linux's TSO packet does).
            same = (nxt.flags | PSH | FIN) == (seg.flags | PSH | FIN) and nxt.ack == seg.ack
            same = same and not seg.flags & FIN
            if not (nxt.payload and same and nxt.seq == (seg.seq + len(seg.payload)) & MASK
                    and t2 - t <= within):  # fmt: skip
                self._held.insert(0, got)
                break
            seg = seg._replace(payload=seg.payload + nxt.payload, flags=seg.flags | nxt.flags,
                               window=nxt.window)  # fmt: skip
        return seg

    def _compare(self, pkt: Packet, seg: Segment, rel_seq: int) -> str | None:
        mask = _CHECKED_FLAGS | (PSH if self.strict else 0)
        if (seg.flags ^ pkt.flags) & mask:
            return "TCP flags differ"
        if rel_seq != pkt.start:
            return "sequence number differs"
        if len(seg.payload) != pkt.length:
            return "payload length differs"
        if pkt.flags & ACK and pkt.ack is not None and seg.ack != pkt.ack:
            return "ack differs"
        if pkt.win is not None and seg.window != pkt.win:
            return "window differs"
        if pkt.urg is not None and seg.urgent != pkt.urg:
            return "urgent pointer differs"
        if pkt.options is not None:
            return _compare_options(pkt.options, seg.options)
        return None

    # ------------------------------------------------------------------
    # Socket calls

    def _syscall(self, ev: Event, call: Syscall, t: float) -> None:
        may_block = ev.time.block_end is not None
        self.target.start_call(call, ev.line, may_block)
        if may_block:
            bend = ev.time.block_end
            assert bend is not None
            base = self.last_time if ev.time.kind == "rel" or ev.time.block_end_rel else 0.0
            self.pending = (ev, t, base + bend)
            return
        # A call that is not scripted to block must return; a loaded machine
        # may take a while to run it, so wait up to a second before saying so.
        res = self.target.call_result(t + max(self.tol, 1.0))
        if res is None:
            raise Mismatch(ev.line, f"{call.name}() blocked", f"{ev.text}", "no return")
        self._check_call(ev, call, res[1], res[0])

    def _finish_pending(self, before: Event | None) -> None:
        if self.pending is None:
            return
        ev, start, end = self.pending
        self.pending = None
        call = ev.action
        assert isinstance(call, Syscall)
        # tolerance_percent counts from the call's start, not from the events
        # that ran while it blocked.
        tol = max(self.tol, self.tol_pct / 100.0 * max(end - start, 0.0))
        res = self.target.call_result(end + tol)
        if res is None:
            raise Mismatch(ev.line, f"{call.name}() still blocked at {end + tol:.6f}",
                           ev.text, "no return")  # fmt: skip
        t, result = res
        self._check_call(ev, call, result, t)
        if abs(t - end) > tol:
            raise Mismatch(ev.line, f"{call.name}() returned at {t:.6f}, not {end:.6f}",
                           ev.text, f"returned at {t:.6f}")  # fmt: skip

    def _check_call(self, ev: Event, call: Syscall, res: CallResult, t: float) -> None:
        got = f"= {res.ret}" + (f" {res.errno}" if res.errno else "")
        want_ret = call.ret
        want = f"= {want_ret}" + (f" {call.errno}" if call.errno else "")
        self.log(ev.line, t, f"{call.name}() {got}")
        if isinstance(want_ret, int) and (res.ret != want_ret or (call.errno or None) != res.errno):
            raise Mismatch(ev.line, f"{call.name}() returned differently", want, got)
        if res.out_mismatch:
            raise Mismatch(ev.line, f"{call.name}(): {res.out_mismatch}", ev.text, got)


def _compare_options(want: tuple[tuple[object, ...], ...], got: TcpOptions) -> str | None:
    exp_mss = exp_ws = None
    exp_sack_ok = False
    exp_ts: tuple[object, ...] | None = None
    exp_blocks: tuple[object, ...] = ()
    for opt in want:
        if opt[0] == "mss":
            exp_mss = opt[1]
        elif opt[0] == "wscale":
            exp_ws = opt[1]
        elif opt[0] == "sackOK":
            exp_sack_ok = True
        elif opt[0] == "TS":
            exp_ts = opt
        elif opt[0] == "sack":
            exp_blocks = opt[1]  # type: ignore[assignment]
    if got.mss != exp_mss:
        return "mss option differs"
    if got.wscale != exp_ws:
        return "wscale option differs"
    if got.sack_permitted != exp_sack_ok:
        return "sackOK option differs"
    if (got.timestamps is None) != (exp_ts is None):
        return "timestamp option differs"
    if exp_ts is not None and got.timestamps is not None and got.timestamps[1] != exp_ts[2]:
        return "TS ecr differs"
    if tuple(got.sack_blocks) != tuple(exp_blocks):
        return "SACK blocks differ"
    if got.unknown:
        return "unexpected option kinds " + ",".join(str(k) for k, _ in got.unknown)
    return None
