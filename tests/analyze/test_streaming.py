"""Streamed analysis (``analyze_file(emit=...)``, what ``--json`` uses):
connections are classified and written once done with, the tracker keeps
only the open ones, and the JSON Lines are the same, in the same order, as
the whole-file analysis."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.capture.builders import A4, ACK, B4, FIN, PSH, RST, SYN, ip4, pcap, tcp

from finwait.analyze import Analysis, analyze_file
from finwait.analyze.jsonl import OrderedJsonl, write_jsonl
from finwait.capture.reader import RawBatch, iter_batches
from finwait.cli import main


def _conn(t0: float, port: int, close: str) -> list[tuple[float, bytes]]:
    """One connection from client port ``port`` starting at ``t0``."""

    def c(dt: float, seq: int, ack: int, fl: int, n: int = 0) -> tuple[float, bytes]:
        return t0 + dt, ip4(A4, B4, tcp(port, 80, 100 + seq, 900 + ack, fl, n))

    def s(dt: float, seq: int, ack: int, fl: int, n: int = 0) -> tuple[float, bytes]:
        return t0 + dt, ip4(B4, A4, tcp(80, port, 900 + seq, 100 + ack, fl, n))

    segs = [c(0, 0, 0, SYN), s(0.01, 0, 1, SYN | ACK), c(0.02, 1, 1, ACK),
            c(0.03, 1, 1, PSH | ACK, 20), s(0.04, 1, 21, PSH | ACK, 30)]  # fmt: skip
    if close == "fin":
        segs += [c(0.05, 21, 31, FIN | ACK), s(0.06, 31, 22, FIN | ACK), c(0.07, 22, 32, ACK)]
    elif close == "rst":
        segs += [s(0.05, 31, 21, RST | ACK)]
    # "open": nothing more (until the keep-alives below)
    return segs


def _capture(tmp_path: Path) -> Path:
    """Connections over 20 minutes of capture time: closed ones every 7 s
    (some reusing a 4-tuple), a few left open, one of them open from the
    start with a packet every 200 s (it holds back every later id)."""
    pkts = _conn(0.0, 50000, "open")
    for k in range(1, 6):
        pkts.append((200.0 * k, ip4(A4, B4, tcp(50000, 80, 121, 931, ACK, 0))))
    for k in range(150):
        close = "open" if k % 37 == 5 else ("rst" if k % 5 == 0 else "fin")
        # closed ones reuse 60 client ports; open ones have their own
        pkts += _conn(3.0 + 7.0 * k, 45000 + k if close == "open" else 40000 + k % 60, close)
    pkts.sort(key=lambda p: p[0])
    path = tmp_path / "long.pcap"
    path.write_bytes(pcap(pkts, 101))
    return path


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 40 records (the reader's are 8 MiB): connections retire
    between batches, so small captures stream in many pieces."""
    from finwait.analyze import run

    def sliced(
        path: str | Path, chunk_size: int = 8 << 20, follow: bool = False
    ) -> Iterator[RawBatch]:
        for b in iter_batches(path, chunk_size):
            for lo in range(0, len(b), 40):
                sl = slice(lo, lo + 40)
                yield replace(
                    b, data_off=b.data_off[sl], caplen=b.caplen[sl], wirelen=b.wirelen[sl],
                    ts=b.ts[sl], linktype=b.linktype[sl], frame=b.frame[sl],
                )  # fmt: skip

    monkeypatch.setattr(run, "iter_batches", sliced)


def _streamed(path: Path, budget: int, **kw: bool) -> tuple[str, list[Analysis]]:
    out = io.StringIO()
    pieces: list[Analysis] = []
    w = OrderedJsonl(out, budget=budget)

    def emit(res: Analysis) -> None:
        pieces.append(res)
        w.add(res)

    analyze_file(path, emit=emit, **kw)
    w.close()
    return out.getvalue(), pieces


@pytest.mark.parametrize("zeek", [False, True])
@pytest.mark.parametrize("budget", [0, 1 << 20])
def test_streamed_equals_whole(tmp_path: Path, zeek: bool, budget: int) -> None:
    """Same lines, same order, with the held lines in memory or spilled to
    a file (budget 0); connections left the tracker in many pieces."""
    path = _capture(tmp_path)
    whole = io.StringIO()
    res = analyze_file(path, zeek_timeouts=zeek)
    write_jsonl(res, whole)
    text, pieces = _streamed(path, budget, zeek_timeouts=zeek)
    assert text == whole.getvalue()
    assert len(pieces) > 5
    ids = sorted(i for p in pieces for i in p.ids.tolist())  # type: ignore[union-attr]
    assert ids == list(range(1, res.n + 1))
    # The first connection stayed open: it left last, with the ones open at the end.
    assert 1 in pieces[-1].ids  # type: ignore[operator]


def test_cli_json_streams(tmp_path: Path) -> None:
    """``finwait analyze --json`` writes the streamed lines: the same as the
    records of the whole analysis."""
    path = _capture(tmp_path)
    got = CliRunner().invoke(main, ["analyze", "--json", str(path)])
    assert got.exit_code == 0, got.output
    lines = [json.loads(x) for x in got.output.splitlines()]
    assert lines == list(analyze_file(path).records())


def test_late_packet_starts_a_connection(tmp_path: Path) -> None:
    """A packet on a 4-tuple more than 5 s after the previous one once both
    FINs or a RST were seen (Zeek's tcp_close_delay), or 300 s after it in
    any case (tcp_inactivity_timeout), starts a new connection, streamed or
    not (so a connection can be written out and forgotten then)."""
    pkts = _conn(0.0, 40000, "fin")
    pkts.append((70.0, ip4(A4, B4, tcp(40000, 80, 122, 932, ACK, 0))))
    pkts += _conn(100.0, 40001, "open")
    pkts.append((350.0, ip4(A4, B4, tcp(40001, 80, 121, 931, ACK, 0))))
    pkts.append((700.0, ip4(A4, B4, tcp(40001, 80, 121, 931, ACK, 0))))
    path = tmp_path / "late.pcap"
    path.write_bytes(pcap(pkts, 101))
    want = [(1, "complete"), (2, "none"), (3, "complete"), (4, "none")]
    assert [(r["id"], r["handshake"]) for r in analyze_file(path).records()] == want
    text, _ = _streamed(path, 1 << 20)
    assert [(json.loads(x)["id"], json.loads(x)["handshake"]) for x in text.splitlines()] == want
    # Within the horizons: one connection each.
    pkts[8] = (4.0, pkts[8][1])
    pkts[-1] = (640.0, pkts[-1][1])
    path.write_bytes(pcap(sorted(pkts, key=lambda p: p[0]), 101))
    assert analyze_file(path).n == 2


@pytest.mark.parametrize(
    "mode",
    [[], ["--csv"], ["--stats"], ["--explain", "1"], ["--explain", "140"], ["--ladder", "3"]],
)
def test_cli_modes_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: list[str]) -> None:
    """The text summary, --csv, --stats and one connection's --explain or
    --ladder stream too (memory: the open connections), and print what the
    whole analysis gives (--set reads the file whole)."""
    from finwait.analyze.summary import Summary

    path = _capture(tmp_path)
    pieces: list[Analysis] = []
    add = Summary.add

    def counted(self: Summary, res: Analysis) -> None:
        pieces.append(res)
        add(self, res)

    monkeypatch.setattr(Summary, "add", counted)
    streamed = CliRunner().invoke(main, ["analyze", *mode, str(path)])
    assert streamed.exit_code == 0, streamed.output
    if not mode:
        assert len(pieces) > 5  # gathered piece by piece
    whole = CliRunner().invoke(main, ["analyze", "--set", *mode, str(path)])
    assert whole.exit_code == 0, whole.output
    assert streamed.output == whole.output


def test_summary_ties_by_id(tmp_path: Path) -> None:
    """Longest connections of equal duration are listed by id, whatever
    the order their pieces came in."""
    from finwait.analyze.summary import Summary

    res = analyze_file(_capture(tmp_path))
    res.cols["start"][:] = 0.0
    res.cols["end"][:] = 2.0
    res.cols["end"][[40, 90]] = 3.0
    s = Summary()
    s.add(res)
    assert [r["id"] for r in s.longest()] == [41, 91, 1, 2, 3]
    assert [r["id"] for r in s.first_unclosed()] == sorted(r["id"] for r in s.first_unclosed())


@pytest.mark.parametrize("zeek", [False, True])
@pytest.mark.parametrize("seed", [5, 11, 23])
def test_streamed_zoo_equals_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zeek: bool, seed: int
) -> None:
    """Varied connections (port reuse, probes, resets) in batches of 40
    records, retired after every batch that has any.  A bug this found (fixed): when a 4-tuple's current
    connection retired while an older one on it stayed (open, the newer
    one closed), its count of FIN/RST was carried into the connection its
    next packet began, whose next SYN then split it in two."""
    from finwait.analyze import tracker

    from .test_jsonl import zoo

    monkeypatch.setattr(tracker, "RETIRE_SHARE", 0.0)
    path = tmp_path / "zoo.pcap"
    path.write_bytes(zoo(seed, 600))
    whole = io.StringIO()
    write_jsonl(analyze_file(path, zeek_timeouts=zeek), whole)
    text, pieces = _streamed(path, 1 << 20, zeek_timeouts=zeek)
    assert text == whole.getvalue() and len(pieces) > 20
