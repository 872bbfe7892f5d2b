"""``finwait script``: run packetdrill-dialect scripts on the engine or the kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .files import INPUT, OUTPUT, writing


@click.command("script")
@click.argument("files", nargs=-1, required=True, type=INPUT)
@click.option(
    "--target",
    type=click.Choice(["engine", "kernel"]),
    default="engine",
    show_default=True,
    help="engine: finwait's Host in virtual time; kernel: Linux through a TUN in a private netns.",
)
@click.option(
    "--profile",
    type=click.Choice(["linux", "rfc"]),
    default="linux",
    show_default=True,
    help="Engine target: the Linux profile (quick ACKs, IW10, RACK-TLP, PRR) or "
    "finwait's RFC defaults.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per script.")
@click.option("--pcap", type=OUTPUT, help="Write every segment to a pcap.")
@click.option(
    "--tolerance-usecs",
    type=click.IntRange(min=0),
    default=0,
    help="Timing tolerance floor (the script's own, if larger, applies): for a loaded machine.",
)
@click.option("-v", "--verbose", is_flag=True, help="Print each event as it runs.")
def script(files: tuple[str, ...], target: str, profile: str, as_json: bool,
           pcap: Path | None, tolerance_usecs: int, verbose: bool) -> None:  # fmt: skip
    """Run packetdrill-dialect scripts; exit 0 only when every one passes."""
    from ..script import run_script

    packets: list[tuple[float, bytes]] | None = [] if pcap else None
    failed = 0
    offset = 0.0
    for path in files:
        log = click.echo if verbose else None
        mark = len(packets) if packets is not None else 0
        outcome = run_script(
            path, target, log=log, pcap=packets, min_tolerance=tolerance_usecs / 1e6,
            profile=profile,
        )  # fmt: skip
        if packets is not None:
            # Scripts one after another in the capture, each from its own start.
            packets[mark:] = [(offset + t, pkt) for t, pkt in packets[mark:]]
            if len(packets) > mark:
                offset = packets[-1][0] + 1.0
        if outcome.status != "PASS":
            failed += 1
        click.echo(outcome.json_line() if as_json else outcome.summary())
    if not as_json and len(files) > 1:
        click.echo(f"{len(files) - failed} of {len(files)} passed [{target}]")
    if pcap and packets is not None:
        from ..capture.writer import PcapWriter

        with writing(pcap), PcapWriter(pcap) as w:
            for t, pkt in packets:
                w.write(pkt, max(t, 0.0))
    sys.exit(1 if failed else 0)


commands = [script]
