"""The seed round trip: `finwait demo --pcap` then `finwait analyze
--explain 1` gives back the seed's numbers (50/248, 51, 248/51, 249)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from finwait.analyze import analyze_file
from finwait.cli import main


def test_demo_pcap_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("finwait.capture.writer", reason="the pcap writer is not there yet")
    pcap = tmp_path / "seed.pcap"
    r = CliRunner().invoke(main, ["demo", "--pcap", str(pcap)])
    assert r.exit_code == 0, r.output
    rec = analyze_file(pcap).record(1)
    assert (rec["close"], rec["first_fin"]) == ("four_way", "server")
    fs, fc = rec["fins"]["server"], rec["fins"]["client"]
    assert (fs["seq"], fs["ack"], fs["acked_by"]["ack"]) == (50, 248, 51)
    assert (fc["seq"], fc["ack"], fc["acked_by"]["ack"]) == (248, 51, 249)
    out = CliRunner().invoke(main, ["analyze", str(pcap), "--explain", "1"])
    assert out.exit_code == 0
    for text in ("seq=50", "ack=248", "ack=51", "seq=248", "ack=249"):
        assert text in out.stdout


def test_summary_fits_80_columns(tmp_path: Path) -> None:
    """The summary's close-type table on an 80-column terminal: the longest
    close type whole and every count column there (the headers used to
    squeeze 'simultaneous' to 'simultaneo…')."""
    pcap = tmp_path / "both.pcap"
    r = CliRunner().invoke(main, ["simulate", "--closer", "both", "--pcap", str(pcap)])
    assert r.exit_code == 0, r.output
    out = CliRunner().invoke(main, ["analyze", str(pcap)], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    table = out.stdout.split("Longest connections")[0]
    row = next(line for line in table.splitlines() if "simultaneous" in line)
    assert "simultaneous │" in row and "…" not in table
    head = next(line for line in table.splitlines() if "close" in line and "total" in line)
    assert [c.strip() for c in head.strip("┃ ").split("┃")] == [
        "close", "client", "server", "both", "none", "total"
    ]  # fmt: skip
    drawn = [line for line in table.splitlines() if line[:1] in "┏┃┡│└"]
    assert len(drawn) >= 5 and max(len(line) for line in drawn) <= 80
