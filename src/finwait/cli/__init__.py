"""The ``finwait`` command.  Each group of subcommands lives in its own
module and exposes ``commands``; this module only assembles them."""

from __future__ import annotations

import click

from .. import __version__
from . import analyze as _analyze
from . import live as _live
from . import sim as _sim


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="finwait")
def main() -> None:
    """TCP connection management you can run, watch and check."""


for _module in (_sim, _live, _analyze):
    for _cmd in _module.commands:
        main.add_command(_cmd)
