"""The close behaviours of ``finwait serve`` and ``finwait connect``, as
coroutines on the streams API, and the summary they print.

Owns the scripted peers that drive a release on purpose: close first
(half-close with ``write_eof``, then read on until the peer's FIN, the seed's
server B), close after the peer's EOF (the seed's host A), echo, and abort
(RST).  Each returns a :class:`Outcome` with byte counts, SHA-256 of both
streams, the final state, counters and the connection's Trace.  Read RFC 9293
§3.6 (closing a connection) and the seed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..render.rows import hostport
from ..tcp import seqnum
from ..tcp.state import State
from ..trace import Trace
from ..wire.segment import ACK, FIN, SYN
from .streams import LOCAL, REMOTE, StreamReader, StreamWriter

T = TypeVar("T")

CLOSE_FIRST = "first"
CLOSE_AFTER_EOF = "after-eof"
_RELEASED = (State.TIME_WAIT, State.CLOSED)


def pattern(n: int, offset: int = 0) -> bytes:
    """``n`` bytes of a fixed, recognisable pattern (for SHA-256 checks)."""
    alphabet = b"finwait-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz\n"
    reps = (offset + n) // len(alphabet) + 1
    return (alphabet * reps)[offset : offset + n]


def release_phases(trace: Trace) -> dict[str, int]:
    """Bytes of each direction by phase of the release, from the sequence
    numbers of the recorded segments (each byte counted once, when first
    seen; retransmissions do not count again):

    - ``sent_before_their_fin`` / ``sent_after_their_fin``: our data, split by
      whether the segment that first carried it acknowledged the peer's FIN
      (we sent it during the peer's half-close);
    - ``received_before_our_fin`` / ``received_after_our_fin``: the peer's
      data, split by whether its segment acknowledged our FIN (the peer sent
      it after it had received our FIN: the seed's 10 bytes).

    Bytes are placed by what the sender had seen, not by when we read them.
    """
    fin: dict[str, int] = {}  # sender -> sequence number of its FIN
    high: dict[str, int] = {}  # sender -> end of the highest byte seen
    out = {
        "sent_before_their_fin": 0,
        "sent_after_their_fin": 0,
        "received_before_our_fin": 0,
        "received_after_our_fin": 0,
    }
    for ev in trace.segments():
        seg, src = ev.segment, ev.src
        if src not in (LOCAL, REMOTE):
            continue
        dst = REMOTE if src == LOCAL else LOCAL
        start = seqnum.add(seg.seq, 1) if seg.flags & SYN else seg.seq
        n = len(seg.payload)
        end = seqnum.add(start, n)
        if n:
            hi = high.get(src, start)
            new = n if seqnum.le(hi, start) else max(seqnum.sub(end, hi), 0)
            if new:
                high[src] = end
                other_fin = fin.get(dst)
                after = (
                    other_fin is not None
                    and bool(seg.flags & ACK)
                    and seqnum.gt(seg.ack, other_fin)
                )
                if src == LOCAL:
                    out["sent_after_their_fin" if after else "sent_before_their_fin"] += new
                else:
                    out["received_after_our_fin" if after else "received_before_our_fin"] += new
        elif src not in high:
            high[src] = start
        if seg.flags & FIN and src not in fin:
            fin[src] = end
    out["our_fin"] = LOCAL in fin
    out["their_fin"] = REMOTE in fin
    return out


@dataclass
class Outcome:
    """What one connection did, for ``--json`` and for tests."""

    peer: tuple[str, int]
    local: tuple[str, int]
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    final_state: str = ""
    error: str | None = None
    aborted: bool = False  # we sent the RST on purpose (--abort)
    reset_before_accept: bool = False
    writer: StreamWriter | None = None

    def phases(self) -> dict[str, int] | None:
        """:func:`release_phases` of the connection's trace (None: not recorded)."""
        if self.writer is None or not any(True for _ in self.writer.trace.segments()):
            return None
        return release_phases(self.writer.trace)

    @property
    def received_after_own_fin(self) -> int:
        ph = self.phases()
        return ph["received_after_our_fin"] if ph else 0

    @property
    def sent_after_peer_fin(self) -> int:
        ph = self.phases()
        return ph["sent_after_their_fin"] if ph else 0

    def to_json(self, *, trace: bool = True) -> dict[str, Any]:
        ph = self.phases()
        out: dict[str, Any] = {
            "peer": hostport(*self.peer),  # [2001:db8::1]:35238 for IPv6
            "local": hostport(*self.local),
            "bytes_sent": len(self.sent),
            "bytes_received": len(self.received),
            "sha256_sent": hashlib.sha256(self.sent).hexdigest(),
            "sha256_received": hashlib.sha256(self.received).hexdigest(),
            "bytes_received_after_own_fin": ph["received_after_our_fin"] if ph else None,
            "bytes_sent_after_peer_fin": ph["sent_after_their_fin"] if ph else None,
            "phases": ph,
            "final_state": self.final_state,
            "aborted": self.aborted,
            "reset_before_accept": self.reset_before_accept,
            "error": self.error,
        }
        if self.writer is not None:
            out["counters"] = dict(self.writer.connection.counters)
            if trace:
                out["trace"] = self.writer.trace.to_json()
        return out

    def summary(self) -> str:
        """One line: bytes by direction and by phase of the release, how it
        ended."""
        d = self.to_json(trace=False)
        ph = d["phases"]
        parts = [f"{d['peer']}: sent {d['bytes_sent']:,} B, received {d['bytes_received']:,} B"]
        if ph is not None:
            if ph["our_fin"]:
                parts.append(
                    f"received {ph['received_before_our_fin']:,} B before our FIN "
                    f"and {ph['received_after_our_fin']:,} B after it"
                )
            if ph["their_fin"]:
                parts.append(
                    f"sent {ph['sent_before_their_fin']:,} B before their FIN "
                    f"and {ph['sent_after_their_fin']:,} B after it"
                )
            if not ph["our_fin"] and not ph["their_fin"]:
                parts.append("no FIN either way")
        end = f"final state {d['final_state']}"
        if self.aborted:
            end = "aborted by us (RST sent), " + end
        if self.reset_before_accept:
            end = "reset before accept, " + end
        if d["error"] and not self.aborted:
            end += f", error {d['error']}"
        return "; ".join(parts) + "; " + end


class IdleTimeout(TimeoutError):
    """Nothing moved on a connection for the idle timeout."""


async def _idle(aw: Awaitable[T], idle: float | None, what: str) -> T:
    if idle is None:
        return await aw
    try:
        return await asyncio.wait_for(aw, idle)
    except TimeoutError as exc:
        raise IdleTimeout(f"{what}: nothing for {idle:g} s (--idle-timeout)") from exc


async def _send(writer: StreamWriter, out: Outcome, data: bytes, idle: float | None) -> None:
    if data:
        writer.write(data)
        out.sent += data
        await _idle(writer.drain(), idle, "the peer stopped acknowledging our data")


async def _read_exact_or_eof(
    reader: StreamReader, out: Outcome, n: int | None, idle: float | None
) -> None:
    """Read ``n`` bytes (``None``: everything up to the peer's FIN)."""
    while n is None or len(out.received) < n:
        want = 1 << 20 if n is None else n - len(out.received)
        chunk = await _idle(reader.read(want), idle, "waiting for the peer's data or FIN")
        if not chunk:
            break
        out.received += chunk


async def _finish(writer: StreamWriter, out: Outcome, idle: float | None) -> Outcome:
    try:
        await _idle(writer.wait_closed(), idle, "waiting for the release to complete")
    except IdleTimeout as exc:
        out.error = out.error or f"{type(exc).__name__}: {exc}"
        writer.abort()
    out.final_state = str(writer.get_extra_info("tcp_state"))
    out.reset_before_accept = bool(writer.get_extra_info("reset_before_accept"))
    return out


def _error(out: Outcome, writer: StreamWriter, exc: BaseException) -> None:
    out.error = f"{type(exc).__name__}: {exc}"
    if not writer.is_closing() or isinstance(exc, IdleTimeout):
        writer.abort()  # a bounded wait ran out: give the connection up (RST)


_ERRORS = (ConnectionError, TimeoutError, asyncio.IncompleteReadError)


async def run_script(
    reader: StreamReader,
    writer: StreamWriter,
    *,
    send_bytes: int = 0,
    expect_bytes: int | None = None,
    close: str = CLOSE_FIRST,
    half_close_bytes: int = 0,
    echo: bool = False,
    abort: bool = False,
    idle_timeout: float | None = None,
) -> Outcome:
    """The client: send ``send_bytes``, then release as asked.  With
    ``close`` first: read ``expect_bytes`` (none if not given), half-close,
    read until the peer's FIN.  With ``after-eof``: read until the peer's FIN,
    send ``half_close_bytes``, then close.  Every wait is bounded by
    ``idle_timeout`` (None: unbounded)."""
    out = Outcome(writer.get_extra_info("peername"), writer.get_extra_info("sockname"))
    out.writer = writer
    try:
        await _send(writer, out, pattern(send_bytes), idle_timeout)
        await _release(
            reader, writer, out, expect_bytes, close, half_close_bytes, echo, abort, 0,
            idle_timeout, client=True,
        )  # fmt: skip
    except _ERRORS as exc:
        _error(out, writer, exc)
    return await _finish(writer, out, idle_timeout)


async def serve_script(
    reader: StreamReader,
    writer: StreamWriter,
    *,
    expect_bytes: int | None = None,
    reply_bytes: int = 0,
    close: str = CLOSE_FIRST,
    echo: bool = False,
    abort: bool = False,
    idle_timeout: float | None = None,
) -> Outcome:
    """The server: read (``expect_bytes``, or to EOF when not given), reply
    ``reply_bytes``, then release as asked."""
    out = Outcome(writer.get_extra_info("peername"), writer.get_extra_info("sockname"))
    out.writer = writer
    try:
        await _release(
            reader, writer, out, expect_bytes, close, 0, echo, abort, reply_bytes, idle_timeout,
            client=False,
        )  # fmt: skip
    except _ERRORS as exc:
        _error(out, writer, exc)
    return await _finish(writer, out, idle_timeout)


async def _release(
    reader: StreamReader,
    writer: StreamWriter,
    out: Outcome,
    expect_bytes: int | None,
    close: str,
    half_close_bytes: int,
    echo: bool,
    abort: bool,
    reply_bytes: int,
    idle: float | None,
    *,
    client: bool,
) -> None:
    if echo:
        while chunk := await _idle(reader.read(65536), idle, "waiting for data to echo"):
            out.received += chunk
            await _send(writer, out, chunk, idle)
        writer.write_eof()
        return
    if close == CLOSE_FIRST:
        # The seed's server B: read what is expected, reply, FIN (half-close),
        # then keep receiving until the peer's FIN.  A client that expects
        # nothing closes at once (it does not wait for the server's data).
        if expect_bytes is not None or not client:
            await _read_exact_or_eof(reader, out, expect_bytes, idle)
        await _send(writer, out, pattern(reply_bytes), idle)
        if abort:
            out.aborted = True
            writer.abort()
            return
        writer.write_eof()
        await _read_exact_or_eof(reader, out, None, idle)
        return
    # after-eof: the seed's host A, the passive closer.
    await _read_exact_or_eof(reader, out, None, idle)
    await _send(writer, out, pattern(reply_bytes), idle)
    if half_close_bytes:
        await _send(writer, out, pattern(half_close_bytes, len(out.sent)), idle)
    if abort:
        out.aborted = True
        writer.abort()
        return
    writer.write_eof()
