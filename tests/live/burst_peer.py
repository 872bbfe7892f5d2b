"""The kernel side of the load tests, run as a child process inside the lab's
namespace (so the kernel's TCP and finwait's engine get a core each):

    burst_peer.py client HOST PORT N BYTES TIMEOUT
        N asyncio connections at once, each sends BYTES (a pattern that
        depends on the connection's number), half-closes and reads the echo
        to EOF; prints one JSON line: byte-exact, reset, other failures.
    burst_peer.py echo HOST PORT
        an asyncio echo server (backlog 4096): echo to EOF, then close;
        prints "ready" once listening.

Only the standard library: this is the kernel's TCP, not finwait's."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time


def pattern(n: int, seed: int) -> bytes:
    block = bytes((seed * 7 + i) & 0xFF for i in range(256))
    return (block * (n // 256 + 1))[:n]


async def client(host: str, port: int, n: int, size: int, timeout: float) -> dict[str, object]:
    counts = {"ok": 0, "resets": 0, "wrong": 0, "other": 0}
    errors: dict[str, int] = {}

    async def one(i: int) -> None:
        data = pattern(size, i)
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(data)
            await writer.drain()
            writer.write_eof()
            got = await reader.read()
            writer.close()
            counts["ok" if got == data else "wrong"] += 1
        except ConnectionResetError:
            counts["resets"] += 1
        except Exception as exc:  # counted and reported
            counts["other"] += 1
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    if pending:
        counts["other"] += len(pending)
        errors["hung"] = len(pending)
    return {**counts, "errors": errors, "seconds": round(time.perf_counter() - t0, 3)}


async def echo(host: str, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "client":
        res = asyncio.run(client(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4])))
        print(json.dumps(res), flush=True)
    elif mode == "echo":
        asyncio.run(echo(args[0], int(args[1])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
