"""The README's script section: the failing copy it shows is the suite's
script with one number changed, and its kernel samples (``sample-live``)
are what the commands print.  The engine samples are checked with every
other sample by tests/test_docs.py."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from finwait.cli import main

from .conftest import SCRIPTS, require_live

REPO = SCRIPTS.parents[1]
README = REPO / "README.md"
LIVE = re.compile(
    r"^<!-- sample-live: (finwait script [^>]*?) -->\n```text\n(.*?)^```$", re.M | re.S
)


def test_flip_is_the_suites_script_with_one_number_changed() -> None:
    base = (SCRIPTS / "close-remote-fin-then-close.pkt").read_text()
    flip = (REPO / "tests" / "script" / "data" / "flip.pkt").read_text()
    assert flip == base.replace("   +0 > F. 1:1(0) ack 2", "   +0 > F. 1:1(0) ack 3")
    assert flip != base


def test_kernel_samples() -> None:
    require_live()
    samples = LIVE.findall(README.read_text(encoding="utf-8"))
    assert len(samples) == 2
    old = Path.cwd()
    os.chdir(REPO)
    try:
        for command, body in samples:
            cmd, _, filt = command.partition(" | ")
            res = CliRunner().invoke(main, shlex.split(cmd)[1:])
            out = res.output.splitlines()
            if filt:
                a, b = filt.removeprefix("lines ").split("-")
                out = out[int(a) - 1 : int(b)]
            assert out == body.splitlines(), (command, res.output)
    finally:
        os.chdir(old)
