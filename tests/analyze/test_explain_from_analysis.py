"""One release vocabulary: ``finwait analyze --explain`` explains from the
analyzer's classification (the record's ``close``), not from a second
judgement of its own."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from capture.builders import link, pcap, seed_exchange  # tests/capture (rootdir on sys.path)
from finwait.analyze import analyze_file, connection_trace
from finwait.cli import main
from finwait.render.explain import (
    SECOND_FIN,
    SIMULTANEOUS_FIN,
    THREE_WAY_FIN,
    explain_release,
    release_steps,
)


def _seed(tmp_path: Path) -> Path:
    p = tmp_path / "seed.pcap"
    p.write_bytes(pcap([(t, link(1, x)) for t, x in seed_exchange()], 1))
    return p


def test_second_fin_labelled_by_the_analyzers_close(tmp_path: Path) -> None:
    path = _seed(tmp_path)
    res = analyze_file(path)
    rec = res.record(1)
    assert rec["close"] == "four_way"
    tr = connection_trace(path, res, 1)
    roles = [s.role for s in release_steps(tr, release=rec)]
    assert SECOND_FIN in roles
    # The label follows the classification it is given, whatever the walk
    # would have judged on its own.
    for close, role in (("three_way", THREE_WAY_FIN), ("simultaneous", SIMULTANEOUS_FIN)):
        given = {**rec, "close": close}
        roles = [s.role for s in release_steps(tr, release=given)]
        assert role in roles and SECOND_FIN not in roles
    text = " ".join(explain_release(tr, release=rec).split())
    assert "The analyzer classifies this as a four-way close" in text
    assert "server closing first" in text


def test_cli_explain_says_the_analyzers_close(tmp_path: Path) -> None:
    path = _seed(tmp_path)
    r = CliRunner().invoke(main, ["analyze", str(path), "--explain", "1"])
    assert r.exit_code == 0, r.output
    assert "close four_way" in r.stdout
    assert "The analyzer classifies this as a four-way close" in " ".join(r.stdout.split())
