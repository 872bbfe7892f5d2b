"""The ``finwait`` command.  Each group of subcommands lives in its own
module and exposes ``commands``; this module only maps names to modules and
imports a module when one of its commands runs, so ``finwait demo`` does not
pay for pyroute2 or numpy."""

from __future__ import annotations

import importlib
import signal
import threading
from types import FrameType

import click

from .. import __version__

# command name -> (module, one-line help shown in `finwait --help`)
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("sim", "Replay the textbook release (simulated) and explain it."),
    "simulate": ("sim", "Run any open/transfer/close scenario on a simulated path."),
    "lab": ("live", "Create, remove or inspect the live lab (netns + TUN)."),
    "serve": ("live", "Serve TCP on the lab's TUN with finwait's engine."),
    "connect": ("live", "Connect through the lab's TUN with finwait's engine."),
    "analyze": ("analyze", "Explain how every connection in a capture opened and closed."),
    "script": ("script", "Run packetdrill-dialect scripts on the engine or the Linux kernel."),
}


# third-party module -> the extra that brings it, by command module
# (pyproject.toml's [project.optional-dependencies]).
_EXTRA_OF: dict[str, dict[str, str]] = {
    "click": {"sim": "sim", "analyze": "analyze", "live": "live"},
    "rich": {"sim": "analyze", "analyze": "analyze", "live": "analyze"},
    "numpy": {"sim": "analyze", "analyze": "analyze", "live": "analyze"},
    "pyroute2": {"sim": "live", "analyze": "live", "live": "live"},
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        try:
            module = importlib.import_module(f"{__name__}.{entry[0]}")
        except ModuleNotFoundError as err:
            top = (err.name or "").split(".")[0]
            if top not in _EXTRA_OF:
                raise
            raise click.ClickException(
                f"finwait {cmd_name} needs {top}, which is not installed: "
                f"pip install 'finwait[{_EXTRA_OF[top][entry[0]]}]'"
            ) from None
        commands: list[click.Command] = module.commands
        return next((cmd for cmd in commands if cmd.name == cmd_name), None)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text without importing every module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in _COMMANDS.items()])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="finwait")
def main() -> None:
    """TCP connection management you can run, watch and check."""
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: `with` blocks and `finally` clauses
        # run, so files being written (--pcap) end complete.
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
