"""finwait CLI: live commands (``lab``, ``serve``, ``connect``).

``lab`` manages the namespace + TUN lab (finwait.live.lab); ``serve`` and
``connect`` run the engine on the lab's TUN against the kernel (docs/live.md).
"""

from __future__ import annotations

import asyncio
import json
import signal
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


def _lab_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Live traffic only on the lab's ranges: 198.18.0.0/15, 2001:db8::/32."""
    from ..live.lab import check_lab_address

    if value is not None:
        try:
            check_lab_address(value)
        except LabError as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


_SECONDS = click.FloatRange(0, min_open=True)


def _peer_options(f: Any) -> Any:
    for opt in reversed(
        [
            _netns_opt,
            _tun_opt,
            click.option("--addr", default=None, callback=_lab_address,
                         help="finwait's address, in 198.18.0.0/15 or 2001:db8::/32 "
                              "(default: both lab addresses)"),
            click.option("--close", "close", type=click.Choice(["first", "after-eof"]), default="first",
                         show_default=True, help="close first (half-close, read on) or after the peer's EOF"),
            click.option("--abort", is_flag=True, help="reset (RST) instead of closing"),
            click.option("--msl", type=_SECONDS, default=None,
                         help="MSL in seconds: TIME-WAIT lasts 2 MSL  [default: 30]"),
            click.option("--no-linger", is_flag=True,
                         help="exit as soon as the application is done, dropping connections "
                              "still in TIME-WAIT, LAST-ACK, CLOSING or FIN-WAIT (by default "
                              "they are held until TCP releases them, as a kernel does)"),
            click.option("--idle-timeout", type=_SECONDS, default=30.0, show_default=True,
                         help="give a connection up (RST) when nothing moves for this long"),
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
            click.echo(o.summary())
    if ladder:
        for o in outcomes:
            if o.writer is not None:
                click.echo(render_text(o.writer.trace), nl=False)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _describe(conns: list[Any]) -> str:
    """'1 connection in TIME-WAIT' / '3 connections (2 in TIME-WAIT, 1 in LAST-ACK)'."""
    from collections import Counter

    states = Counter(str(c.state) for c in conns)
    if len(states) == 1:
        return f"{_plural(len(conns), 'connection')} in {next(iter(states))}"
    inner = ", ".join(f"{n} in {st}" for st, n in sorted(states.items()))
    return f"{_plural(len(conns), 'connection')} ({inner})"


async def _hold(stack: Any, no_linger: bool) -> None:
    """What a kernel does after the application exits: keep every connection
    still being released until TCP is done with it (TIME-WAIT's 2 MSL, or
    the peer's last ACK), answering a retransmitted FIN meanwhile.  A
    countdown on a terminal; one line otherwise."""
    conns = stack.releasing()
    if not conns:
        return
    if no_linger:
        click.echo(f"--no-linger: dropping {_describe(conns)}; a retransmitted FIN "
                   "will get no answer", err=True)  # fmt: skip
        return
    tty = sys.stderr.isatty()
    shown = False

    def tick(conns: list[Any], left: float | None) -> None:
        nonlocal shown
        them = "it" if len(conns) == 1 else "them"
        msg = f"holding {_describe(conns)}"
        msg += f", {left:.0f} s left" if left is not None else ", until the peer answers"
        msg += f" — Ctrl-C to drop {them}"
        if tty:
            click.echo("\r" + msg + "\x1b[K", nl=False, err=True)
        elif not shown:
            click.echo(msg, err=True)
        shown = True

    try:
        await stack.linger(tick)
    finally:
        if tty and shown:
            click.echo("", err=True)


def _lost(stack: Any, netns: str, tun: str) -> click.ClickException:
    return click.ClickException(
        f"{stack.lost.result()}: TUN {tun} in namespace {netns} is gone "
        "(finwait lab down?); stopping"
    )


@click.command("serve")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option(
    "--count", default=1, show_default=True, type=click.IntRange(1),
    help="connections to serve (one reset before it was accepted counts too)",
)  # fmt: skip
@click.option(
    "--expect-bytes", type=click.IntRange(0), default=None,
    help="bytes to read before replying (default: read until the peer's FIN)",
)  # fmt: skip
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
    expect_bytes: int | None,
    reply_bytes: int,
    echo: bool,
    backlog: int,
    netns: str,
    tun: str,
    addr: str | None,
    close: str,
    abort: bool,
    msl: float | None,
    no_linger: bool,
    idle_timeout: float,
    pcap: str | None,
    offload: bool,
    as_json: bool,
    ladder: bool,
) -> None:
    """Serve PORT on the lab's TUN with the engine; the kernel is the client.

    With --close first: read --expect-bytes, send --reply-bytes, half-close,
    read until the peer's FIN (the textbook example's server B).  After COUNT
    connections, connections still being released are held (TIME-WAIT: 2
    MSL) unless --no-linger."""
    from ..live.apps import serve_script
    from ..live.streams import Stack, start_server

    async def main() -> None:
        outcomes: list[Any] = []
        done = asyncio.Event()

        async def handler(reader: Any, writer: Any) -> None:
            outcome = await serve_script(
                reader, writer, expect_bytes=expect_bytes, reply_bytes=reply_bytes,
                close=close, echo=echo, abort=abort, idle_timeout=idle_timeout,
            )  # fmt: skip
            outcomes.append(outcome)
            if not as_json and not ladder:
                click.echo(outcome.summary())
            if len(outcomes) >= count:
                done.set()

        tun_before = await _tun_counters(netns, tun)
        async with Stack.open(
            netns, tun, addr, config=_config(msl), pcap=pcap, offload=offload, linger=False
        ) as stack:
            server = await start_server(handler, port, stack=stack, backlog=backlog)
            if not as_json:
                click.echo(f"finwait serving port {port} on {', '.join(sorted(stack.host.addrs))} "
                           f"(netns {netns}, tun {tun})", err=True)  # fmt: skip
            waiter = asyncio.ensure_future(done.wait())
            either: list[asyncio.Future[Any]] = [waiter, stack.lost]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if stack.lost.done():
                raise _lost(stack, netns, tun)
            server.close()
            if as_json or ladder:
                tun_used = _tun_delta(tun_before, await _tun_counters(netns, tun))
                _report(outcomes, stack, as_json, ladder, tun_used)
            await _hold(stack, no_linger)
            if stack.lost.done():
                raise _lost(stack, netns, tun)

    _run(main())


@click.command("connect")
@click.argument("host", callback=_lab_address)
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--send-bytes", type=click.IntRange(0), default=0, show_default=True,
              help="bytes to send the server once connected")  # fmt: skip
@click.option(
    "--expect-bytes",
    type=click.IntRange(0),
    default=None,
    help="with --close first: bytes to read before closing (default: close at once "
    "after sending, then read until the peer's FIN)",
)
@click.option("--half-close-bytes", type=click.IntRange(0), default=0, show_default=True,
              help="with --close after-eof: bytes sent after the peer's FIN, before ours")  # fmt: skip
@click.option("--timeout", type=_SECONDS, default=10.0, show_default=True,
              help="connect timeout (s)")  # fmt: skip
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
    no_linger: bool,
    idle_timeout: float,
    pcap: str | None,
    offload: bool,
    as_json: bool,
    ladder: bool,
) -> None:
    """Connect from the engine on the lab's TUN to HOST PORT (the kernel).

    Exit status 1 when the connection failed (refused, reset, timed out)."""
    from ..live.apps import run_script
    from ..live.streams import Stack, open_connection

    failed: list[str] = []

    async def main() -> None:
        tun_before = await _tun_counters(netns, tun)
        async with Stack.open(
            netns, tun, addr, config=_config(msl), pcap=pcap, offload=offload, linger=False
        ) as stack:
            reader, writer = await open_connection(host, port, stack=stack, timeout=timeout)
            outcome = await run_script(
                reader, writer, send_bytes=send_bytes, expect_bytes=expect_bytes, close=close,
                half_close_bytes=half_close_bytes, abort=abort, idle_timeout=idle_timeout,
            )  # fmt: skip
            if stack.lost.done():
                raise _lost(stack, netns, tun)
            tun_used = _tun_delta(tun_before, await _tun_counters(netns, tun))
            _report([outcome], stack, as_json, ladder, tun_used)
            if outcome.error and not outcome.aborted:
                failed.append(outcome.error)
            await _hold(stack, no_linger)

    _run(main())
    if failed:
        sys.exit(1)


class _Terminated(Exception):
    """SIGTERM arrived: the command was cancelled like by Ctrl-C."""


async def _cancelled_by_sigterm(coro: Any) -> None:
    """Run ``coro``; SIGTERM cancels it as Ctrl-C does (asyncio.run's own
    SIGINT handling), so its ``finally`` clauses run — the pcap is closed
    whole — at an await, never in the middle of a callback."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated: list[bool] = []

    def on_term() -> None:
        terminated.append(True)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_term)
    try:
        await coro
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _run(coro: Any) -> None:
    try:
        asyncio.run(_cancelled_by_sigterm(coro))
    except _Terminated:
        sys.exit(128 + signal.SIGTERM)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise click.ClickException(str(exc) or type(exc).__name__) from exc
    except KeyboardInterrupt:
        sys.exit(130)


commands: list[click.Command] = [lab, serve, connect]
