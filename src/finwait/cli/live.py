"""finwait CLI: live commands (``lab``, ``serve``, ``connect``).

``lab`` manages the namespace + TUN lab (finwait.live.lab); ``serve`` and
``connect`` run the engine on the lab's TUN against the kernel (docs/live.md).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from ..live.lab import LabConfig, LabError, LabStatus, lab_down, lab_status, lab_up
from .files import OUTPUT

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
    if not st.tun_up:
        link = "down (administratively)"
    elif st.carrier:
        link = "up, carrier on (a finwait process holds it)"
    else:
        link = "enabled, no carrier (no process holds it; serve/connect will)"
    click.echo(f"TUN {st.tun}: {link}, mtu {st.mtu}")
    click.echo(f"  addresses: {', '.join(st.addresses) or 'none'}")
    click.echo(f"  routes:    {', '.join(st.routes) or 'none'}")
    click.echo(f"  queue:     txqlen {st.txqlen}, tx_dropped {st.tx_dropped} "
               "(packets the kernel could not queue for finwait)")  # fmt: skip
    click.echo("ready" if st.ready else "not ready: run `finwait lab up`")


@click.group("lab")
def lab() -> None:
    """Create, inspect or remove the network-namespace lab (needs root)."""


@lab.command("up")
@_netns_opt
@_tun_opt
@click.option("--mtu", default=1500, show_default=True, type=click.IntRange(68, 65535),
              help="MTU of the TUN device")  # fmt: skip
@click.option("--txqlen", default=16384, show_default=True, type=click.IntRange(1, 1_000_000),
              help="the TUN's queue towards finwait, in packets (Linux's default 500 "
                   "overflows under a burst of connections)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
def lab_up_cmd(netns: str, tun: str, mtu: int, txqlen: int, as_json: bool) -> None:
    """Create the lab (idempotent): kernel side 198.18.0.1/24 and 2001:db8::1/64,
    finwait's 198.18.0.2 and 2001:db8::2 behind the TUN."""
    try:
        st = lab_up(LabConfig(netns=netns, tun=tun, mtu=mtu, txqlen=txqlen))
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
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
def lab_status_cmd(netns: str, tun: str, as_json: bool) -> None:
    """Say what exists of the lab; exit status 0 when it is ready, 1 otherwise."""
    try:
        st = lab_status(LabConfig(netns=netns, tun=tun))
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_status(st, as_json)
    sys.exit(0 if st.ready else 1)


def _peer_options(f: Any) -> Any:
    for opt in reversed(
        [
            _netns_opt,
            _tun_opt,
            click.option("--addr", default=None, help="finwait's address (default: both lab addresses)"),
            click.option("--close", "close", type=click.Choice(["first", "after-eof"]), default="first",
                         show_default=True, help="close first (half-close, read on) or after the peer's EOF"),
            click.option("--abort", is_flag=True, help="reset (RST) instead of closing"),
            click.option("--msl", type=float, default=None, help="MSL in seconds (TIME-WAIT = 2 MSL)"),
            click.option("--pcap", type=OUTPUT, default=None,
                         help="record every packet in and out (LINKTYPE_RAW)"),
            click.option("--offload/--no-offload", default=True, show_default=True,
                         help="TUN segmentation offload: up to 64 KB per read/write "
                              "(the pcap then has super-packets, as tcpdump on a GRO host)"),
            click.option("--json", "as_json", is_flag=True, help="print a JSON summary"),
            click.option("--ladder", is_flag=True, help="print the text ladder of each connection"),
        ]
    ):  # fmt: skip
        f = opt(f)
    return f


def _config(msl: float | None) -> Any:
    from ..tcp.config import Config

    return Config() if msl is None else Config(msl=msl)


async def _tun_counters(netns: str, tun: str) -> dict[str, int] | None:
    """The TUN's counters (netlink, in a thread: pyroute2 does not run inside
    a running event loop); None when they cannot be read."""
    from ..live.lab import tun_counters

    try:
        return await asyncio.to_thread(tun_counters, LabConfig(netns=netns, tun=tun))
    except (LabError, OSError):
        return None


def _tun_delta(
    before: dict[str, int] | None, after: dict[str, int] | None
) -> dict[str, int] | None:
    """What this run added to the TUN's counters (txqlen as it is)."""
    if before is None or after is None:
        return None
    out = {k: after[k] - before[k] for k in after if k != "txqlen"}
    out["txqlen"] = after["txqlen"]
    return out


def _report(
    outcomes: list[Any],
    stack: Any,
    as_json: bool,
    ladder: bool,
    tun: dict[str, int] | None = None,
) -> None:
    from ..render.ladder import render_text

    if as_json:
        doc = {
            "connections": [o.to_json() for o in outcomes],
            "host_counters": dict(stack.host.counters),
            "driver_counters": dict(stack.driver.counters),
            # tx_dropped: packets the kernel could not queue for finwait
            "tun": tun,
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for o in outcomes:
            d = o.to_json(trace=False)
            click.echo(
                f"{d['peer']}: sent {d['bytes_sent']} B (sha256 {d['sha256_sent'][:16]}), "
                f"received {d['bytes_received']} B (sha256 {d['sha256_received'][:16]}), "
                f"{d['bytes_received_after_own_fin']} B after our FIN, final state {d['final_state']}"
                + (f", error {d['error']}" if d["error"] else "")
            )
    if ladder:
        for o in outcomes:
            if o.writer is not None:
                click.echo(render_text(o.writer.trace), nl=False)


@click.command("serve")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option(
    "--count", default=1, show_default=True, type=click.IntRange(1), help="connections to serve"
)
@click.option(
    "--expect-bytes", type=click.IntRange(0), default=None, help="bytes to read before replying"
)
@click.option("--reply-bytes", type=click.IntRange(0), default=0, show_default=True,
              help="bytes to send the client after reading --expect-bytes")  # fmt: skip
@click.option("--echo", is_flag=True, help="echo until EOF, then close")
@click.option("--backlog", type=click.IntRange(1), default=4096, show_default=True,
              help="bound of the SYN queue and of the accept queue (Linux somaxconn); "
                   "SYNs beyond a full SYN queue get SYN cookies")  # fmt: skip
@_peer_options
def serve(
    port: int,
    count: int,
    backlog: int,
    expect_bytes: int | None,
    reply_bytes: int,
    echo: bool,
    netns: str,
    tun: str,
    addr: str | None,
    close: str,
    abort: bool,
    msl: float | None,
    pcap: str | None,
    offload: bool,
    as_json: bool,
    ladder: bool,
) -> None:
    """Serve PORT on the lab's TUN with the engine; the kernel is the client.

    With --close first: read --expect-bytes, send --reply-bytes, half-close,
    read until the peer's FIN (the textbook example's server B)."""
    from ..live.apps import serve_script
    from ..live.streams import Stack, start_server

    async def main() -> None:
        outcomes: list[Any] = []
        done = asyncio.Event()

        async def handler(reader: Any, writer: Any) -> None:
            outcome = await serve_script(
                reader, writer, expect_bytes=expect_bytes, reply_bytes=reply_bytes,
                close=close, echo=echo, abort=abort,
            )  # fmt: skip
            outcomes.append(outcome)
            if not as_json and not ladder:
                _report([outcome], stack, False, False)
            if len(outcomes) >= count:
                done.set()

        tun_before = await _tun_counters(netns, tun)
        async with Stack.open(
            netns, tun, addr, config=_config(msl), pcap=pcap, offload=offload
        ) as stack:
            server = await start_server(handler, port, stack=stack, backlog=backlog)
            if not as_json:
                click.echo(f"finwait serving port {port} on {', '.join(sorted(stack.host.addrs))} "
                           f"(netns {netns}, tun {tun})", err=True)  # fmt: skip
            await done.wait()
            server.close()
            if as_json or ladder:
                tun_used = _tun_delta(tun_before, await _tun_counters(netns, tun))
                _report(outcomes, stack, as_json, ladder, tun_used)

    _run(main())


@click.command("connect")
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--send-bytes", type=click.IntRange(0), default=0, show_default=True,
              help="bytes to send the server once connected")  # fmt: skip
@click.option(
    "--expect-bytes",
    type=click.IntRange(0),
    default=None,
    help="bytes to read before closing first",
)
@click.option("--half-close-bytes", type=click.IntRange(0), default=0, show_default=True,
              help="with --close after-eof: bytes sent after the peer's FIN, before ours")  # fmt: skip
@click.option("--timeout", type=float, default=10.0, show_default=True, help="connect timeout (s)")
@_peer_options
def connect(
    host: str,
    port: int,
    send_bytes: int,
    expect_bytes: int | None,
    half_close_bytes: int,
    timeout: float,
    netns: str,
    tun: str,
    addr: str | None,
    close: str,
    abort: bool,
    msl: float | None,
    pcap: str | None,
    offload: bool,
    as_json: bool,
    ladder: bool,
) -> None:
    """Connect from the engine on the lab's TUN to HOST PORT (the kernel)."""
    from ..live.apps import run_script
    from ..live.lab import check_lab_address
    from ..live.streams import Stack, open_connection

    try:
        check_lab_address(host)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc

    async def main() -> None:
        tun_before = await _tun_counters(netns, tun)
        async with Stack.open(
            netns, tun, addr, config=_config(msl), pcap=pcap, offload=offload
        ) as stack:
            reader, writer = await open_connection(host, port, stack=stack, timeout=timeout)
            outcome = await run_script(
                reader, writer, send_bytes=send_bytes, expect_bytes=expect_bytes, close=close,
                half_close_bytes=half_close_bytes, abort=abort,
            )  # fmt: skip
            tun_used = _tun_delta(tun_before, await _tun_counters(netns, tun))
            _report([outcome], stack, as_json, ladder, tun_used)

    _run(main())


def _run(coro: Any) -> None:
    try:
        asyncio.run(coro)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    except KeyboardInterrupt:
        sys.exit(130)


commands: list[click.Command] = [lab, serve, connect]
