"""``finwait demo`` and ``finwait simulate``: scenarios run on the simulator.

``demo`` replays the seed, the release between host A 192.168.1.100 and
server B 119.75.218.70:80 (FIN,ACK 50/248; ACK 248/51; FIN,ACK 248/51; ACK
51/249), in simulation only, and explains it.  ``simulate`` runs any two-host
exchange: who closes, half-close bytes, abort, a bare FIN, and a lossy path.
Both draw the text ladder and can write JSON, pcap and SVG.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..render.rows import count
from ..sim.scenario import ScenarioResult, ScenarioSpec, run_scenario
from ..tcp.state import State
from ..trace import StateEvent
from .files import OUTPUT, write_text, writing

F = TypeVar("F", bound=Callable[..., Any])

# The seed's figure: host A and Baidu's server B.  Simulation only: nothing is
# ever sent to these addresses.
SEED_CLIENT = "192.168.1.100"
SEED_SERVER = "119.75.218.70"


def _output_options(f: F) -> F:
    for option in reversed(
        [
            click.option("--json", "as_json", is_flag=True, help="Print the trace and summary as JSON."),
            click.option("--pcap", type=OUTPUT, help="Also write the exchange as a pcap file."),
            click.option("--svg", type=OUTPUT, help="Also write the ladder as an SVG file."),
            click.option("--html", "html", type=OUTPUT, metavar="FILE",
                         help="Also write a page to learn from: step through the exchange "
                              "segment by segment on the ladder and the state diagram."),
            click.option("--absolute", is_flag=True, help="Raw sequence numbers instead of relative ones."),
            click.option("--ascii", "ascii_only", is_flag=True, help="ASCII-only ladder."),
        ]
    ):  # fmt: skip
        f = option(f)
    return f


def _run(spec_args: dict[str, Any], progress: bool = False) -> ScenarioResult:
    try:
        spec = ScenarioSpec(**spec_args)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    if not progress or not sys.stderr.isatty():
        return run_scenario(spec)
    line = _ProgressLine(sys.stderr)
    try:
        return run_scenario(spec, progress=line.update)
    finally:
        line.clear()


class _ProgressLine:
    """``simulating: 12.345 s simulated, 1,234,567 of 300,000,000 bytes
    delivered (0 %)`` on one terminal line, redrawn at most 10 times a second
    once the run has taken more than a quarter of a second."""

    def __init__(self, stream: Any, after: float | None = None) -> None:
        self.stream = stream
        self.start = time.monotonic()
        env = os.environ.get("FINWAIT_PROGRESS_AFTER")
        self.after = after if after is not None else float(env) if env else 0.25
        self.last = 0.0
        self.shown = False

    def update(self, now: float, delivered: int, planned: int) -> None:
        wall = time.monotonic()
        if wall - self.start < self.after or wall - self.last < 0.1:
            return
        self.last = wall
        share = f" ({100 * delivered // planned} %)" if planned else ""
        text = (
            f"simulating: {now:,.3f} s simulated, {delivered:,} of {planned:,} bytes "
            f"delivered{share}"
        )
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _write_files(
    result: ScenarioResult,
    pcap: Path | None,
    svg: Path | None,
    absolute: bool,
    html: Path | None = None,
    title: str | None = None,
) -> None:
    if html is not None:
        from ..render.learn import render_learning_page

        page = render_learning_page(
            result.trace, relative=not absolute, title=title, outcome=format_summary(result)
        )
        write_text(html, page)
    if pcap is not None:
        from ..capture.writer import write_trace

        with writing(pcap):
            write_trace(result.trace, pcap)
    if svg is not None:
        from ..render.svg import render_svg

        write_text(svg, render_svg(result.trace, relative=not absolute))


def _json_out(result: ScenarioResult, absolute: bool) -> str:
    data = result.trace.to_json(relative=not absolute)
    data["summary"] = result.summary
    return json.dumps(data, indent=2, sort_keys=False)


def _ladder(result: ScenarioResult, absolute: bool, ascii_only: bool) -> str:
    from ..render.ladder import render_text

    return render_text(result.trace, relative=not absolute, ascii=ascii_only)


def failures(result: ScenarioResult) -> list[str]:
    """Why the run failed, in words; empty when it did what was asked (an
    abort the scenario asked for is not a failure, a timeout always is)."""
    s = result.summary
    a, b = result.spec.client_name, result.spec.server_name
    out = []
    for name in (a, b):
        outcome = s[name]["outcome"]
        if outcome.startswith("timed out") or outcome == "never connected":
            out.append(f"{name} {outcome}")
        elif outcome in ("aborted", "reset") and result.spec.abort is None:
            out.append(f"{name}'s connection was {outcome}")
    for src, dst in ((a, b), (b, a)):
        if s[src]["sent_sha256"] != s[dst]["received_sha256"]:
            out.append(f"stream {src}→{dst} differs")
        elif s[src]["sent_bytes"] != s[src]["planned_bytes"] and result.spec.abort is None:
            out.append(f"stream {src}→{dst} incomplete")
    return out


def format_summary(result: ScenarioResult, *, ascii_only: bool = False) -> str:
    """Each side's bytes, digests, final state and counters, then the verdict."""
    s = result.summary
    a, b = result.spec.client_name, result.spec.server_name
    arrow = "->" if ascii_only else "→"
    lines = []
    for name in (a, b):
        side = s[name]
        lines.append(
            f"{name}: sent {count(side['sent_bytes'], 'byte')} "
            f"(sha256 {side['sent_sha256'][:16]}), "
            f"received {count(side['received_bytes'], 'byte')} "
            f"(sha256 {side['received_sha256'][:16]}); "
            f"final state {side['final_state']} ({side['outcome']})"
        )
    for src, dst in ((a, b), (b, a)):
        planned, sent = s[src]["planned_bytes"], s[src]["sent_bytes"]
        if s[src]["sent_sha256"] != s[dst]["received_sha256"]:
            verdict = "DIFFERS (sent and received digests differ)"
        elif sent != planned and not sent:
            verdict = f"INCOMPLETE (none of the {count(planned, 'byte')} sent)"
        elif sent != planned:
            verdict = (
                f"INCOMPLETE ({sent:,} of {count(planned, 'byte')} sent; "
                f"{'that one' if sent == 1 else 'those'} arrived intact)"
            )
        else:
            verdict = f"byte-exact ({count(sent, 'byte')})"
        lines.append(f"stream {src}{arrow}{dst}: {verdict}")
    for name in (a, b):
        counters = s["counters"][name]
        text = ", ".join(f"{k}={v:,}" for k, v in counters.items() if v) or "none"
        lines.append(f"counters {name}: {text}")
    time_wait = any(
        isinstance(ev, StateEvent) and ev.state is State.TIME_WAIT for ev in result.trace.events
    )
    lines.append(
        f"simulated time: {result.end_time:,.3f} s" + (" (TIME-WAIT included)" if time_wait else "")
    )
    failed = failures(result)
    if failed:
        lines.append(f"FAILED: {'; '.join(failed)}".replace("→", arrow))
    return "\n".join(lines) + "\n"


# The explanation is prose with a few typographic characters; --ascii maps them.
_ASCII_MAP = str.maketrans(
    {"→": "->", "←": "<-", "⇄": "<->", "↔": "<->", "×": "x", "…": "...", "–": "-", "—": "-"}
)


def _explain(result: ScenarioResult, absolute: bool, ascii_only: bool) -> str:
    from ..render.explain import explain_release

    text = explain_release(result.trace, relative=not absolute)
    if ascii_only:
        text = text.translate(_ASCII_MAP).encode("ascii", "replace").decode("ascii")
    return text


@click.command("demo")
@click.option(
    "--half-close-bytes",
    type=click.IntRange(min=0, max=10_000_000),
    default=0,
    show_default=True,
    help="Bytes A still sends after B's FIN (the half-closed connection).",
)
@_output_options
def demo(
    half_close_bytes: int,
    as_json: bool,
    pcap: Path | None,
    svg: Path | None,
    absolute: bool,
    ascii_only: bool,
    html: Path | None,
) -> None:
    """The textbook example: B (119.75.218.70:80) releases its connection
    with A (192.168.1.100) in four steps, FIN,ACK 50/248 - ACK 248/51 -
    FIN,ACK 248/51 - ACK 51/249, simulated and explained."""
    result = _run(
        {
            "client_bytes": 247,
            "server_bytes": 49,
            "half_close_bytes": half_close_bytes,
            "closer": "server",
            # A's 247-byte request, B's 49-byte response; B closes once the
            # response is acknowledged, so its FIN (seq 50) travels alone.
            "request_response": True,
            # A acknowledges B's FIN alone (delayed ACK, 40 ms), sends its
            # half-close bytes a little later, then closes: the seed's order.
            "half_close_delay": 0.1 if half_close_bytes else 0.0,
            "close_delay": 0.2,
            "delay_ms": 20.0,
            "client_addr": SEED_CLIENT,
            "server_addr": SEED_SERVER,
            "server_port": 80,
            "seed": 1,
        }
    )
    _write_files(
        result, pcap, svg, absolute, html, "The textbook release: B closes first (simulated)"
    )
    if as_json:
        click.echo(_json_out(result, absolute))
        return
    a = result.trace.endpoints["A"]
    sep = "<->" if ascii_only else "↔"
    click.echo(
        f"finwait demo: TCP connection release, A {a.addr}:{a.port} {sep} "
        f"B {SEED_SERVER}:80 (simulated; B closes first)"
    )
    click.echo()
    click.echo(_ladder(result, absolute, ascii_only), nl=False)
    click.echo()
    click.echo(_explain(result, absolute, ascii_only), nl=False)


@click.command("simulate")
@click.option(
    "--closer",
    type=click.Choice(["client", "server", "both"]),
    default="client",
    show_default=True,
    help="Who closes first; 'both' closes at once (FINs cross).",
)
@click.option(
    "--client-bytes",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bytes A sends before the release.",
)
@click.option(
    "--server-bytes",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bytes B sends before the release.",
)
@click.option(
    "--half-close-bytes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Bytes the passive closer sends after the first FIN.",
)
@click.option(
    "--loss",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Per-segment loss probability, each direction.",
)
@click.option(
    "--dup",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Per-segment duplication probability.",
)
@click.option(
    "--reorder",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Fraction of segments delayed past later ones.",
)
@click.option(
    "--corrupt",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Per-segment probability of a flipped bit (dropped by the checksum).",
)
@click.option(
    "--delay",
    "delay_ms",
    type=click.FloatRange(min=0.0),
    default=10.0,
    show_default=True,
    help="One-way delay in milliseconds.",
)
@click.option(
    "--bandwidth",
    "bandwidth_mbps",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Link bandwidth in Mbit/s (default: unlimited).",
)
@click.option(
    "--queue",
    "queue_bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Bottleneck queue in bytes, tail drop when full (needs --bandwidth).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="The one seed of all randomness in the run.",
)
@click.option(
    "--abort",
    type=click.Choice(["client", "server"]),
    default=None,
    help="This side aborts (RST) instead of closing.",
)
@click.option(
    "--bare-fin", is_flag=True, help="Inject a FIN without ACK toward A after the handshake."
)
@click.option(
    "--prompt-close",
    is_flag=True,
    help="The passive side closes at once on EOF: three-segment close.",
)
@click.option(
    "--request-response",
    is_flag=True,
    help="B answers only after reading all of A's bytes; the closer's FIN waits "
    "until its data is acknowledged.",
)
@click.option(
    "--mss",
    type=click.IntRange(min=64, max=65495),
    default=1460,
    show_default=True,
    help="Both hosts' MSS.",
)
@click.option(
    "--msl",
    type=click.FloatRange(min=0.0, min_open=True),
    default=30.0,
    show_default=True,
    help="MSL in seconds; TIME-WAIT lasts 2*MSL.",
)
@click.option(
    "--summary",
    "summary_only",
    is_flag=True,
    help="Print only the outcome (bytes, digests, states, counters), no ladder.",
)
@_output_options
def simulate(
    closer: str,
    client_bytes: int,
    server_bytes: int,
    half_close_bytes: int,
    loss: float,
    dup: float,
    reorder: float,
    corrupt: float,
    delay_ms: float,
    bandwidth_mbps: float | None,
    queue_bytes: int | None,
    seed: int,
    abort: str | None,
    bare_fin: bool,
    prompt_close: bool,
    request_response: bool,
    mss: int,
    msl: float,
    summary_only: bool,
    as_json: bool,
    pcap: Path | None,
    svg: Path | None,
    absolute: bool,
    ascii_only: bool,
    html: Path | None,
) -> None:
    """Run a two-host exchange between A (client) and B (server) on a
    simulated path and draw it: open, transfer, release.

    Long runs show their progress on a terminal (stderr), and long ladders
    fold runs of data segments into one line that counts them (lost and
    retransmitted ones too); the handshake and the release are always drawn
    in full.

    Exit status 1 when the connection failed (a timeout, an unexpected reset,
    a stream incomplete or damaged), with a last line saying why."""
    if closer == "both" and half_close_bytes:
        raise click.BadParameter(
            "needs a passive closer; with --closer both nobody is half-closed",
            param_hint="--half-close-bytes",
        )
    if queue_bytes is not None and bandwidth_mbps is None:
        raise click.BadParameter(
            "a queue only fills behind a bandwidth limit; add --bandwidth",
            param_hint="--queue",
        )
    result = _run(
        {
            "client_bytes": client_bytes,
            "server_bytes": server_bytes,
            "half_close_bytes": half_close_bytes,
            "closer": closer,
            "abort": abort,
            "prompt_close": prompt_close,
            "request_response": request_response,
            "bare_fin": bare_fin,
            "loss": loss,
            "dup": dup,
            "reorder": reorder,
            "corrupt": corrupt,
            "delay_ms": delay_ms,
            "bandwidth_mbps": bandwidth_mbps,
            "queue_bytes": queue_bytes,
            "seed": seed,
            "mss": mss,
            "msl": msl,
        },
        progress=True,
    )
    _write_files(result, pcap, svg, absolute, html)
    if as_json:
        click.echo(_json_out(result, absolute))
    elif summary_only:
        click.echo(format_summary(result, ascii_only=ascii_only), nl=False)
    else:
        click.echo(_ladder(result, absolute, ascii_only), nl=False)
        click.echo()
        click.echo(format_summary(result, ascii_only=ascii_only), nl=False)
    if failures(result):
        sys.exit(1)


commands: list[click.Command] = [demo, simulate]
