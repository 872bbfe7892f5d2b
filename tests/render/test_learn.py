"""The learning page (``demo --html``, ``simulate --html``): the state diagram
is the transition table, the steps follow the trace, and in headless chromium
the page loads without a console error, steps forward and back with the
buttons and the keyboard, grows the ladder, highlights both sides' states and
the transitions taken, and says when a segment was lost."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from finwait.cli import main
from finwait.render.learn import learning_steps, render_learning_page
from finwait.render.states import state_diagram_svg
from finwait.sim.scenario import ScenarioSpec, run_scenario
from finwait.tcp.state import TRANSITIONS, State
from finwait.trace import SegmentEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analyze.test_html import DevTools, _chromium, _problems

NS = "{http://www.w3.org/2000/svg}"


def test_the_diagram_is_the_transition_table() -> None:
    root = ET.fromstring(state_diagram_svg())
    edges = [
        (g.get("data-from"), g.get("data-to"), g.get("data-event"), g.get("data-action"))
        for g in root.iter(f"{NS}g")
        if "edge" in (g.get("class") or "").split()
    ]
    assert edges == [(str(a), str(b), e, x) for a, b, e, x in TRANSITIONS]
    states = {g.get("data-state") for g in root.iter(f"{NS}g") if g.get("class") == "state"}
    assert states == {str(s) for s in State}


def test_the_docs_diagram_is_up_to_date() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "states.svg"
    assert doc.read_text(encoding="utf-8") == state_diagram_svg(), (
        "docs/states.svg is out of date: run `python scripts/docs.py`"
    )


def test_steps_follow_the_trace() -> None:
    trace = run_scenario(ScenarioSpec(loss=0.3, seed=3)).trace
    steps = learning_steps(trace)
    segments = [e for e in trace.events if isinstance(e, SegmentEvent)]
    assert len(steps) == len(segments) + 1  # short: nothing folded
    assert steps[0]["states"] == {"A": "CLOSED", "B": "LISTEN"}
    assert steps[1]["states"] == {"A": "SYN-SENT", "B": "LISTEN"}  # the SYN's own step
    assert steps[1]["moves"] == [["A", "CLOSED", "SYN-SENT"]]
    assert steps[-1]["states"] == {"A": "CLOSED", "B": "CLOSED"}
    lost = [s for s in steps if s["fate"] == "lost"]
    assert len(lost) == sum(1 for e in segments if e.fate == "lost") > 3
    assert all("Lost on the way" in s["text"] or "lost" in s["text"] for s in lost)
    # Every move is an edge of the diagram.
    edges = {(str(a), str(b)) for a, b, _, _ in TRANSITIONS}
    for s in steps:
        for _, a, b in s["moves"]:
            assert (a, b) in edges


def test_the_release_is_explained_as_the_demo_does() -> None:
    result = CliRunner().invoke(main, ["demo"])
    page = CliRunner().invoke(main, ["demo", "--html", "/dev/null"])
    assert result.exit_code == page.exit_code == 0
    trace = run_scenario(
        ScenarioSpec(client_bytes=247, server_bytes=49, closer="server", request_response=True,
                     close_delay=0.2, delay_ms=20.0, client_addr="192.168.1.100",
                     server_addr="119.75.218.70", server_port=80, seed=1)
    ).trace  # fmt: skip
    texts = {s["head"]: s["text"] for s in learning_steps(trace)}
    fin = texts["B→A FIN,ACK seq=50 ack=248 len=0"]
    assert "takes sequence number 50" in fin
    assert " ".join(fin.split()[:6]) in " ".join(result.output.split())
    assert "acknowledges 51" in texts["A→B ACK seq=248 ack=51 len=0"]
    assert "A pure ACK takes no sequence number" in texts["A→B ACK seq=1 ack=1 len=0"]


def test_the_page_is_self_contained() -> None:
    page = render_learning_page(run_scenario(ScenarioSpec()).trace)
    assert "default-src 'none'" in page
    assert not re.search(r"(?:src|href)=\"(?!#)", page)
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "").replace("http-equiv", "")


def test_cli_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "l.html"
    result = CliRunner().invoke(main, ["simulate", "--loss", "0.3", "--seed", "3", "--html",
                                       str(out), "--summary"])  # fmt: skip
    assert result.exit_code == 0
    assert out.read_text().startswith("<!doctype html>")


@pytest.mark.browser
def test_the_page_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    trace = run_scenario(ScenarioSpec(loss=0.3, seed=3)).trace
    page = tmp_path / "learn.html"
    page.write_text(render_learning_page(trace), encoding="utf-8")
    steps = learning_steps(trace)
    cdp = DevTools(browser, tmp_path / "profile")
    try:
        s = cdp.open_page(page)

        def js(expr: str) -> Any:
            return cdp.evaluate(s, expr)

        def key(name: str, code: int) -> None:
            for kind in ("rawKeyDown", "keyUp"):
                cdp.call("Input.dispatchKeyEvent", s, type=kind, key=name, code=name,
                         windowsVirtualKeyCode=code)  # fmt: skip

        def view() -> dict[str, Any]:
            value: dict[str, Any] = js(
                "(() => ({step: Number(document.body.dataset.step), "
                "arrows: [...document.querySelectorAll('#fw-ladder g.segment')].filter(g => "
                "!g.classList.contains('fw-hidden') && g.getBBox().width > 0).length, "
                "a: [...document.querySelectorAll('#fw-diagram .state.fw-a')].map(g => "
                "g.dataset.state), "
                "b: [...document.querySelectorAll('#fw-diagram .state.fw-b')].map(g => "
                "g.dataset.state), "
                "took: [...document.querySelectorAll('#fw-diagram .edge.fw-took-a, "
                "#fw-diagram .edge.fw-took-b')].map(g => g.dataset.from + '>' + g.dataset.to), "
                "head: document.getElementById('fw-head').textContent, "
                "headClass: document.getElementById('fw-head').className, "
                "text: document.getElementById('fw-text').textContent, "
                "count: document.getElementById('fw-count').textContent}))()"
            )
            return value

        def agrees(v: dict[str, Any]) -> None:
            st = steps[v["step"]]
            assert v["arrows"] == v["step"]  # one more arrow per step
            assert set(v["a"]) == {st["states"]["A"]} and set(v["b"]) == {st["states"]["B"]}
            assert sorted(v["took"]) == sorted(f"{a}>{b}" for _, a, b in st["moves"])
            assert v["head"] == st["head"] and v["text"] == st["text"]
            assert v["count"] == f"step {v['step']} of {len(steps) - 1}"

        v = view()
        assert v["step"] == 0 and v["arrows"] == 0
        agrees(v)
        for n in range(1, 4):
            js("document.getElementById('fw-next').click()")
            v = view()
            assert v["step"] == n
            agrees(v)
        js("document.getElementById('fw-prev').click()")
        assert view()["step"] == 2
        key("ArrowRight", 39)
        key("ArrowRight", 39)
        assert view()["step"] == 4
        key("ArrowLeft", 37)
        assert view()["step"] == 3
        key("End", 35)
        v = view()
        assert v["step"] == len(steps) - 1
        agrees(v)
        assert js("document.getElementById('fw-next').disabled") is True
        key("Home", 36)
        assert view()["step"] == 0
        # Walk every step: each agrees, and a lost segment says so.
        saw_lost = False
        for n in range(1, len(steps)):
            key("ArrowRight", 39)
            v = view()
            agrees(v)
            if steps[n]["fate"] == "lost":
                saw_lost = True
                assert v["headClass"] == "fw-lost"
        assert saw_lost
        assert _problems(cdp.events) == []
    finally:
        cdp.close()


def test_steps_json_survives_hostile_text() -> None:
    trace = run_scenario(ScenarioSpec()).trace
    page = render_learning_page(trace, title="</script><script>alert(1)</script>")
    assert "<script>alert(1)" not in page
    data = page.split('id="fw-steps">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data.replace("<\\/", "</"))
