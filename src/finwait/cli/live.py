"""finwait CLI: live commands (``lab``, ``serve``, ``connect``).

``lab`` manages the namespace + TUN lab (finwait.live.lab); ``serve`` and
``connect`` run the engine on the lab's TUN against the kernel (docs/live.md).
"""

from __future__ import annotations

import json
import sys

import click

from ..live.lab import LabConfig, LabError, LabStatus, lab_down, lab_status, lab_up

_netns_opt = click.option("--netns", default="finwait", show_default=True, help="namespace name")
_tun_opt = click.option("--tun", default="fw0", show_default=True, help="TUN device name")


def _print_status(st: LabStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(st.to_json(), indent=2))
        return
    if not st.netns_exists:
        click.echo(f"namespace {st.netns}: absent")
        return
    click.echo(f"namespace {st.netns}: present, processes {st.pids or 'none'}")
    if not st.tun_exists:
        click.echo(f"TUN {st.tun}: absent")
        return
    click.echo(f"TUN {st.tun}: {'up' if st.tun_up else 'down'}, mtu {st.mtu}")
    click.echo(f"  addresses: {', '.join(st.addresses) or 'none'}")
    click.echo(f"  routes:    {', '.join(st.routes) or 'none'}")
    click.echo("ready" if st.ready else "not ready: run `finwait lab up`")


@click.group("lab")
def lab() -> None:
    """Create, inspect or remove the network-namespace lab (needs root)."""


@lab.command("up")
@_netns_opt
@_tun_opt
@click.option("--mtu", default=1500, show_default=True, type=click.IntRange(68, 65535))
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
def lab_up_cmd(netns: str, tun: str, mtu: int, as_json: bool) -> None:
    """Create the lab (idempotent): kernel side 198.18.0.1/24 and 2001:db8::1/64,
    finwait's 198.18.0.2 and 2001:db8::2 behind the TUN."""
    try:
        st = lab_up(LabConfig(netns=netns, tun=tun, mtu=mtu))
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_status(st, as_json)


@lab.command("down")
@_netns_opt
@_tun_opt
def lab_down_cmd(netns: str, tun: str) -> None:
    """Remove the lab: its processes, its TUN and its namespace (idempotent)."""
    try:
        removed = lab_down(LabConfig(netns=netns, tun=tun))
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"namespace {netns}: {'removed' if removed else 'was absent'}")


@lab.command("status")
@_netns_opt
@_tun_opt
@click.option("--json", "as_json", is_flag=True)
def lab_status_cmd(netns: str, tun: str, as_json: bool) -> None:
    """Say what exists of the lab; exit status 0 when it is ready, 1 otherwise."""
    try:
        st = lab_status(LabConfig(netns=netns, tun=tun))
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_status(st, as_json)
    sys.exit(0 if st.ready else 1)


commands: list[click.Command] = [lab]
