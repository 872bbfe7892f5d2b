"""finwait CLI: ``finwait analyze`` — how every connection in a capture
opened and was released (docs/analyze.md)."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from .files import DIRS_OK, INPUT, OUTPUT, OUTPUT_DIR, FileArgError, write_text, writing

if TYPE_CHECKING:
    from pathlib import Path

    from ..analyze import Analysis
    from ..analyze.summary import Summary
    from ..analyze.weave import Output

# numpy's BLAS starts a thread per core at import; the analyzer does no
# linear algebra, so one thread (the user's setting wins) saves start-up CPU.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# The analyzer (numpy) and the renderers are imported when a command runs,
# not when the CLI is built: `finwait analyze --help` stays fast.  A missing
# numpy is still found here, so the CLI names the extra that brings it.
if importlib.util.find_spec("numpy") is None:
    raise ModuleNotFoundError("No module named 'numpy'", name="numpy")

CSV_FIELDS = (
    "file", "id", "client_addr", "client_port", "server_addr", "server_port", "start", "end",
    "duration", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "handshake", "close",
    "first_fin", "reset_by", "reset_after_fin", "half_close_bytes", "anomalies", "conn_state",
    "history",
)  # fmt: skip
PROGRESS_AFTER = 1.0  # seconds: a run that takes longer shows a progress bar


def _run(
    path: str,
    progress: bool,
    zeek_timeouts: bool = False,
    checksums: bool = False,
    emit: Any = None,
    follow: bool = False,
) -> Analysis:
    from ..analyze import analyze_file

    opts: dict[str, Any] = {
        "zeek_timeouts": zeek_timeouts, "verify_checksums": checksums, "emit": emit,
        "follow": follow,
    }  # fmt: skip
    if not progress:
        return analyze_file(path, **opts)
    bar = _LateBar(path, _size(path))
    try:
        return analyze_file(path, progress=bar.update, **opts)
    finally:
        bar.stop()


def _run_streamed(
    path: str,
    progress: bool,
    zeek_timeouts: bool,
    checksums: bool,
    multi: bool,
    mode: str,
    wanted: tuple[int, ...] = (),
    follow: bool = False,
) -> tuple[Analysis, Summary | None]:
    """One file read once, its connections handed over as they are done
    with (analyze_file's ``emit``), so memory holds only the open ones:
    ``json`` and ``csv`` lines are written in id order as they come, the
    ``summary`` gathers its counts and few records, ``stats`` only counts,
    ``one`` keeps the records of the connections ``wanted``."""
    import numpy as np

    from ..analyze.jsonl import OrderedJsonl
    from ..capture.decode import member

    summary: Summary | None = None
    writer: OrderedJsonl | None = None
    if mode == "json":
        writer = OrderedJsonl(sys.stdout, path if multi else None, as_done=follow)
    elif mode == "csv":
        writer = OrderedJsonl(sys.stdout, lines=_csv_lines, as_done=follow)
    elif mode == "summary":
        from ..analyze.summary import Summary  # (on use: heapq)

        summary = Summary()
    kept: dict[int, dict[str, Any]] = {}

    def keep(piece: Analysis) -> None:
        ids = np.arange(1, piece.n + 1) if piece.ids is None else piece.ids
        for row in np.flatnonzero(member(ids, np.array(sorted(wanted)))).tolist():
            kept[int(ids[row])] = piece.record(row + 1)

    emit = writer.add if writer else summary.add if summary else keep if wanted else _discard
    try:
        res = _run(path, progress, zeek_timeouts, checksums, emit=emit, follow=follow)
        if mode == "one":
            res.kept = kept
        return res, summary
    finally:
        if writer is not None:
            writer.close()


def _discard(_piece: Analysis) -> None:
    return None


def _run_set(
    files: tuple[str, ...],
    progress: bool,
    zeek_timeouts: bool,
    workers: int = 1,
    chunk_bytes: int = 32 << 20,
    as_set: bool = True,
    checksums: bool = False,
    output: Output | None = None,
) -> Analysis:
    """A set, or one file cut into chunks tracked by ``workers`` processes
    (which, with ``output``, write the connections themselves: weave.py)."""
    from ..analyze.partition import process_runner
    from ..analyze.sets import analyze_set

    kw: dict[str, Any] = {
        "zeek_timeouts": zeek_timeouts, "chunk_bytes": chunk_bytes, "as_set": as_set,
        "verify_checksums": checksums,
        "runner": process_runner(workers) if workers > 1 else None,
        "output": output if workers > 1 else None,
    }  # fmt: skip
    if not progress:
        return analyze_set(files, **kw)
    sizes = [_size(f) for f in files]
    bar = _LateBar(files[0], None if None in sizes else sum(s for s in sizes if s is not None))
    try:
        return analyze_set(files, progress=bar.update, **kw)
    finally:
        bar.stop()


def _run_dask(
    address: str,
    files: tuple[str, ...],
    as_set: bool,
    zeek_timeouts: bool,
    chunk_bytes: int,
    checksums: bool,
    progress: bool,
    output: Output | None = None,
) -> list[Analysis]:
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise click.ClickException("--dask needs dask.distributed: pip install 'finwait[dask]'")
    from ..analyze.dask import DaskRunner
    from ..analyze.sets import analyze_set

    kw: dict[str, Any] = {
        "zeek_timeouts": zeek_timeouts, "chunk_bytes": chunk_bytes, "verify_checksums": checksums,
    }  # fmt: skip
    try:
        runner = DaskRunner(address, progress=progress)
    except (OSError, ValueError, TimeoutError) as err:
        raise click.ClickException(f"--dask {address}: {err}") from None
    with runner:
        if as_set:
            return [analyze_set(files, runner=runner, output=output, **kw)]
        one = output if len(files) == 1 else None
        return [analyze_set([f], runner=runner, ordered=True, as_set=False, output=one, **kw)
                for f in files]  # fmt: skip


class _LateBar:
    """A progress bar on stderr that appears only once the run has taken
    more than PROGRESS_AFTER seconds (env FINWAIT_PROGRESS_AFTER)."""

    def __init__(self, path: str, total: int | None) -> None:
        self.path = path
        self.total = total  # (None: no total known)
        self.start = time.monotonic()
        env = os.environ.get("FINWAIT_PROGRESS_AFTER")
        self.after = float(env) if env else PROGRESS_AFTER
        self.bar: Any = None

    def update(self, done: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.start < self.after:
                return
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            self.bar = Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                TimeRemainingColumn(), console=_console(stderr=True), transient=True,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task(os.path.basename(self.path), total=self.total)
        self.bar.update(self.task, completed=done)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _size(path: str) -> int | None:
    """The bar's total: the file's size, or None (no total) when the bytes
    read are not the file's (compressed) or its size is unknown (a pipe)."""
    from ..analyze.chunks import size_of
    from ..capture.reader import compression_of, read_once

    if read_once(path) or compression_of(path) is not None:
        return None
    return size_of(path)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def _allow_dirs(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """--set is eager: FILE arguments parsed after it may be directories."""
    if value:
        ctx.meta[DIRS_OK] = True
    return value


@click.command("analyze")
@click.argument("files", nargs=-1, required=True, type=INPUT)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per connection (JSON Lines)."
)
@click.option("--csv", "as_csv", is_flag=True, help="One CSV row per connection.")
@click.option(
    "--explain", "explain", type=int, metavar="ID", help="Explain connection ID's release."
)
@click.option("--ladder", "ladder", type=int, metavar="ID", help="Text ladder of connection ID.")
@click.option("--svg", "svg", type=(int, OUTPUT), metavar="ID OUT.svg",
              help="SVG ladder of connection ID.")  # fmt: skip
@click.option("--html", "html_out", type=OUTPUT, metavar="OUT.html",
              help="Self-contained HTML report: summary, sortable table, ladders.")  # fmt: skip
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes: one FILE (or a --set) is read and tracked in parallel; several files are analysed apart in parallel.")  # fmt: skip
@click.option("--zeek-timeouts", is_flag=True,
              help="Split connections where Zeek's TCP timers would (close/reset delay, attempt, inactivity).")  # fmt: skip
@click.option("--verify-checksums", is_flag=True,
              help="Drop segments whose TCP checksum is wrong (history C/c), as Zeek does.")  # fmt: skip
@click.option("--parquet", "parquet_out", type=OUTPUT, metavar="OUT.parquet",
              help="The connection table as Parquet (the JSON Lines fields, nested as structs/lists; needs finwait[parquet]).")  # fmt: skip
@click.option("--parquet-dataset", "dataset_out", type=OUTPUT_DIR, metavar="DIR",
              help="The connection table as a Parquet dataset: DIR/part-NNNNN.parquet of 1 M rows (file_index=K/ per file analysed apart).")  # fmt: skip
@click.option("--dask", "dask_at", metavar="tcp://HOST:PORT|local[:N]",
              help="Read and track chunks as Dask tasks on a cluster or a local one (needs finwait[dask]).")  # fmt: skip
@click.option("--chunk-mb", type=click.FloatRange(0.01, 1 << 20), default=32.0, show_default=True,
              help="Chunk size for --workers / --dask on one file or a set.")  # fmt: skip
@click.option("--set", "as_set", is_flag=True, is_eager=True, callback=_allow_dirs,
              help="The files (or the files in DIR) are one rotated capture: connections crossing files are one.")  # fmt: skip
@click.option("--follow", is_flag=True,
              help="FILE is live (- or a pipe: tcpdump -U -w - | finwait analyze --follow --json -): analyse packets as they arrive and write each connection's line when it is done, in the order they end.")  # fmt: skip
@click.option("--stats", "as_stats", is_flag=True,
              help="Print packets read, TCP analysed and skipped by reason as JSON (one object per file).")  # fmt: skip
def analyze_cmd(
    files: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    explain: int | None,
    ladder: int | None,
    svg: tuple[int, str] | None,
    html_out: str | None,
    workers: int,
    zeek_timeouts: bool,
    verify_checksums: bool,
    as_stats: bool,
    as_set: bool,
    parquet_out: Path | None,
    dataset_out: str | None,
    dask_at: str | None,
    chunk_mb: float,
    follow: bool,
) -> None:
    """Explain how every TCP connection in FILE... opened and was released.

    Reads pcap and pcapng, also compressed (gzip, bzip2, xz; zstd and LZ4
    with finwait[compressed]); FILE may be a URL, or - for standard input.
    Connection IDs are 1-based, in order of first
    packet, per file.  With --set, FILE... (or the files in a directory)
    are one rotated capture, ordered by first timestamp: ids, frames and
    connections are per set.  Exit status 2 when a file is empty, truncated
    or corrupt (the connections read before the damage, and in a set the
    other files, are still reported)."""
    from ..analyze.alloc import steady

    steady()  # (glibc: fewer fresh pages for the numpy temporaries; analyze/alloc.py)
    if as_set:
        from ..analyze.sets import expand

        files = tuple(expand(files))
        for f in files:
            INPUT.convert(f, None, None)
        if not files:
            raise click.UsageError("--set: no files")
    if as_set or dask_at is not None or workers > 1:
        from ..capture.reader import read_once

        for f in files:
            if read_once(f):
                raise FileArgError(f, "standard input or a pipe is read once, from start to end: "
                                      "analyse it without --workers, --dask and --set")  # fmt: skip
    one_conn = explain is not None or ladder is not None or svg is not None
    if follow and (
        len(files) != 1 or not (as_json or as_csv) or as_set or dask_at is not None
        or workers > 1 or one_conn or html_out or parquet_out or dataset_out or as_stats
    ):  # fmt: skip
        raise click.UsageError("--follow takes one FILE and --json or --csv, and no other output")
    if (one_conn or html_out is not None) and len(files) != 1:
        raise click.UsageError("--explain, --ladder, --svg and --html take exactly one FILE")
    if parquet_out is not None or dataset_out is not None:
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise click.ClickException("--parquet needs pyarrow: pip install 'finwait[parquet]'")
    # The bar is on stderr, so it may run beside --json/--csv/--stats on stdout.
    show_bar = not one_conn and sys.stderr.isatty()
    results: list[Analysis]
    # Files read one by one stream (memory: open connections only), except
    # for what needs every connection at the end: the HTML report, Parquet.
    whole = html_out or parquet_out or dataset_out
    mode = next(m for m, on in (("stats", as_stats), ("one", one_conn), ("json", as_json),
                                ("csv", as_csv), ("summary", True)) if on)  # fmt: skip
    wanted = tuple(c for c in (explain, ladder, svg[0] if svg else None) if c is not None)
    streamed = False
    summaries: list[Summary | None] = []
    output: Output | None = None
    parallel = dask_at is not None or workers > 1
    if parallel and (as_set or len(files) == 1) and not whole and mode != "one":
        # The workers classify and write the connections themselves (this
        # process interleaves their lines), unless every connection is
        # needed here at the end.
        from ..analyze.weave import Output

        head = ""
        if mode == "csv":
            buf = io.StringIO()
            csv.writer(buf).writerow(CSV_FIELDS)
            head = buf.getvalue()
        output = Output(mode, sys.stdout, head, _csv_lines if mode == "csv" else None)
    if dask_at is not None:
        results = _run_dask(dask_at, files, as_set, zeek_timeouts, int(chunk_mb * (1 << 20)),
                            verify_checksums, show_bar, output)  # fmt: skip
    elif as_set or (workers > 1 and len(files) == 1):
        results = [
            _run_set(
                files,
                show_bar,
                zeek_timeouts,
                workers,
                int(chunk_mb * (1 << 20)),
                as_set,
                verify_checksums,
                output,
            )
        ]
    elif workers > 1 and len(files) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(files))) as pool:
            n = len(files)
            results = list(
                pool.map(_run, files, [False] * n, [zeek_timeouts] * n, [verify_checksums] * n)
            )
    elif not whole:
        streamed = True
        multi = len(files) > 1
        if mode == "csv":
            csv.writer(sys.stdout).writerow(CSV_FIELDS)
        results = []
        for f in files:
            res, summ = _run_streamed(
                f, show_bar, zeek_timeouts, verify_checksums, multi, mode, wanted, follow
            )
            results.append(res)
            summaries.append(summ)
    else:
        results = [_run(f, show_bar, zeek_timeouts, verify_checksums) for f in files]
    from ..analyze.jsonl import write_jsonl

    out = sys.stdout  # (CliRunner swaps it in tests)
    if html_out is not None:
        from ..analyze.html import render_html

        write_text(html_out, render_html(results[0]))
    for res in results:
        _warn_if_no_tcp(res)
    if parquet_out is not None:
        from ..analyze.parquet import write_parquet

        with writing(parquet_out):
            write_parquet(results, parquet_out)
    if dataset_out is not None:
        from ..analyze.parquet import write_dataset

        with writing(dataset_out):
            write_dataset(results, dataset_out)
    if as_stats:
        import json

        for res in results:
            out.write(json.dumps(res.stats()) + "\n")
    elif one_conn:
        _one(results[0], explain, ladder, svg)
    elif (streamed or (output is not None and output.done)) and mode in ("json", "csv"):
        pass  # written while reading
    elif output is not None and output.written:
        # The partitions wrote the first connections before the run fell
        # back to a sequential read (a chunk that did not read cleanly):
        # the rest.
        output.rest(results[0])
    elif as_json:
        multi = len(results) > 1
        for res in results:
            write_jsonl(res, out, res.path if multi else None)
    elif as_csv:
        w = csv.writer(out)
        w.writerow(CSV_FIELDS)
        for res in results:
            for r in res.records():
                w.writerow(_csv_row(res.path, r))
    else:
        for k, res in enumerate(results):
            if output is not None and output.done:
                _summary(res, output.summary)
            else:
                _summary(res, summaries[k] if streamed else None)
    failed = [r for r in results if r.error is not None]
    if failed:
        from ..render.rows import count  # (on use: it brings the engine's trace)
    for bad in failed:
        for err in bad.errors or [str(bad.error)]:
            click.echo(f"finwait analyze: {err}", err=True)
        if not bad.empty:
            where = (
                "before the damage"
                if bad.files is None
                else "read (the set's other files, and each damaged one up to its damage)"
            )
            click.echo(
                f"  {count(bad.n, 'connection')} from {count(bad.records_read, 'packet')} {where} "
                "are reported above",
                err=True,
            )
    if failed:
        sys.exit(2)


def _skip_text(res: Analysis) -> str:
    """``reason N (detail N, ...)`` for every skip reason, most first."""
    parts = []
    for reason, details in sorted(res.skipped().items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(details.values())
        inner = ", ".join(
            f"{d} {n}" for d, n in sorted(details.items(), key=lambda kv: -kv[1]) if d != reason
        )
        parts.append(f"{reason} {total}" + (f" ({inner})" if inner else ""))
    return "; ".join(parts)


def _warn_if_no_tcp(res: Analysis) -> None:
    """A file with packets but no TCP connection says why on stderr."""
    if res.records_read and not res.n:
        why = _skip_text(res) or "no packet was decoded"
        click.echo(
            f"finwait analyze: warning: {res.path}: {res.records_read} packet(s), "
            f"no TCP connection: {why}",
            err=True,
        )


def _csv_lines(res: Analysis, lo: int, hi: int) -> list[str]:
    """The CSV rows of connections ``lo`` .. ``hi`` - 1 of ``res``, as text."""
    buf = io.StringIO()
    w = csv.writer(buf)
    out = []
    for r in res.records(lo, hi):
        w.writerow(_csv_row(res.path, r))
        out.append(buf.getvalue())
        buf.seek(0)
        buf.truncate()
    return out


def _csv_row(path: str, r: dict[str, Any]) -> list[Any]:
    return [
        path, r["id"], r["client"]["addr"], r["client"]["port"], r["server"]["addr"],
        r["server"]["port"], r["start"], r["end"], r["duration"],
        r["packets"]["client_to_server"], r["packets"]["server_to_client"],
        r["bytes"]["client_to_server"], r["bytes"]["server_to_client"], r["handshake"],
        r["close"], r["first_fin"] or "", r["reset_by"] or "", r["reset_after_fin"],
        r["half_close_bytes"], ";".join(a["name"] for a in r["anomalies"]), r["conn_state"],
        r["history"],
    ]  # fmt: skip


def _one(
    res: Analysis, explain: int | None, ladder: int | None, svg: tuple[int, str] | None
) -> None:
    from ..analyze import connection_trace
    from ..render import explain_release, render_svg, render_text
    from ..render.rows import count

    for cid in (explain, ladder, svg[0] if svg else None):
        if cid is not None and not 1 <= cid <= res.n:
            raise click.BadParameter(
                f"no connection {cid}: {res.path} has {res.n}", param_hint="ID"
            )
    if explain is not None:
        rec = res.record(explain)
        tr = connection_trace(res.path, res, explain)
        click.echo(
            f"Connection {explain}: {_hp(rec['client'])} (client) -> "
            f"{_hp(rec['server'])} (server); "
            f"handshake {rec['handshake']}, close {rec['close']}, first FIN {rec['first_fin']}"
        )
        click.echo(explain_release(tr, release=rec))
        if rec["half_close_bytes"]:
            n = rec["half_close_bytes"]
            click.echo(f"Half-close: {count(n, 'byte')} flowed after the first FIN.")
        for a in rec["anomalies"]:
            click.echo(f"Anomaly {a['name']}: frames {', '.join(map(str, a['frames']))}")
    if ladder is not None:
        click.echo(render_text(connection_trace(res.path, res, ladder)), nl=False)
    if svg is not None:
        write_text(svg[1], render_svg(connection_trace(res.path, res, svg[0])))


def _hp(end: dict[str, Any]) -> str:
    from ..render.rows import hostport

    return hostport(end["addr"], end["port"])


def _summary(res: Analysis, summ: Summary | None = None) -> None:
    """The text summary; ``summ`` gathered while streaming, else from ``res``."""
    from rich.table import Table

    from ..analyze.summary import Summary
    from ..render.rows import count

    if summ is None:
        summ = Summary()
        summ.add(res)
    con = _console()
    skipped = res.stats()["skipped"]
    # Plain lines (not wrapped to the terminal): scripts grep them.
    click.echo(
        f"{res.path}: {count(res.records_read, 'packet')} read, {res.tcp_packets:,} TCP "
        f"analysed, {skipped:,} skipped, {count(res.n, 'connection')}"
    )
    if skipped:
        click.echo(f"Skipped: {_skip_text(res)}")
    if res.notes:
        click.echo("Notes: " + ", ".join(f"{k} {v}" for k, v in sorted(res.notes.items())))
    if not res.n:
        return
    t = Table(title="Connections by close type and by who sent the first FIN")
    t.add_column("close")
    for side in ("client", "server", "both", "none"):
        t.add_column(side, justify="right")
    t.add_column("total", justify="right")
    for close, row in summ.close_rows():
        t.add_row(close, *(f"{x:,}" for x in row), f"{sum(row):,}")
    con.print(t)
    an = summ.anomaly_counts()
    if an:
        ta = Table(title="Anomalies")
        ta.add_column("anomaly")
        ta.add_column("connections", justify="right")
        ta.add_column("segments", justify="right")
        for name, (nc, ns) in sorted(an.items(), key=lambda kv: -kv[1][0]):
            ta.add_row(name, f"{nc:,}", f"{ns:,}")
        con.print(ta)
    tl = Table(title="Longest connections")
    for col in ("id", "client", "server", "duration s", "close"):
        tl.add_column(col)
    for r in summ.longest():
        tl.add_row(str(r["id"]), _hp(r["client"]), _hp(r["server"]), f"{r['duration']:.3f}",
                   r["close"])  # fmt: skip
    con.print(tl)
    if summ.unclosed:
        tu = Table(title=f"Unclosed connections ({summ.unclosed}; first 10)")
        for col in ("id", "client", "server", "close", "first FIN"):
            tu.add_column(col)
        for r in summ.first_unclosed():
            tu.add_row(str(r["id"]), _hp(r["client"]), _hp(r["server"]), r["close"],
                       r["first_fin"] or "-")  # fmt: skip
        con.print(tu)


commands: list[click.Command] = [analyze_cmd]
