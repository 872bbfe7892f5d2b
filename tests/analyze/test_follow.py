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
