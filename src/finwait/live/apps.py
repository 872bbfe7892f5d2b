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
from dataclasses import dataclass, field
from typing import Any

from ..tcp.state import State
from .streams import StreamReader, StreamWriter

CLOSE_FIRST = "first"
CLOSE_AFTER_EOF = "after-eof"
_RELEASED = (State.TIME_WAIT, State.CLOSED)


def pattern(n: int, offset: int = 0) -> bytes:
    """``n`` bytes of a fixed, recognisable pattern (for SHA-256 checks)."""
    alphabet = b"finwait-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz\n"
    reps = (offset + n) // len(alphabet) + 1
    return (alphabet * reps)[offset : offset + n]


@dataclass
class Outcome:
    """What one connection did, for ``--json`` and for tests."""

    peer: tuple[str, int]
    local: tuple[str, int]
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    received_after_own_fin: int = 0
    sent_after_peer_fin: int = 0
    final_state: str = ""
    error: str | None = None
    writer: StreamWriter | None = None

    def to_json(self, *, trace: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "peer": f"{self.peer[0]}:{self.peer[1]}",
            "local": f"{self.local[0]}:{self.local[1]}",
            "bytes_sent": len(self.sent),
            "bytes_received": len(self.received),
            "sha256_sent": hashlib.sha256(self.sent).hexdigest(),
            "sha256_received": hashlib.sha256(self.received).hexdigest(),
            "bytes_received_after_own_fin": self.received_after_own_fin,
            "bytes_sent_after_peer_fin": self.sent_after_peer_fin,
            "final_state": self.final_state,
            "error": self.error,
        }
        if self.writer is not None:
            out["counters"] = dict(self.writer.connection.counters)
            if trace:
                out["trace"] = self.writer.trace.to_json()
        return out


async def _send(writer: StreamWriter, out: Outcome, data: bytes) -> None:
    if data:
        writer.write(data)
        out.sent += data
        await writer.drain()


async def _read_exact_or_eof(reader: StreamReader, out: Outcome, n: int | None) -> None:
    """Read ``n`` bytes (``None``: everything up to the peer's FIN)."""
    if n is None:
        out.received += await reader.read()
        return
    while len(out.received) < n:
        chunk = await reader.read(n - len(out.received))
        if not chunk:
            break
        out.received += chunk


async def _finish(writer: StreamWriter, out: Outcome) -> Outcome:
    await writer.wait_closed()
    out.final_state = str(writer.get_extra_info("tcp_state"))
    return out


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
) -> Outcome:
    """One side's script; the server and the client differ only in order
    (the server reads first, the client sends first: ``send_bytes`` is sent
    before reading, and a server passes its reply as ``send_bytes`` *after*
    reading by calling :func:`serve_script`)."""
    out = Outcome(writer.get_extra_info("peername"), writer.get_extra_info("sockname"))
    out.writer = writer
    try:
        await _send(writer, out, pattern(send_bytes))
        await _release(reader, writer, out, expect_bytes, close, half_close_bytes, echo, abort, 0)
    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return await _finish(writer, out)


async def serve_script(
    reader: StreamReader,
    writer: StreamWriter,
    *,
    expect_bytes: int | None = None,
    reply_bytes: int = 0,
    close: str = CLOSE_FIRST,
    echo: bool = False,
    abort: bool = False,
) -> Outcome:
    """The server: read (``expect_bytes``, or to EOF with ``--close
    after-eof``), reply ``reply_bytes``, then release as asked."""
    out = Outcome(writer.get_extra_info("peername"), writer.get_extra_info("sockname"))
    out.writer = writer
    try:
        await _release(reader, writer, out, expect_bytes, close, 0, echo, abort, reply_bytes)
    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return await _finish(writer, out)


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
) -> None:
    if echo:
        while chunk := await reader.read(65536):
            out.received += chunk
            await _send(writer, out, chunk)
        writer.write_eof()
        return
    if close == CLOSE_FIRST:
        # The seed's server B: read what is expected, reply, FIN (half-close),
        # then keep receiving until the peer's FIN.
        await _read_exact_or_eof(reader, out, expect_bytes)
        await _send(writer, out, pattern(reply_bytes))
        if abort:
            writer.abort()
            return
        writer.write_eof()
        before = len(out.received)
        out.received += await reader.read()
        out.received_after_own_fin = len(out.received) - before
        return
    # after-eof: the seed's host A, the passive closer.
    await _read_exact_or_eof(reader, out, None)
    await _send(writer, out, pattern(reply_bytes))
    if half_close_bytes:
        await _send(writer, out, pattern(half_close_bytes, len(out.sent)))
        out.sent_after_peer_fin = half_close_bytes
    if abort:
        writer.abort()
        return
    writer.write_eof()
