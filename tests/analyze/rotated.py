"""A kernel capture with many interleaved connections, and the rotated set
``tcpdump -r X -w Y -C 1`` cuts from it (connections cross the files'
boundaries): shared by the capture-set, chunk and Dask tests.

Each connection makes small request/response round trips (TCP_NODELAY, so
one segment per write); a third end with a reset (SO_LINGER 0), a third are
closed by the server first, the rest by the client first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .netlab import can_run, lab, tcpdump

PORT = 7100
CONNS = 24
ROUNDS = 300

SERVER = r"""
import socket, struct, sys, threading
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2]))); ls.listen(64)
print("ready", flush=True)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    kind = None
    while True:
        try:
            d = c.recv(100)
        except ConnectionResetError:
            return
        if not d:
            break
        kind = d[:1]
        if kind == b"S":  # server closes first
            c.sendall(b"s" * 100); c.close(); return
        c.sendall(d)
    c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

CLIENT = r"""
import socket, struct, sys, threading, time
def run(i):
    time.sleep(i * 0.003)
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for r in range(int(sys.argv[3])):
        s.sendall(b"d" * 100)
        got = 0
        while got < 100:
            got += len(s.recv(100 - got))
    if i % 3 == 0:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif i % 3 == 1:
        s.sendall(b"S" * 100)
        while s.recv(4096):
            pass
    s.close()
ts = [threading.Thread(target=run, args=(i,)) for i in range(int(sys.argv[4]))]
for t in ts: t.start()
for t in ts: t.join()
print("done", flush=True)
"""


def kernel_capture(out: Path) -> Path:
    """Capture the exchange above made by the kernel in the test's own
    namespaces; skip (or fail with FINWAIT_LIVE=require) where it cannot."""
    why = can_run()
    if why is not None:
        if os.environ.get("FINWAIT_LIVE") == "require":
            pytest.fail(f"live test required but cannot run: {why}")
        pytest.skip(why)
    with lab() as lb:
        srv = lb.run(
            lb.server_ns, sys.executable, "-c", SERVER, lb.saddr, str(PORT), stdout=subprocess.PIPE
        )
        try:
            assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
            with tcpdump(lb, out):
                cli = lb.run(lb.client_ns, sys.executable, "-c", CLIENT, lb.saddr, str(PORT),
                             str(ROUNDS), str(CONNS), stdout=subprocess.PIPE)  # fmt: skip
                assert cli.wait(60) == 0
        finally:
            srv.kill()
            srv.wait()
    return out


def rotate(src: Path, outdir: Path, megabytes: int = 1) -> list[Path]:
    """``tcpdump -r src -w outdir/part -C megabytes``: the rotated files."""
    outdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["tcpdump", "-Z", "root", "-r", str(src), "-w", str(outdir / "part"), "-C", str(megabytes)],
        check=True, capture_output=True,
    )  # fmt: skip
    return sorted(outdir.iterdir(), key=lambda p: (len(p.name), p.name))
