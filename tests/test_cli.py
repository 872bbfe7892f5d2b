"""The command assembly: every name maps to a real command, help lists them
all, and the demo does not import the live stack or numpy."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from finwait.cli import _COMMANDS, main


def test_every_command_resolves() -> None:
    for name in _COMMANDS:
        cmd = main.get_command(None, name)  # type: ignore[arg-type]
        assert cmd is not None and cmd.name == name


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(main, ["--help"]).output
    for name in _COMMANDS:
        assert name in out


def test_demo_does_not_import_the_live_stack() -> None:
    code = (
        "import sys; from finwait.cli import main\n"
        "try:\n    main(['demo'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('pyroute2', 'numpy', 'finwait.live') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
