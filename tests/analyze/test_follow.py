"""``--follow``: a live capture on standard input (``tcpdump -U -w - |
finwait analyze --follow --json -``) is analysed as it arrives, and each
connection's line is written once it is done, before the input ends; the
lines are the sequential run's, in the order the connections ended."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from finwait.cli import main

from .netlab import lab
from .test_jsonl import zoo

FINWAIT = [sys.executable, "-m", "finwait", "analyze"]


def _lines_within(fd: int, want: int, seconds: float) -> bytes:
    """What ``fd`` gives until it holds ``want`` lines or ``seconds`` pass."""
    got = b""
    end = time.monotonic() + seconds
    while got.count(b"\n") < want and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            more = os.read(fd, 1 << 16)
            if not more:
                break
            got += more
    return got


@pytest.mark.parametrize("mode", ["--json", "--csv"])
def test_lines_come_while_the_capture_runs(mode: str) -> None:
    data = zoo(12, 400)  # 400 connections over 200 s of capture time
    want = subprocess.run([*FINWAIT, mode, "-"], input=data, capture_output=True,
                          check=True).stdout  # fmt: skip
    proc = subprocess.Popen([*FINWAIT, mode, "--follow", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        # The first 60 % of the capture, and the pipe left open: the
        # connections that ended in it (5 s of capture time before its
        # last packet) come out now, not at the end of the input.
        proc.stdin.write(data[: len(data) * 6 // 10])
        proc.stdin.flush()
        early = _lines_within(proc.stdout.fileno(), 100, 60.0)
        assert early.count(b"\n") >= 100
        assert proc.poll() is None  # (still reading)
        proc.stdin.write(data[len(data) * 6 // 10 :])
        proc.stdin.close()
        assert proc.stderr is not None
        rest, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    got = (early + rest).decode().splitlines()
    want_lines = want.decode().splitlines()
    if mode == "--csv":
        assert got[0] == want_lines[0]  # (the header first)
        got, want_lines = got[1:], want_lines[1:]

        def key(line: str) -> int:
            return int(line.split(",")[1])
    else:

        def key(line: str) -> int:
            return int(json.loads(line)["id"])

    ids = [key(line) for line in got]
    assert ids != sorted(ids)  # in the order they ended, not by id
    assert sorted(got, key=key) == want_lines


@pytest.mark.parametrize(
    "args",
    [["--follow"], ["--follow", "--json", "--workers", "2"], ["--follow", "--json", "--set"],
     ["--follow", "--json", "--stats"], ["--follow", "--csv", "--explain", "1"]],
)  # fmt: skip
def test_follow_takes_one_file_and_lines(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(1, 5))
    res = CliRunner().invoke(main, ["analyze", *args, str(path)])
    assert res.exit_code == 2
    assert "--follow takes one FILE and --json or --csv" in res.output


SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7200))
s.listen()
print("ready", flush=True)
for _ in range(2):
    c, _ = s.accept()
    while c.recv(1 << 16):
        pass
    c.close()
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], 7200))
c.sendall(b"x" * 1000)
c.close()
"""


@pytest.mark.usefixtures("live_ok")
def test_follow_tcpdump_on_a_live_link() -> None:
    """tcpdump's own stream (``-U -w -``) on a veth between two namespaces,
    piped into ``--follow``: the kernel's first connection is reported
    while tcpdump still runs, once the second one's packets come 6 s after
    it closed; the second when tcpdump stops."""
    with lab() as lb:
        server = lb.run(lb.server_ns, sys.executable, "-c", SERVER, lb.saddr,
                        stdout=subprocess.PIPE)  # fmt: skip
        dump = lb.run(lb.client_ns, "tcpdump", "--immediate-mode", "-U", "-i", "fwv-c", "-s", "200",
                      "-w", "-", "tcp", stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        follow = None
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            assert dump.stderr is not None and "listening" in dump.stderr.readline()
            follow = subprocess.Popen([*FINWAIT, "--json", "--follow", "-"], stdin=dump.stdout,
                                      stdout=subprocess.PIPE)  # fmt: skip
            assert follow.stdout is not None
            for pause in (6.0, 0.0):
                lb.run(lb.client_ns, sys.executable, "-c", CLIENT, lb.saddr).wait(30)
                time.sleep(pause)
            first = _lines_within(follow.stdout.fileno(), 1, 30.0)
            assert dump.poll() is None  # (tcpdump still capturing)
            dump.terminate()
            dump.wait(10)
            rest = follow.stdout.read()
            assert follow.wait(30) == 0
        finally:
            for proc in (server, dump, follow):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
    early = [json.loads(line) for line in first.decode().splitlines()]
    late = [json.loads(line) for line in rest.decode().splitlines()]
    assert [r["id"] for r in early] == [1] and [r["id"] for r in late] == [2]
    for rec in early + late:
        assert rec["handshake"] == "complete" and rec["close"] in ("four_way", "three_way")
        assert rec["bytes"]["client_to_server"] == 1000
        assert rec["server"] == {"addr": lb.saddr, "port": 7200}
