"""Partitions that stream (analyze/weave.py's :class:`Stream` and
:class:`Weaver`): a partition's connections leave its tracker once they are
retired and their ids known, so it holds its open connections (and those
of the chunks whose ids have not come back), not every connection; the
output stays byte for byte the sequential run's whatever the lag of the
ids, the blocks, the spooling of waiting lines, Zeek's timers, a set; the
worker processes retire too; a run that falls back after writing lines
writes the rest."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.capture.builders import pcap

from finwait.analyze import analyze_file, weave
from finwait.analyze.jsonl import write_jsonl
from finwait.analyze.partition import serial_runner
from finwait.analyze.sets import analyze_set
from finwait.analyze.summary import Summary
from finwait.analyze.tracker import CLOSE_AFTER, IDLE_AFTER, NONE, Tracker
from finwait.analyze.weave import Output, Stream
from finwait.cli import main
from finwait.cli.analyze import _csv_lines

from .test_chunks import rotate_at
from .test_jsonl import zoo
from .test_streaming import _conn
from .test_weave import _csv, _shown


def _cuts(path: Path, pieces: int) -> dict[str, list[int]]:
    size = path.stat().st_size
    return {str(path): [size * k // pieces for k in range(1, pieces)]}


def _json(res: object) -> str:
    buf = io.StringIO()
    write_jsonl(res, buf)  # type: ignore[arg-type]
    return buf.getvalue()


def _run(files: list[Path], mode: str, parts: int, lag: int, cuts: dict[str, list[int]],
         as_set: bool = False, zeek: bool = False) -> tuple[str, Output, object]:  # fmt: skip
    buf = io.StringIO()
    out = Output(mode, buf, lines=_csv_lines if mode == "csv" else None)
    res = analyze_set(files, runner=serial_runner(parts, lag), cuts=cuts, as_set=as_set,
                      output=out, ordered=not as_set, zeek_timeouts=zeek)  # fmt: skip
    return buf.getvalue(), out, res


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 16 ids and 2 kB of lines held: many blocks, most of the
    waiting lines spooled."""
    monkeypatch.setattr(weave, "WEAVE", 16)
    monkeypatch.setattr(weave, "HELD", 2048)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    pieces=st.integers(2, 12),
    parts=st.integers(1, 3),
    lag=st.integers(0, 4),
    zeek=st.booleans(),
)
def test_streamed_equals_sequential(
    tmp_path: Path, small_blocks: None, seed: int, pieces: int, parts: int, lag: int, zeek: bool
) -> None:
    """Ids right when the retirements come in several rounds and the ids
    reach the partitions ``lag`` chunks late; JSON, CSV, the summary and
    --stats; with Zeek's timers too."""
    path = tmp_path / f"z{seed}.pcap"
    path.write_bytes(zoo(seed, 120))
    cuts = _cuts(path, pieces)
    want = analyze_file(path, zeek_timeouts=zeek)
    text, out, res = _run([path], "json", parts, lag, cuts, zeek=zeek)
    assert out.done and text == _json(want) and want.n >= 100
    assert res.stats() == want.stats()  # type: ignore[attr-defined]
    text, _, _ = _run([path], "csv", parts, lag, cuts, zeek=zeek)
    assert text == _csv(want)
    _, out, _ = _run([path], "summary", parts, lag, cuts, zeek=zeek)
    whole = Summary()
    whole.add(want)
    assert out.summary is not None and _shown(out.summary) == _shown(whole)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    at=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    lag=st.integers(0, 3),
)
def test_streamed_set_equals_sequential(
    tmp_path: Path, small_blocks: None, seed: int, at: list[float], lag: int
) -> None:
    """A set: each line's ``files``, for connections retired in the
    middle of a file, at its end, and left to the end of the run."""
    import tempfile

    d = Path(tempfile.mkdtemp(dir=tmp_path))
    files = rotate_at(zoo(seed, 100), at, d)
    want = analyze_set(files)
    cuts = {str(f): [f.stat().st_size // 3, 2 * f.stat().st_size // 3] for f in files}
    text, out, _ = _run(files, "json", 2, lag, cuts, as_set=True)
    assert out.done and text == _json(want)


def _short_lived(tmp_path: Path) -> Path:
    """150 connections over 20 minutes, one every 7 s, each closed within
    0.1 s (a FIN or a RST; some reusing a 4-tuple), except 5 left open."""
    pkts = []
    for k in range(150):
        close = "open" if k % 37 == 5 else ("rst" if k % 5 == 0 else "fin")
        port = 45000 + k if close == "open" else 40000 + k % 60
        pkts += [(1.7e9 + t, p) for t, p in _conn(7.0 * k, port, close)]
    pkts.sort(key=lambda p: p[0])
    path = tmp_path / "short.pcap"
    path.write_bytes(pcap(pkts, 101))
    return path


def _open(tr: Tracker) -> int:
    """Connections of ``tr`` that :meth:`Tracker.retire` would keep."""
    n = tr.nconns
    fin, rst = tr.s.anyfin_frame[: 2 * n], tr.s.anyrst_frame[: 2 * n]
    closed = ((fin[0::2] != NONE) & (fin[1::2] != NONE)) | (rst[0::2] != NONE) | (rst[1::2] != NONE)
    idle = tr.now - tr.c.last_ts[:n]
    return int((idle <= [CLOSE_AFTER if c else IDLE_AFTER for c in closed]).sum())


@pytest.mark.parametrize("lag", [0, 2])
def test_a_partition_holds_its_open_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lag: int
) -> None:
    """After each retirement, a partition's tracker holds its open
    connections and those whose ids have not come back, no more (before
    streaming, every connection of its 4-tuples: about a half of the
    capture's each); the largest is a small share of the capture's."""
    seen: list[tuple[int, int, int]] = []
    retire = Stream.retire

    def watched(self: Stream):  # type: ignore[no-untyped-def]
        yield from retire(self)
        tr = self.folder.tracker
        seen.append((tr.nconns, _open(tr), tr.nconns - self.known))

    monkeypatch.setattr(Stream, "retire", watched)
    path = _short_lived(tmp_path)
    want = analyze_file(path)
    text, _, _ = _run([path], "json", 2, lag, _cuts(path, 40))
    assert text == _json(want)
    # (retire takes connections out once they are a quarter of the rows)
    assert all(held <= (open_ + unknown) * 4 / 3 + 1 for held, open_, unknown in seen)
    assert len(seen) == 2 * 40 and max(h for h, _, _ in seen) < want.n / 8


def test_workers_retire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--workers 2``: each worker process sends connections while it
    still has chunks to fold, not only at the end; the output is the
    sequential run's."""
    import os

    log = tmp_path / "log"
    out = Stream._out

    def logged(self: Stream, tr: Tracker):  # type: ignore[no-untyped-def]
        f = self.folder
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {f.next} {len(f.file_of)} {tr.nconns}\n")
        yield from out(self, tr)

    monkeypatch.setattr(Stream, "_out", logged)
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(9, 400))
    want = CliRunner().invoke(main, ["analyze", "--json", str(path)])
    got = CliRunner().invoke(main, ["analyze", "--json", "--workers", "2", "--chunk-mb", "0.02",
                                    str(path)])  # fmt: skip
    assert got.exit_code == 0 and got.output == want.output
    rows = [tuple(map(int, x.split())) for x in log.read_text().splitlines()]
    early = {pid for pid, folded, chunks, n in rows if folded < chunks and n}
    assert len({pid for pid, *_ in rows}) == 2 and len(early) == 2
    assert sum(n for *_, n in rows) == len(want.output.splitlines())


@pytest.mark.parametrize("mode", ["json", "csv"])
def test_fall_back_after_lines_were_written(
    tmp_path: Path, small_blocks: None, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A chunk that does not read cleanly after the partitions wrote some
    lines: the run falls back to a sequential read, whose lines from
    there on follow (Output.rest, as the command does): the sequential
    output, each line once."""
    from finwait.analyze import partition

    path = _short_lived(tmp_path)
    cuts = _cuts(path, 10)
    split = partition.decode_split

    def damaged(chunk, n, pack=False, keep=None):  # type: ignore[no-untyped-def]
        pieces = split(chunk, n, pack, keep)
        if chunk.index == 8:
            for pc in pieces:
                pc.error = "damaged"
        return pieces

    monkeypatch.setattr(partition, "decode_split", damaged)
    buf = io.StringIO()
    out = Output(
        mode, buf, "HEAD\n" if mode == "csv" else "", _csv_lines if mode == "csv" else None
    )
    res = analyze_set([path], runner=serial_runner(2), cuts=cuts, as_set=False, output=out,
                      ordered=True)  # fmt: skip
    assert not out.done and 0 < out.written < res.n
    out.rest(res)
    want = analyze_file(path)
    assert buf.getvalue() == (_json(want) if mode == "json" else "HEAD\n" + _csv(want))


def test_a_worker_lost_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that ends in the middle of the run (after lines were
    written): the run falls back to a sequential read and the output is
    still the sequential run's, each line once."""
    import multiprocessing
    import os

    from finwait.analyze import partition

    out = Stream._out
    calls = [0]

    def lost(self: Stream, tr: Tracker):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if multiprocessing.current_process().name == "finwait-partition-1" and calls[0] == 6:
            os._exit(3)  # (the forked worker 1 only: worker 0 goes on)
        yield from out(self, tr)

    monkeypatch.setattr(Stream, "_out", lost)
    monkeypatch.setattr(weave, "WEAVE", 16)
    # Small pipes: worker 0 fills its pipe and waits; the main process must
    # still see worker 1's end (no other process may hold its pipe open).
    monkeypatch.setattr(partition, "_roomy", lambda fd: None)
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(9, 600))
    want = CliRunner().invoke(main, ["analyze", "--json", str(path)])
    got = CliRunner().invoke(main, ["analyze", "--json", "--workers", "2", "--chunk-mb", "0.02",
                                    str(path)])  # fmt: skip
    assert got.exit_code == 0 and got.output == want.output
