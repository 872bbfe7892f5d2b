"""The live samples in README.md and docs/live.md (``<!-- sample-live: … -->``)
are what the command prints: the walk-through is run in a lab (``finwait
serve … --ladder`` and the kernel client shown beside it), and every row of
the sample — abridged: the rows whose order the kernel's timing cannot change
— is found in the printed ladder, in order, with times and ports masked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from finwait.live.lab import Lab

from .test_cli import _connect_retrying

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
SAMPLE = re.compile(r"^<!-- sample-live: (?P<cmd>.+?) -->\n```\w*\n(?P<body>.*?)^```$", re.M | re.S)


def _rows(text: str) -> list[str]:
    """Ladder rows with the time column, ports and padding masked: what an
    arrow says and which way it points, or a state and on which side."""
    out = []
    for line in text.splitlines():
        if "│" not in line:
            continue
        _, mid = line.split("│", 1)
        if "│" not in mid:
            continue
        left = line.split("│", 1)[0].split()
        state_left = left[-1] if left and not re.fullmatch(r"[\d,.]+", left[-1]) else ""
        body, right = mid.rsplit("│", 1)
        label = re.sub(r"[─►◄ ]+", " ", body).strip()
        way = "►" if "►" in body else "◄" if "◄" in body else ""
        state_right = right.strip()
        if label:
            out.append(f"{way} {label}")
        for st in (state_left and f"left {state_left}", state_right and f"right {state_right}"):
            if st:
                out.append(st)
    return out


def _samples() -> list[tuple[str, str, str]]:
    """The ``finwait serve … --ladder`` live samples (the others, such as
    ``finwait script --target kernel`` or serve's summary line, are checked by
    their own tests)."""
    found = []
    for doc in (REPO / "README.md", REPO / "docs" / "live.md"):
        for m in SAMPLE.finditer(doc.read_text(encoding="utf-8")):
            if m["cmd"].startswith("finwait serve ") and m["cmd"].endswith(" --ladder"):
                found.append((doc.name, m["cmd"], m["body"]))
    return found


def test_there_are_live_samples() -> None:
    assert {name for name, _, _ in _samples()} == {"README.md", "live.md"}


def test_the_row_reader_masks_what_varies() -> None:
    a = " 1,182.679              │─── FIN,ACK seq=50 ack=248 len=0 ───►│"
    b = "    12.000   FIN-WAIT-1 │──────── FIN,ACK seq=50 ack=248 len=0 ────────►│ TIME-WAIT"
    assert _rows(a) == ["► FIN,ACK seq=50 ack=248 len=0"]
    assert _rows(b) == ["► FIN,ACK seq=50 ack=248 len=0", "left FIN-WAIT-1", "right TIME-WAIT"]


def _subsequence(want: list[str], have: list[str]) -> bool:
    it = iter(have)
    return all(any(w == h for h in it) for w in want)


def test_samples_are_in_what_serve_prints(lab: Lab) -> None:
    samples = _samples()
    commands = {cmd for _, cmd, _ in samples}
    assert commands == {
        "finwait serve 9000 --expect-bytes 247 --reply-bytes 49 --close first --ladder"
    }
    argv = next(iter(commands)).split()[1:]
    cmd = [sys.executable, "-m", "finwait", *argv, "--netns", lab.name, "--tun", lab.cfg.tun,
           "--msl", "0.2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _connect_retrying(lab)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    printed = _rows(out)
    for name, _, body in samples:
        want = _rows(body)
        assert len(want) >= 6, name
        # (the check can fail: a wrong number is not found)
        assert not _subsequence([*want[:-1], want[-1].replace("259", "260")], printed)
        assert _subsequence(want, printed), (
            f"{name}'s live sample is not what `serve --ladder` prints:\n"
            + "\n".join(want)
            + "\n--- printed:\n"
            + "\n".join(printed)
        )
