"""``finwait demo`` and ``finwait simulate`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from finwait.cli import main


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def segments(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in data["events"] if e["kind"] == "segment"]


def release(data: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(from>to, flags, seq, ack) of delivered segments from the first FIN on."""
    segs = [e for e in segments(data) if e["fate"] == "delivered"]
    first = next(i for i, e in enumerate(segs) if "FIN" in e["flags"])
    return [
        (f"{e['from']}>{e['to']}", ",".join(e["flags"]), e["seq"], e["ack"]) for e in segs[first:]
    ]


def test_demo_json_has_the_seed_release_and_the_states() -> None:
    res = invoke("demo", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["relative"] is True
    assert data["endpoints"]["A"]["addr"] == "192.168.1.100"
    assert (data["endpoints"]["B"]["addr"], data["endpoints"]["B"]["port"]) == ("119.75.218.70", 80)
    assert release(data) == [
        ("B>A", "FIN,ACK", 50, 248),
        ("A>B", "ACK", 248, 51),
        ("A>B", "FIN,ACK", 248, 51),
        ("B>A", "ACK", 51, 249),
    ]
    states = [(e["who"], e["state"]) for e in data["events"] if e["kind"] == "state"]
    b_states = [s for who, s in states if who == "B"]
    a_states = [s for who, s in states if who == "A"]
    assert b_states[-4:] == ["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"]
    assert a_states[-3:] == ["CLOSE-WAIT", "LAST-ACK", "CLOSED"]
    s = data["summary"]
    assert (s["A"]["sent_bytes"], s["B"]["sent_bytes"]) == (247, 49)
    assert s["A"]["sent_sha256"] == s["B"]["received_sha256"]


def test_demo_half_close_bytes_json() -> None:
    data = json.loads(invoke("demo", "--half-close-bytes", "10", "--json").output)
    rel = release(data)
    assert ("A>B", "FIN,ACK", 258, 51) in rel
    assert rel[-1] == ("B>A", "ACK", 51, 259)
    assert data["summary"]["B"]["received_bytes"] == 257


def test_demo_text_has_title_ladder_and_explanation() -> None:
    res = invoke("demo")
    assert res.exit_code == 0
    out = res.output
    title = out.splitlines()[0]
    assert "192.168.1.100" in title and "119.75.218.70:80" in title
    for label in (
        "FIN,ACK seq=50 ack=248",
        "ACK seq=248 ack=51",
        "FIN,ACK seq=248 ack=51",
        "ACK seq=51 ack=249",
    ):
        assert label in out
    for state in ("FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSE-WAIT", "LAST-ACK"):
        assert state in out
    assert len(out.splitlines()) > 20  # ladder plus the explanation


def test_demo_ascii_and_absolute() -> None:
    out = invoke("demo", "--ascii", "--absolute").output
    assert out.isascii()
    assert "seq=50 ack=248" not in out  # raw numbers, not relative ones
    data = json.loads(invoke("demo", "--json", "--absolute").output)
    assert data["relative"] is False
    isn_b = data["endpoints"]["B"]["isn"]
    fins = [e for e in segments(data) if "FIN" in e["flags"]]
    assert fins[0]["seq"] == (isn_b + 50) % 2**32


def test_demo_writes_svg(tmp_path: Path) -> None:
    svg = tmp_path / "seed.svg"
    assert invoke("demo", "--svg", str(svg)).exit_code == 0
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith(("<svg", "<?xml"))
    assert "FIN-WAIT-2" in text


def test_demo_writes_pcap(tmp_path: Path) -> None:
    # The pcap writer is a colleague's module (capture/writer.py); until it
    # lands this is skipped, not faked.
    pytest.importorskip("finwait.capture.writer")
    pcap = tmp_path / "seed.pcap"
    assert invoke("demo", "--pcap", str(pcap)).exit_code == 0
    magic = pcap.read_bytes()[:4]
    assert magic in (
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
    )


def test_simulate_lossy_bulk_is_byte_exact() -> None:
    res = invoke(
        "simulate", "--loss", "0.2", "--seed", "1", "--client-bytes", "1000000",
        "--server-bytes", "1000000", "--half-close-bytes", "50000", "--json",
    )  # fmt: skip
    assert res.exit_code == 0
    s = json.loads(res.output)["summary"]
    assert s["A"]["received_sha256"] == s["B"]["sent_sha256"]
    assert s["B"]["received_sha256"] == s["A"]["sent_sha256"]
    assert (s["A"]["final_state"], s["B"]["final_state"]) == ("CLOSED", "CLOSED")


def test_simulate_closer_both_passes_through_closing() -> None:
    data = json.loads(invoke("simulate", "--closer", "both", "--json").output)
    for who in ("A", "B"):
        states = [e["state"] for e in data["events"] if e["kind"] == "state" and e["who"] == who]
        assert "CLOSING" in states and states[-1] == "CLOSED"


def test_simulate_bare_fin_is_counted() -> None:
    data = json.loads(invoke("simulate", "--bare-fin", "--json").output)
    assert data["summary"]["counters"]["A"]["fin_without_ack"] == 1
    dropped = [e for e in segments(data) if e["fate"] == "dropped"]
    assert [(e["flags"], e["reason"]) for e in dropped] == [(["FIN"], "fin without ack")]
    s = data["summary"]
    assert s["A"]["received_sha256"] == s["B"]["sent_sha256"]


def test_simulate_text_elides_long_transfers_and_ends_with_the_summary() -> None:
    res = invoke("simulate", "--client-bytes", "200000", "--server-bytes", "0", "--ascii")
    assert res.exit_code == 0
    out = res.output
    assert out.isascii()
    assert "segments" in out  # the elided middle
    assert len(out.splitlines()) < 120
    assert "stream A->B: byte-exact" in out
    assert "final state CLOSED" in out


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--loss", "1.5"],
        ["simulate", "--loss", "-0.1"],
        ["simulate", "--closer", "nobody"],
        ["simulate", "--client-bytes", "-5"],
        ["simulate", "--closer", "both", "--half-close-bytes", "5"],
        ["simulate", "--abort", "both"],
        ["simulate", "--mss", "10"],
        ["simulate", "--bandwidth", "0"],
        ["simulate", "--queue", "3000"],
        ["demo", "--half-close-bytes", "-1"],
    ],
)
def test_bad_options_are_clear_errors_with_status_2(args: list[str]) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    assert "Invalid value" in res.output or "Error" in res.output


def test_simulate_is_reproducible_for_a_seed() -> None:
    args = ("simulate", "--loss", "0.2", "--dup", "0.05", "--reorder", "0.1", "--json")
    first = invoke(*args, "--seed", "5").output
    assert first == invoke(*args, "--seed", "5").output
    assert first != invoke(*args, "--seed", "6").output


def test_simulate_bottleneck_queue_tail_drops_and_recovers() -> None:
    res = invoke(
        "simulate", "--client-bytes", "300000", "--server-bytes", "0",
        "--bandwidth", "10", "--queue", "15000", "--json",
    )  # fmt: skip
    data = json.loads(res.output)
    reasons = {e["reason"] for e in segments(data) if e["fate"] == "lost"}
    assert reasons == {"queue full"}
    s = data["summary"]
    assert s["B"]["received_sha256"] == s["A"]["sent_sha256"]
    assert s["B"]["received_bytes"] == 300_000
