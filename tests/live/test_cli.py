"""The README walk-through as a test: ``finwait serve 9000 --expect-bytes 247
--reply-bytes 49 --close first --json`` in the lab, a kernel client in the
namespace, and the seed's numbers in the printed Trace."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from finwait.live.apps import pattern
from finwait.live.lab import Lab

from .peers import kernel_socket, recv_all

pytestmark = pytest.mark.live


def _connect_retrying(lab: Lab) -> bytes:
    deadline = time.monotonic() + 10
    while True:
        s = kernel_socket(lab)
        s.settimeout(10)
        try:
            s.connect((lab.cfg.finwait_v4, 9000))
            break
        except ConnectionRefusedError:  # finwait not listening yet: it answers RST
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    s.sendall(pattern(247))
    got = recv_all(s)
    s.sendall(pattern(10, 247))
    s.close()
    return got


def test_finwait_serve_reproduces_the_seed(lab: Lab) -> None:
    cmd = [sys.executable, "-c", "from finwait.cli import main; main()", "serve", "9000", "--netns", lab.name,
           "--tun", lab.cfg.tun, "--expect-bytes", "247", "--reply-bytes", "49",
           "--close", "first", "--msl", "0.2", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _connect_retrying(lab) == pattern(49)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    doc = json.loads(out)
    conn = doc["connections"][0]
    assert conn["bytes_received"] == 257 and conn["bytes_sent"] == 49
    assert conn["bytes_received_after_own_fin"] == 10
    assert conn["final_state"] == "TIME-WAIT"
    segs = [e for e in conn["trace"]["events"] if e["kind"] == "segment"]
    ours = [e for e in segs if e["from"] == "finwait"]
    fin = next(e for e in ours if "FIN" in e["flags"])
    assert (fin["seq"], fin["ack"]) == (50, 248)
    assert (ours[-1]["flags"], ours[-1]["seq"], ours[-1]["ack"]) == (["ACK"], 51, 259)
