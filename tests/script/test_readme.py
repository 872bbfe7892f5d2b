"""The README's script section: the script shown is the suite's file, and
the outputs shown are what the commands print."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from finwait.cli import main

from .conftest import SCRIPTS, require_live

README = Path(__file__).resolve().parents[2] / "README.md"
NAME = "close-remote-fin-then-close.pkt"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Scripts:")
    return text[start : text.index("\n## ", start + 1)]


def _blocks() -> list[str]:
    return re.findall(r"```\n(.*?)```", _section(), re.S)


def _commands(block: str) -> list[tuple[list[str], list[str]]]:
    """(argv, expected output lines) for each ``$ finwait ...`` in a block."""
    out: list[tuple[list[str], list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ finwait "):
            out.append((line.split()[2:], []))
        else:
            out[-1][1].append(line)
    return out


def _run(argv: list[str], cwd: Path) -> list[str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(main, argv)
    finally:
        os.chdir(old)
    return res.output.splitlines()


def test_script_shown_is_the_suites() -> None:
    assert _blocks()[0] == (SCRIPTS / NAME).read_text(encoding="utf-8")


@pytest.mark.parametrize("target", ["engine", pytest.param("kernel", marks=pytest.mark.live)])
def test_outputs_shown(tmp_path: Path, target: str) -> None:
    if target == "kernel":
        require_live()
    repo = SCRIPTS.parents[1]
    flip = (SCRIPTS / NAME).read_text().replace("> F. 1:1(0) ack 2", "> F. 1:1(0) ack 3")
    (tmp_path / "flip.pkt").write_text(flip)
    checked = 0
    for block in _blocks()[1:]:
        for argv, expected in _commands(block):
            if ("kernel" in argv) != (target == "kernel"):
                continue
            cwd = tmp_path if "flip.pkt" in argv else repo
            got = _run(argv, cwd)
            # The kernel's times vary: the README shows its first line only.
            assert got[: len(expected)] == expected, (argv, got)
            checked += 1
    assert checked == 2
