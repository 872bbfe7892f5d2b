"""What the commands say, and their exit status (issue: exit status and
wording): failed simulations exit 1 and say why, no "(TIME-WAIT included)"
where there was none, nouns agree with their counts, JSON times rounded to the
microsecond, IPv6 endpoints in brackets, B listening from the start, help for
every option, no jargon in the help."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from finwait.capture.writer import write_trace
from finwait.cli import _COMMANDS, main
from finwait.cli.live import _print_status
from finwait.live.lab import LabStatus
from finwait.sim.scenario import ScenarioSpec, run_scenario


def _run(*argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(argv))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_a_failed_simulation_exits_1_and_says_why() -> None:
    code, out = _run("simulate", "--loss", "0.99")
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last.startswith("FAILED: A timed out in SYN-SENT")
    assert "all of them received" not in out
    assert "stream A→B: INCOMPLETE (none of the 1,000 bytes sent)" in out
    assert "TIME-WAIT included" not in out
    code, _ = _run("simulate", "--loss", "0.99", "--json")
    assert code == 1


@pytest.mark.parametrize("argv", [["--abort", "client"], ["--abort", "server"], []])
def test_what_was_asked_for_exits_0(argv: list[str]) -> None:
    code, out = _run("simulate", *argv)
    assert code == 0, out
    assert "FAILED" not in out
    assert ("TIME-WAIT included" in out) == (not argv)


def test_counts_agree_and_are_separated() -> None:
    _, out = _run("simulate", "--client-bytes", "1", "--server-bytes", "12345")
    assert "A: sent 1 byte (" in out and "received 12,345 bytes" in out
    assert "byte-exact (1 byte)" in out


def _capture(tmp_path: Path, spec: ScenarioSpec, shift: float = 0.0) -> Path:
    trace = run_scenario(spec).trace
    trace.events = [dataclasses.replace(ev, t=ev.t + shift) for ev in trace.events]
    path = tmp_path / "c.pcap"
    write_trace(trace, path)
    return path


def test_analyze_json_times_are_rounded_to_the_microsecond(tmp_path: Path) -> None:
    # Epoch-like times, as in a real capture: end - start is not exact.
    path = _capture(tmp_path, ScenarioSpec(client_bytes=3000, loss=0.2, seed=4), 1.7e9 + 0.01)
    code, out = _run("analyze", "--json", str(path))
    assert code == 0
    floats = re.findall(r'"(?:start|end|duration|time)":([0-9.e+-]+)', out)
    assert len(floats) >= 5
    for text in floats:
        assert text == repr(round(float(text), 6)), text
    rec = json.loads(out.splitlines()[0])
    assert rec["duration"] == round(rec["end"] - rec["start"], 6)


def test_ipv6_endpoints_in_brackets_and_one_connection(tmp_path: Path) -> None:
    spec = ScenarioSpec(client_addr="2001:db8::1", server_addr="2001:db8::2", client_bytes=10)
    path = _capture(tmp_path, spec)
    _, out = _run("analyze", "--explain", "1", str(path))
    assert re.search(r"Connection 1: \[2001:db8::1\]:\d+ \(client\) -> \[2001:db8::2\]:80", out)
    _, out = _run("analyze", str(path))
    assert "1 connection" in out and "1 connections" not in out
    assert "[2001:db8::2]:80" in out


def test_b_listens_from_the_start() -> None:
    code, out = _run("demo", "--json")
    assert code == 0
    states = [e for e in json.loads(out)["events"] if e["kind"] == "state" and e["who"] == "B"]
    assert states[0] == {"t": 0.0, "kind": "state", "who": "B", "state": "LISTEN"}
    assert [s["state"] for s in states].count("LISTEN") == 1


def _all_commands() -> list[tuple[str, click.Command]]:
    out = []
    for name in _COMMANDS:
        cmd = main.get_command(click.Context(main), name)
        assert cmd is not None
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(click.Context(cmd)):
                c = cmd.get_command(click.Context(cmd), sub)
                assert c is not None
                out.append((f"{name} {sub}", c))
        else:
            out.append((name, cmd))
    return out


@pytest.mark.parametrize("where", _all_commands(), ids=lambda w: w[0])
def test_every_option_has_help_and_no_jargon(where: tuple[str, click.Command]) -> None:
    name, cmd = where
    for p in cmd.params:
        if isinstance(p, click.Option):
            assert p.help, f"{name} {p.opts[0]} has no help"
    _, out = _run(*name.split(), "--help")
    assert not re.search(r"\bthe seed\b|seed\.md|[Tt]he seed:", out), out


def test_lab_status_does_not_call_a_link_without_carrier_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    st = LabStatus("finwait", "fw0", netns_exists=True, tun_exists=True, tun_up=True, mtu=1500)
    _print_status(st, as_json=False)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("TUN"))
    assert "no carrier" in line and ": up" not in line
    st.carrier = True
    _print_status(st, as_json=False)
    assert "carrier on" in capsys.readouterr().out


def test_live_endpoints_in_brackets() -> None:
    from finwait.live.apps import Outcome

    out = Outcome(("2001:db8::1", 35238), ("2001:db8::2", 9000)).to_json(trace=False)
    assert (out["peer"], out["local"]) == ("[2001:db8::1]:35238", "[2001:db8::2]:9000")
    v4 = Outcome(("198.18.0.1", 35238), ("198.18.0.2", 9000)).to_json(trace=False)
    assert v4["peer"] == "198.18.0.1:35238"
