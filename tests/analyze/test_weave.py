"""The output made in the partitions (analyze/weave.py): each partition
classifies and renders its own connections with capture-wide ids, and the
lines are interleaved by id — byte for byte what the sequential run
writes (JSON Lines, CSV, the text summary's counts, --stats), for random
captures, cut points and partition counts, one file and sets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finwait.analyze import analyze_file
from finwait.analyze import weave as weave_mod
from finwait.analyze.jsonl import write_jsonl
from finwait.analyze.partition import serial_runner
from finwait.analyze.sets import analyze_set
from finwait.analyze.summary import Summary
from finwait.analyze.weave import Output, Weaver, weave
from finwait.cli import main
from finwait.cli.analyze import _csv_lines

from .test_chunks import rotate_at
from .test_jsonl import zoo


def _woven(files: list[Path], mode: str, parts: int, cuts: dict[str, list[int]],
           as_set: bool) -> tuple[str, Output, object]:  # fmt: skip
    buf = io.StringIO()
    out = Output(mode, buf, lines=_csv_lines if mode == "csv" else None)
    res = analyze_set(files, runner=serial_runner(parts), cuts=cuts, as_set=as_set, output=out,
                      ordered=not as_set)  # fmt: skip
    return buf.getvalue(), out, res


def _shown(s: Summary) -> tuple[object, ...]:
    """What the text summary shows (the heaps' layout may differ)."""
    return (s.close_rows(), list(s.anomaly_counts().items()), s.tunnelled, s.unclosed,
            s.longest(), s.first_unclosed())  # fmt: skip


def _csv(res: object) -> str:
    return "".join(_csv_lines(res, 0, res.n))  # type: ignore[attr-defined]


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    fracs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
    parts=st.integers(1, 4),
)
def test_woven_equals_sequential(tmp_path: Path, seed: int, fracs: list[float], parts: int) -> None:
    path = tmp_path / f"z{seed}.pcap"
    path.write_bytes(zoo(seed, 60))
    cuts = {str(path): [int(f * path.stat().st_size) for f in fracs]}
    want = analyze_file(path)
    seq = io.StringIO()
    write_jsonl(want, seq)
    text, out, res = _woven([path], "json", parts, cuts, as_set=False)
    assert out.done and text == seq.getvalue() and want.n >= 40
    assert res.stats() == want.stats()  # type: ignore[attr-defined]
    text, out, _ = _woven([path], "csv", parts, cuts, as_set=False)
    assert text == _csv(want)
    _, out, _ = _woven([path], "summary", parts, cuts, as_set=False)
    whole = Summary()
    whole.add(want)
    assert out.summary is not None and _shown(out.summary) == _shown(whole)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    at=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    parts=st.integers(2, 3),
)
def test_woven_set_equals_sequential(
    tmp_path: Path, seed: int, at: list[float], parts: int
) -> None:
    """A set: each line's ``files`` too."""
    import tempfile

    d = Path(tempfile.mkdtemp(dir=tmp_path))
    files = rotate_at(zoo(seed, 40), at, d)
    want = analyze_set(files)
    seq = io.StringIO()
    write_jsonl(want, seq)
    cuts = {str(f): [f.stat().st_size // 2] for f in files}
    text, out, res = _woven(files, "json", parts, cuts, as_set=True)
    assert out.done and text == seq.getvalue()
    assert res.stats() == want.stats()  # type: ignore[attr-defined]


def test_weave_interleaves_by_id() -> None:
    a = b"a1\na2\na3\n"
    b = b"b1\nb2\n"
    got = [(np.frombuffer(x, dtype=np.uint8), np.array([3, 6, 9][: x.count(b"\n")]))
           for x in (a, b)]  # fmt: skip
    assert weave(np.array([0, 1, 1, 0, 0], dtype=np.uint8), got) == b"a1\nb1\nb2\na2\na3\n"


@pytest.mark.parametrize("mode", [["--json"], ["--csv"], ["--stats"], []])
@pytest.mark.parametrize("as_set", [False, True])
def test_workers_write_what_the_sequential_run_writes(
    tmp_path: Path, mode: list[str], as_set: bool
) -> None:
    """``--workers 2`` (processes): byte for byte the sequential output."""
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(9, 300))
    target = [str(path)]
    if as_set:
        d = tmp_path / "set"
        d.mkdir()
        rotate_at(path.read_bytes(), [0.3, 0.7], d)
        target = ["--set", str(d)]
    run = CliRunner().invoke
    want = run(main, ["analyze", *mode, *target])
    got = run(main, ["analyze", *mode, "--workers", "2", "--chunk-mb", "0.05", *target])
    assert want.exit_code == got.exit_code == 0, got.output
    assert got.output == want.output and len(want.output.splitlines()) >= (1 if mode else 10)
    if mode == ["--json"]:
        assert len({json.loads(x)["id"] for x in got.output.splitlines()}) >= 250


@pytest.mark.parametrize("maps", [0, 1, 256])
def test_lines_from_files_mapped_or_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         maps: int) -> None:  # fmt: skip
    """Lines a worker wrote to files (``--dask local:N``): mapped while
    fewer than ``MAPS`` pieces are, else read back and held or spooled as
    any; the same output either way, every file removed."""
    monkeypatch.setattr(weave_mod, "WEAVE", 4)
    monkeypatch.setattr(weave_mod, "HELD", 4)
    monkeypatch.setattr(weave_mod, "MAPS", maps)
    buf = io.StringIO()
    weaver = Weaver(Output("json", buf), 2, str(tmp_path))
    ids = [np.arange(p, 12, 2) for p in range(2)]  # partition p: ids p, p + 2 ...
    assert weaver.first(0, 0, ids[0]) == [] and len(weaver.first(1, 0, ids[1])) == 1

    def send(p: int, lo: int, hi: int) -> None:
        text = b"".join(b"line %d\n" % i for i in ids[p][lo:hi])
        path = tmp_path / f"{p}-{lo}"
        path.write_bytes(text)
        ends = np.cumsum([len(b"line %d\n" % i) for i in ids[p][lo:hi]])
        weaver.file_lines(ids[p][lo:hi], str(path), ends)
        assert not path.exists()

    send(1, 0, 6)  # (every block waits for partition 0's lines)
    send(0, 0, 3)
    # Mapped: held in no memory of the weaver's, never spooled; else the
    # lines beyond HELD went to its spool file.
    assert (weaver.maps > 0, weaver.spooled > 0) == ((True, False) if maps == 256 else
                                                     (maps > 0, True))  # fmt: skip
    send(0, 3, 6)
    weaver.close()
    assert buf.getvalue() == "".join(f"line {i}\n" for i in range(12))
    assert weaver.maps == 0 and sorted(tmp_path.iterdir()) == []
