"""The SVG ladder: well-formed XML, one ``class="segment"`` per drawn segment
with the right data attributes, escaped text, elision, slanted arrows; and,
where chromium is installed, a headless browser that renders and counts."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from render_traces import bare_fin, long_trace, lost_fin, seed_release, simultaneous

from finwait.render.svg import render_svg
from finwait.trace import StateEvent, Trace

NS = "{http://www.w3.org/2000/svg}"


def _segments(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [e for e in root.iter(f"{NS}g") if e.get("class") == "segment"]


def test_one_segment_element_per_segment_with_data_attributes(seed: Trace) -> None:
    segs = _segments(render_svg(seed))
    assert len(segs) == sum(1 for _ in seed.segments()) == 10
    release = [
        (e.get("data-flags"), e.get("data-seq"), e.get("data-ack"), e.get("data-len"))
        for e in segs[-4:]
    ]
    assert release == [
        ("FIN,ACK", "50", "248", "0"),
        ("ACK", "248", "51", "0"),
        ("FIN,ACK", "248", "51", "0"),
        ("ACK", "51", "249", "0"),
    ]
    assert [e.get("data-from") for e in segs[-4:]] == ["B", "A", "A", "B"]
    assert {e.get("data-fate") for e in segs} == {"delivered"}
    assert segs[0].get("data-flags") == "SYN" and segs[0].get("data-ack") == ""


def test_raw_numbers_on_request(seed: Trace) -> None:
    fin = _segments(render_svg(seed, relative=False))[-4]
    assert (fin.get("data-seq"), fin.get("data-ack")) == ("5050", "1248")


def test_arrows_slant_to_arrival_and_point_the_right_way(seed: Trace) -> None:
    for e in _segments(render_svg(seed)):
        line = next(x for x in e.iter(f"{NS}line") if x.get("data-part") == "shaft")
        x1, y1, x2, y2 = (float(line.get(k, "nan")) for k in ("x1", "y1", "x2", "y2"))
        assert y2 > y1  # every segment in this trace arrives 10 ms after it leaves
        assert (x2 > x1) == (e.get("data-from") == "A")


def test_state_boxes_on_each_timeline(seed: Trace) -> None:
    root = ET.fromstring(render_svg(seed))
    states = [
        (g.get("data-who"), g.get("data-state"))
        for g in root.iter(f"{NS}g")
        if g.get("class") == "state" and g.get("data-who")
    ]
    assert ("B", "TIME-WAIT") in states and ("A", "LAST-ACK") in states
    assert states == [(ev.who, str(ev.state)) for ev in seed.events if isinstance(ev, StateEvent)]


def test_lost_and_dropped_segments_are_marked() -> None:
    lost = _segments(render_svg(lost_fin().trace))
    fates = [e.get("data-fate") for e in lost if e.get("data-flags") == "FIN,ACK"]
    assert fates == ["lost", "delivered"]
    cross = [x for x in lost[-3].iter(f"{NS}line") if x.get("class") == "cross"]
    assert len(cross) == 2
    dropped = render_svg(bare_fin().trace)
    assert "dropped: fin without ack" in dropped
    assert _segments(dropped)[-1].get("data-fate") == "dropped"


def test_hostile_text_is_escaped() -> None:
    tr = seed_release().trace
    tr.endpoints["B"].addr = '<script>alert("x")</script>&\x00'
    svg = render_svg(tr, title="</title><script>evil()</script> & ]]>")
    root = ET.fromstring(svg)  # well-formed despite the NUL and the markup
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert "<script>" not in svg
    title = root.find(f"{NS}title")
    assert title is not None and title.text == "</title><script>evil()</script> & ]]>"
    texts = ["".join(e.itertext()) for e in root.iter(f"{NS}text")]
    assert '<script>alert("x")</script>&\ufffd:80' in texts


def test_elision_matches_the_text_ladder_rule() -> None:
    tr = long_trace(n=300).trace
    total = sum(1 for _ in tr.segments())
    root = ET.fromstring(render_svg(tr, max_rows=30))
    segs = [e for e in root.iter(f"{NS}g") if e.get("class") == "segment"]
    gaps = [e for e in root.iter(f"{NS}g") if e.get("class") == "gap"]
    assert len(segs) <= 30 and len(gaps) == 1
    assert len(segs) + int(gaps[0].get("data-count", "0")) == total
    flags = [e.get("data-flags") for e in segs]
    assert flags.count("FIN,ACK") == 2 and flags[:2] == ["SYN", "SYN,ACK"]
    assert segs[-1].get("data-ack") == "300002"  # the final ACK is kept


def test_simultaneous_fins_cross() -> None:
    segs = _segments(render_svg(simultaneous().trace))
    fins = [e for e in segs if e.get("data-flags") == "FIN,ACK"]
    lines = [next(x for x in f.iter(f"{NS}line")) for f in fins]
    ys = [(float(ln.get("y1", "0")), float(ln.get("y2", "0"))) for ln in lines]
    # Sent at the same instant from opposite sides, both slanting down.
    assert ys[0][0] == pytest.approx(ys[1][0], abs=40)
    assert all(y2 > y1 for y1, y2 in ys)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.browser
def test_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("FINWAIT_LIVE") == "require":
            pytest.fail("chromium is required (FINWAIT_LIVE=require) but not installed")
        pytest.skip("chromium not installed")
    svg = render_svg(simultaneous().trace)
    body = svg.split("?>", 1)[1]
    page = tmp_path / "ladder.html"
    page.write_text(
        "<!doctype html><html><body>"
        + body
        + "<script>const s=[...document.querySelectorAll('g.segment')];"
        "const drawn=s.filter(g=>{const b=g.getBBox();return b.width>0&&b.height>0;});"
        "document.body.setAttribute('data-result', s.length+'/'+drawn.length);</script>"
        "</body></html>",
        encoding="utf-8",
    )
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    n = sum(1 for _ in simultaneous().trace.segments())
    assert f'data-result="{n}/{n}"' in result.stdout, result.stderr[-2000:]
