"""The README walk-through as a test: ``finwait serve 9000 --expect-bytes 247
--reply-bytes 49 --close first --json`` in the lab, a kernel client in the
namespace, and the seed's numbers in the printed Trace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

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


def test_finwait_serve_reproduces_the_seed(lab: Lab, tmp_path: Path) -> None:
    pcap = tmp_path / "serve.pcap"
    cmd = [sys.executable, "-c", "from finwait.cli import main; main()", "serve", "9000", "--netns", lab.name,
           "--tun", lab.cfg.tun, "--expect-bytes", "247", "--reply-bytes", "49",
           "--close", "first", "--msl", "0.2", "--json", "--pcap", str(pcap)]  # fmt: skip
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
    _check_pcap_with_tshark(pcap)


def _check_pcap_with_tshark(pcap: Path) -> None:
    """``--pcap`` wrote a capture tshark reads (not finwait's reader), with the
    seed's release in it: finwait's FIN 50/248 and last ACK 51/259, the
    kernel's data 248..257 and FIN 258 (relative numbers, tshark's default)."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    fields = ["ip.src", "tcp.flags", "tcp.seq", "tcp.ack", "tcp.len"]
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", *(x for f in fields for x in ("-e", f))],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    segs = [(src, int(flags, 16), int(seq), int(ack), int(n)) for src, flags, seq, ack, n in rows]
    fw, kernel = "198.18.0.2", "198.18.0.1"
    assert (fw, 0x011, 50, 248, 0) in segs, segs  # FIN,ACK
    assert (kernel, 0x018, 248, 51, 10) in segs, segs  # 10 bytes after our FIN
    assert (kernel, 0x011, 258, 51, 0) in segs, segs  # the kernel's FIN
    last_ack = (fw, 0x010, 51, 259, 0)
    assert last_ack in segs, segs
    # After it: nothing of ours but the same ACK again (serve holds TIME-WAIT:
    # a FIN the kernel retransmitted because our ACK was slow under load is
    # answered), and from the kernel nothing but that FIN or the RST a closed
    # socket answers the repeated ACK with.
    after = segs[segs.index(last_ack) + 1 :]
    assert all(
        s == last_ack or (s[0] == kernel and (s[1] == 0x004 or s[1:3] == (0x011, 258)))
        for s in after
    ), segs
