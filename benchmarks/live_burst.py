"""A burst of concurrent connections against finwait, with the kernel anchor
from the same run: how many finwait absorbs without a reset.

    python benchmarks/live_burst.py [--sizes 100,1500,...] [--bytes 20000]
                                    [--anchor/--no-anchor] [--serve-args ...]

Needs root.  For each burst size N: a private lab, ``finwait serve PORT --echo
--count N`` (a separate process, as a user runs it), then a kernel asyncio
client in the namespace opening N connections at once, each sending
``--bytes`` bytes, half-closing (``write_eof``) and reading the echo to EOF.
Reported: connections byte-exact, reset, failed otherwise; the time from the
first connect to the last EOF; the TUN's ``tx_dropped`` (packets the kernel
could not queue for finwait); finwait's counters of interest (SYN cookies,
full queues).  The anchor: the same client against a kernel asyncio echo
server (backlog 4096) in the same namespace, timed in the same run.
Addresses: 198.18.0.0/15 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

from pyroute2 import netns

from finwait.live.lab import Lab, LabConfig, tun_counters

PORT = 9102


def pattern(n: int, seed: int) -> bytes:
    block = bytes((seed + i) & 0xFF for i in range(256))
    return (block * (n // 256 + 1))[:n]


# -- the kernel client (a child process in the namespace) ----------------------


async def _client(host: str, port: int, n: int, size: int, timeout: float) -> dict[str, Any]:
    ok = resets = other = 0
    errors: dict[str, int] = {}

    async def one(i: int) -> None:
        nonlocal ok, resets, other
        data = pattern(size, i)
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(data)
            await writer.drain()
            writer.write_eof()
            got = await reader.read()
            writer.close()
            if got == data:
                ok += 1
            else:
                other += 1
                errors["short or wrong echo"] = errors.get("short or wrong echo", 0) + 1
        except ConnectionResetError:
            resets += 1
        except Exception as exc:  # counted and reported, not raised
            other += 1
            key = type(exc).__name__
            errors[key] = errors.get(key, 0) + 1

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    if pending:
        other += len(pending)
        errors["hung"] = len(pending)
    return {"ok": ok, "resets": resets, "other": other, "errors": errors,
            "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip


async def _kernel_echo(port: int, ready: Any) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "198.18.0.1", port, backlog=4096)
    ready()
    async with server:
        await server.serve_forever()


def client_main(argv: list[str]) -> None:
    """``HOST PORT N BYTES TIMEOUT``: run the burst, print one JSON line."""
    host, port, n, size, timeout = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4])
    res = asyncio.run(_client(host, port, n, size, timeout))
    print(json.dumps(res), flush=True)


def echo_main(argv: list[str]) -> None:
    """``PORT``: a kernel asyncio echo server on 198.18.0.1."""
    asyncio.run(_kernel_echo(int(argv[0]), lambda: print("ready", flush=True)))


def _in_ns(ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        preexec_fn=lambda: netns.setns(ns, flags=0),
        stdout=subprocess.PIPE,
        text=True,
    )


def _raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def run_client(lab: Lab, host: str, n: int, size: int, timeout: float) -> dict[str, Any]:
    proc = _in_ns(lab.name, "--client", host, str(PORT), str(n), str(size), str(timeout))
    out, _ = proc.communicate(timeout=timeout + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"client failed ({proc.returncode})")
    res: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return res


def kernel_anchor(n: int, size: int, timeout: float) -> dict[str, Any]:
    with Lab() as lab:
        srv = _in_ns(lab.name, "--echo", str(PORT))
        assert srv.stdout is not None
        srv.stdout.readline()
        try:
            return run_client(lab, lab.cfg.kernel_v4, n, size, timeout)
        finally:
            srv.kill()
            srv.wait()


def finwait_burst(
    n: int, size: int, timeout: float, extra: list[str], txqlen: int | None
) -> dict[str, Any]:
    with Lab(txqlen=txqlen or LabConfig().txqlen) as lab:
        cmd = [sys.executable, "-c", "from finwait.cli import main; main()", "serve", str(PORT), "--echo", "--count", str(n),
               "--netns", lab.name, "--tun", lab.cfg.tun, "--json", *extra]  # fmt: skip
        srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_listening(lab)
            before = tun_counters(lab.cfg)
            res = run_client(lab, lab.cfg.finwait_v4, n, size, timeout)
            after = tun_counters(lab.cfg)
            try:
                out, err = srv.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                srv.kill()
                out, err = srv.communicate()
        finally:
            if srv.poll() is None:
                srv.kill()
                srv.wait()
        res["tx_dropped"] = after["tx_dropped"] - before["tx_dropped"]
        if srv.returncode == 0:
            doc = json.loads(out)
            hc = doc.get("host_counters", {})
            keys = ("syncookies_sent", "syn_queue_full", "accept_queue_full", "ack_to_listener")
            res["host"] = {k: hc.get(k, 0) for k in keys}
            res["tun_by_serve"] = doc.get("tun")
            res["served"] = len(doc.get("connections", []))
        else:
            res["serve_error"] = err.strip().splitlines()[-1:] or [f"exit {srv.returncode}"]
        return res


def _wait_listening(lab: Lab) -> None:
    """Until finwait answers a SYN on PORT (a RST means: not listening yet)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with lab.inside():
            s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((lab.cfg.finwait_v4, PORT))
        except (ConnectionRefusedError, TimeoutError):
            time.sleep(0.1)
            continue
        finally:
            s.close()
        return
    raise RuntimeError("finwait serve did not start listening")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--client":
        _raise_nofile()
        client_main(sys.argv[2:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--echo":
        _raise_nofile()
        echo_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1500")
    ap.add_argument("--bytes", type=int, default=20000)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--no-anchor", action="store_true")
    ap.add_argument(
        "--txqlen", type=int, default=None, help="the lab TUN's queue (default: the lab's)"
    )
    ap.add_argument("--stop-at-reset", action="store_true",
                    help="stop at the first size with a reset (the largest burst absorbed)")  # fmt: skip
    ap.add_argument("serve_args", nargs="*", help="extra arguments to finwait serve")
    args = ap.parse_args()
    _raise_nofile()
    sizes = [int(x) for x in args.sizes.split(",")]
    largest = 0
    for n in sizes:
        print(f"burst {n} x {args.bytes} B each way, half-close:", flush=True)
        if not args.no_anchor:
            k = kernel_anchor(n, args.bytes, args.timeout)
            print(f"  kernel<->kernel : {k['ok']}/{n} byte-exact, {k['resets']} resets, "
                  f"{k['other']} other {k['errors'] or ''}  {k['seconds']:.2f} s", flush=True)  # fmt: skip
        f = finwait_burst(n, args.bytes, args.timeout, args.serve_args, args.txqlen)
        print(f"  kernel->finwait : {f['ok']}/{n} byte-exact, {f['resets']} resets, "
              f"{f['other']} other {f['errors'] or ''}  {f['seconds']:.2f} s, "
              f"TUN tx_dropped {f['tx_dropped']}, finwait {f.get('host') or f.get('serve_error')}",
              flush=True)  # fmt: skip
        clean = f["ok"] == n and f["tx_dropped"] == 0
        if clean:
            largest = n
        elif args.stop_at_reset:
            break
    print(f"largest burst absorbed without reset or loss: {largest}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
