"""SVG ladder labels overlap no other label, no arrow, no cross, no state box
and no timeline — measured here from the SVG itself with the label font's
metrics (12 px DejaVu Sans Mono: 0.602 em advance), independently of the
layout code's own arithmetic."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from finwait.render.svg import render_svg
from finwait.sim.scenario import ScenarioSpec, run_scenario

NS = "{http://www.w3.org/2000/svg}"
ADVANCE = 0.602 * 12
ASCENT, DESCENT = 9.0, 3.0

Poly = list[tuple[float, float]]


def _overlap(a: Poly, b: Poly) -> bool:
    """Separating axes: True when the convex shapes share some area."""
    for shape in (a, b):
        for i in range(len(shape)):
            (x1, y1), (x2, y2) = shape[i], shape[(i + 1) % len(shape)]
            nx, ny = y2 - y1, x1 - x2
            if nx == 0 and ny == 0:
                continue
            pa = [nx * x + ny * y for x, y in a]
            pb = [nx * x + ny * y for x, y in b]
            if max(pa) <= min(pb) or max(pb) <= min(pa):
                return False
    return True


def _text_box(t: ET.Element) -> Poly:
    x, y = float(t.get("x", "0")), float(t.get("y", "0"))
    w = ADVANCE * len(t.text or "")
    anchor = t.get("text-anchor", "start")
    x0 = {"start": 0.0, "middle": -w / 2, "end": -w}[anchor]
    angle = 0.0
    m = re.match(r"rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)", t.get("transform", ""))
    if m:
        angle = math.radians(float(m.group(1)))
        assert (float(m.group(2)), float(m.group(3))) == (x, y)
    ux, uy = math.cos(angle), math.sin(angle)
    nx, ny = uy, -ux  # "up" for the text
    return [
        (x + ux * a + nx * n, y + uy * a + ny * n)
        for a, n in ((x0, -DESCENT), (x0 + w, -DESCENT), (x0 + w, ASCENT), (x0, ASCENT))
    ]


def _line(e: ET.Element) -> Poly:
    return [(float(e.get("x1", "0")), float(e.get("y1", "0"))),
            (float(e.get("x2", "0")), float(e.get("y2", "0")))]  # fmt: skip


def _shapes(svg: str) -> tuple[list[tuple[str, Poly]], list[tuple[str, Poly]]]:
    """(labels, obstacles), each with a name for the failure message."""
    root = ET.fromstring(svg)
    labels: list[tuple[str, Poly]] = []
    obstacles: list[tuple[str, Poly]] = []
    for g in root.iter(f"{NS}g"):
        cls = g.get("class")
        if cls == "segment":
            name = f"{g.get('data-flags')} seq={g.get('data-seq')} t={g.get('data-t')}"
            for e in g:
                if e.tag == f"{NS}text" and "label" in (e.get("class") or ""):
                    labels.append((f"label of {name}", _text_box(e)))
                elif e.tag == f"{NS}text":
                    obstacles.append((f"reason of {name}", _text_box(e)))
                elif e.tag == f"{NS}line":
                    obstacles.append((f"{e.get('data-part') or 'cross'} of {name}", _line(e)))
                elif e.tag == f"{NS}polygon":
                    pts = [tuple(map(float, p.split(","))) for p in (e.get("points") or "").split()]
                    obstacles.append((f"head of {name}", pts))  # type: ignore[arg-type]
        elif cls in ("state", "gap") and g.find(f"{NS}rect") is not None:
            r = g.find(f"{NS}rect")
            assert r is not None
            x, y = float(r.get("x", "0")), float(r.get("y", "0"))
            w, h = float(r.get("width", "0")), float(r.get("height", "0"))
            obstacles.append((f"{cls} {g.get('data-state', '')}",
                              [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]))  # fmt: skip
    for e in root.iter(f"{NS}line"):
        if e.get("class") == "timeline":
            obstacles.append(("timeline", _line(e)))
    return labels, obstacles


def _collisions(svg: str) -> list[str]:
    labels, obstacles = _shapes(svg)
    assert labels
    found = []
    for i, (name, box) in enumerate(labels):
        for other, obox in labels[i + 1 :]:
            if _overlap(box, obox):
                found.append(f"{name} overlaps {other}")
        for other, obox in obstacles:
            if _overlap(box, obox):
                found.append(f"{name} overlaps {other}")
    return found


SPECS = {
    "loss 0.3 seed 3 (the report's)": ScenarioSpec(client_bytes=1000, server_bytes=1000,
                                                     loss=0.3, seed=3),
    "loss 0.3 seed 1": ScenarioSpec(client_bytes=1000, server_bytes=1000, loss=0.3, seed=1),
    "pipelined 20 kB, loss": ScenarioSpec(client_bytes=20_000, server_bytes=1000, loss=0.2,
                                          seed=7),
    "dup and reorder": ScenarioSpec(client_bytes=8000, server_bytes=1000, loss=0.1, dup=0.1,
                                    reorder=0.2, seed=5),
    "simultaneous close": ScenarioSpec(closer="both"),
    "the textbook release": ScenarioSpec(client_bytes=247, server_bytes=49, closer="server",
                                         request_response=True, delay_ms=20.0),
    "bulk, folded": ScenarioSpec(client_bytes=3_000_000, loss=0.02, seed=2),
}  # fmt: skip


@pytest.mark.parametrize("name", SPECS)
def test_no_label_overlaps_anything(name: str) -> None:
    svg = render_svg(run_scenario(SPECS[name]).trace)
    assert _collisions(svg) == []


def test_the_checker_sees_an_overlap() -> None:
    svg = render_svg(run_scenario(SPECS["loss 0.3 seed 3 (the report's)"]).trace)
    # Move every label onto the middle of the first arrow.
    moved = re.sub(
        r'(<text class="label[^"]*") x="[-\d.]+" y="[-\d.]+"', r'\1 x="300" y="120"', svg
    )
    moved = re.sub(r'transform="rotate\([^)]*\)"', "", moved)
    assert len(_collisions(moved)) > 10
