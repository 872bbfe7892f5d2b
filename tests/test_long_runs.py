"""Long runs: a lossy bulk simulation folds into a short ladder that still
draws the handshake and the release in full; --summary prints only the
outcome; progress shows on a terminal (and only there), for simulate and for
analyze."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from finwait.cli import main
from finwait.render.ladder import render_text
from finwait.sim.scenario import ScenarioSpec, run_scenario
from finwait.trace import LOST, SegmentEvent
from finwait.wire.segment import FIN, RST, SYN

BULK = ["simulate", "--client-bytes", "2000000", "--loss", "0.02", "--bandwidth", "100"]


def test_a_lossy_bulk_ladder_folds_but_draws_the_release_in_full() -> None:
    trace = run_scenario(
        ScenarioSpec(client_bytes=2_000_000, loss=0.02, bandwidth_mbps=100.0)
    ).trace
    segments = [e for e in trace.events if isinstance(e, SegmentEvent)]
    lost = sum(1 for e in segments if e.fate == LOST)
    assert len(segments) > 1500 and lost > 20
    out = render_text(trace)
    assert len(out.splitlines()) < 80, len(out.splitlines())
    # (duplicates the receiver discarded, each with its verdict, count as dropped)
    gaps = re.findall(
        r"… ([\d,]+) segments \(.*?; ([\d,]+) lost, (?:[\d,]+ dropped, )?([\d,]+) retransmitted\) …",
        out,
    )
    assert gaps
    # Every SYN, FIN and RST is drawn, and everything from the first FIN on.
    first_fin = next(i for i, e in enumerate(segments) if e.segment.flags & (FIN | RST))
    for e in segments:
        if e.segment.flags & (SYN | FIN | RST):
            assert f"seq={trace.relative(e)[0]} " in out
    tail = segments[first_fin:]
    assert all(e.fate != LOST or f"seq={trace.relative(e)[0]} " in out for e in tail), (
        "a lost segment of the release was folded"
    )


def test_summary_prints_only_the_outcome() -> None:
    result = CliRunner().invoke(main, [*BULK, "--summary"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "│" not in result.output and "─" not in result.output
    assert lines[0].startswith("A: sent 2,000,000 bytes")
    assert lines[-1].startswith("simulated time:")


def _on_a_terminal(argv: list[str], tmp_path: Path) -> tuple[int, str, str]:
    """Run ``finwait ARGV`` with stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    env = {**os.environ, "FINWAIT_PROGRESS_AFTER": "0", "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "finwait", *argv],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        cwd=tmp_path,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode() if proc.stdout else ""
    code = proc.wait()
    os.close(master)
    return code, out, b"".join(chunks).decode(errors="replace")


def test_simulate_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    code, out, err = _on_a_terminal([*BULK, "--summary"], tmp_path)
    assert code == 0
    shown = re.findall(r"simulating: ([\d,.]+) s simulated, ([\d,]+) of 2,001,000 bytes", err)
    assert shown, err
    assert err.endswith("\r\x1b[K")  # the line is cleared at the end
    assert "simulating" not in out
    # Not a terminal: nothing.
    env = {**os.environ, "FINWAIT_PROGRESS_AFTER": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "finwait", *BULK, "--summary"], capture_output=True, text=True,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == ""


def test_analyze_shows_progress_whatever_the_file_size(tmp_path: Path) -> None:
    pcap = tmp_path / "bulk.pcap"
    result = CliRunner().invoke(
        main, ["simulate", "--client-bytes", "20000000", "--summary", "--pcap", str(pcap)]
    )
    assert result.exit_code == 0
    assert pcap.stat().st_size < 32 << 20
    code, out, err = _on_a_terminal(["analyze", str(pcap)], tmp_path)
    assert code == 0
    assert "bulk.pcap" in err and "MB" in err, err
    assert "1 connection" in out


def test_analyze_shows_progress_beside_json_on_stdout(tmp_path: Path) -> None:
    pcap = tmp_path / "bulk.pcap"
    result = CliRunner().invoke(
        main, ["simulate", "--client-bytes", "2000000", "--summary", "--pcap", str(pcap)]
    )
    assert result.exit_code == 0
    code, out, err = _on_a_terminal(["analyze", str(pcap), "--json"], tmp_path)
    assert code == 0
    assert "bulk.pcap" in err and "MB" in err, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 1  # stdout holds the JSON Lines and nothing else
