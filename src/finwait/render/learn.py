"""The learning page: one exchange, stepped through segment by segment.

``finwait demo --html OUT.html`` and ``finwait simulate … --html OUT.html``
write it: a self-contained HTML file (no network: a Content-Security-Policy
forbids any fetch) with the SVG ladder (``svg.py``), RFC 9293's state
diagram (``states.py``) and, for each step, what the segment's numbers mean.
Buttons and the arrow keys (← →, Home, End) step back and forth: the ladder
grows one row group at a time, both sides' current states are highlighted on
the diagram with the transitions just taken, and lost and dropped segments
say so.  The explanations of the release are ``explain.release_steps``'s,
word for word what ``finwait demo`` prints; the other segments get the same
arithmetic (a SYN or a FIN takes one sequence number, data its length, a
pure ACK none; ack names the next byte expected).
"""

from __future__ import annotations

import html
import json
from typing import Any

from ..tcp.state import State
from ..trace import DELIVERED, LOST, SegmentEvent, StateEvent, Trace
from ..wire.segment import ACK, FIN, RST, SYN
from .explain import release_steps
from .rows import Gap, endpoint_text, format_ms, layout_rows, retransmissions, segment_label, sides
from .states import state_diagram_svg
from .svg import render_svg


def _segment_text(trace: Trace, ev: SegmentEvent, relative: bool, retx: bool) -> str:
    """What the numbers of an ordinary segment mean."""
    seg = ev.segment
    seq, ack = trace.relative(ev) if relative else (seg.seq, seg.ack)
    n = len(seg.payload)
    src, dst = ev.src, ev.dst
    out: list[str] = []
    if seg.flags & RST:
        out.append(
            f"{src} resets the connection (RST, seq={seq}): no FIN exchange and no "
            f"TIME-WAIT; {dst} accepts it only if seq is exactly the next number it expects "
            "(RFC 5961), and then drops the connection at once."
        )
    elif seg.flags & SYN:
        first = "ISN, shown as 0" if relative else "ISN"
        out.append(
            f"{src}'s SYN takes sequence number {seq} (its {first}): a SYN consumes one "
            f"number, so {src}'s first data byte will be {seq + 1}."
        )
        if seg.flags & ACK:
            out.append(f"ack={ack} acknowledges {dst}'s SYN ({ack - 1}) the same way.")
    else:
        if n:
            out.append(
                f"{src} sends {n:,} byte{'s' if n != 1 else ''}, numbers {seq}..{seq + n - 1}; "
                f"its next byte will be {seq + n}."
            )
        elif not seg.flags & FIN:
            out.append(
                f"A pure ACK takes no sequence number: seq={seq} is still {src}'s next byte."
            )
        if seg.flags & FIN:
            out.append(f"Its FIN takes number {seq + n}, the one after its last byte.")
        if seg.flags & ACK:
            out.append(
                f"ack={ack}: {src} has received everything {dst} sent up to {ack - 1} "
                f"and expects {ack} next."
            )
    if retx:
        out.append("A retransmission: these numbers were sent before.")
    out.append(_fate(ev))
    return " ".join(x for x in out if x)


def _fate(ev: SegmentEvent) -> str:
    if ev.fate == DELIVERED:
        return ""
    if ev.fate == LOST:
        return (
            f"Lost on the way: {ev.dst} never sees it, so {ev.src} sends these numbers "
            "again when its retransmission timer fires (or on duplicate ACKs)."
        )
    reason = f" ({ev.reason})" if ev.reason else ""
    return f"{ev.dst} {ev.fate} it on arrival{reason}: it changes nothing there."


def learning_steps(trace: Trace, *, relative: bool = True) -> list[dict[str, Any]]:
    """The page's steps: step 0 is the start (states before any segment);
    then one per drawn segment or folded run.  Each: ``row`` (the last ladder
    row shown), ``seg_row`` (the row of its segment, or -1), ``states``
    (each side's state after the step), ``moves`` ([who, from, to] taken
    during it), ``head`` (the segment's label), ``text`` (its explanation),
    ``fate`` and ``t`` (ms)."""
    left, right = sides(trace)
    rows = layout_rows(trace)
    retx = {id(trace.events[i]) for i in retransmissions(trace)}
    release = {id(s.event): (s.role, s.sentence) for s in release_steps(trace, relative=relative)}
    states = {left: str(State.CLOSED), right: str(State.CLOSED)}
    seg_rows = [i for i, r in enumerate(rows) if not isinstance(r, StateEvent)]
    # A step starts at its segment's row, or earlier at the sender's state
    # change of the same instant (B's CLOSE: FIN-WAIT-1, then its FIN).
    starts = []
    for k, i in enumerate(seg_rows):
        row, lo = rows[i], seg_rows[k - 1] + 1 if k else 0
        while isinstance(row, SegmentEvent) and i > lo:
            before = rows[i - 1]
            if not (isinstance(before, StateEvent) and before.who == row.src and before.t == row.t):
                break
            i -= 1
        starts.append(i)
    bounds = [*starts, len(rows)]
    steps: list[dict[str, Any]] = []

    def apply(lo: int, hi: int) -> list[list[str]]:
        moves = []
        for r in rows[lo:hi]:
            if isinstance(r, StateEvent):
                before = states.get(r.who, str(State.CLOSED))
                states[r.who] = str(r.state)
                moves.append([r.who, before, str(r.state)])
        return moves

    moves = apply(0, bounds[0])
    steps.append(
        {
            "row": bounds[0] - 1,
            "seg_row": -1,
            "states": dict(states),
            "moves": moves,
            "head": "Before the first segment",
            "text": (
                f"{left} and {right} before anything is sent: "
                + "; ".join(f"{who} in {st}" for who, st in states.items())
                + ". Step through with Next or the → key."
            ),
            "fate": "",
            "t": "",
            "role": "",
        }
    )
    for k, i in enumerate(seg_rows):
        row = rows[i]
        moves = apply(bounds[k], bounds[k + 1])
        if isinstance(row, Gap):
            head = row.describe()
            text = (
                "Ordinary data and ACKs, folded into one step: each carries the same "
                "arithmetic as the others — seq advances by the bytes sent, ack names the "
                "next byte expected."
            )
            fate, t, role = "", format_ms(row.t_first), ""
        else:
            assert isinstance(row, SegmentEvent)
            head = f"{row.src}→{row.dst} {segment_label(trace, row, relative, id(row) in retx)}"
            role, text = release.get(id(row), ("", ""))
            if text:
                text = text if row.fate == DELIVERED or "lost" in text else text + " " + _fate(row)
            else:
                text = _segment_text(trace, row, relative, id(row) in retx)
            fate, t = row.fate, format_ms(row.t)
        steps.append(
            {
                "row": bounds[k + 1] - 1,
                "seg_row": i,
                "states": dict(states),
                "moves": moves,
                "head": head,
                "text": text,
                "fate": fate,
                "t": t,
                "role": role,
            }
        )
    return steps


_CSS = """
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       background: #ffffff; }
header { padding: 12px 20px 4px; }
h1 { font-size: 19px; margin: 0 0 2px; }
.fw-meta { color: #57606a; margin: 0; font-size: 13px; }
main { display: grid; grid-template-columns: minmax(480px, 1fr) minmax(420px, 1fr); gap: 16px;
       padding: 8px 20px 20px; }
#fw-ladder { overflow: auto; max-height: calc(100vh - 150px); border: 1px solid #d0d7de;
             border-radius: 6px; }
#fw-ladder svg { display: block; max-width: 100%; height: auto; }
.fw-hidden { display: none; }
g.segment.fw-current line[data-part="shaft"] { stroke-width: 3.2; }
g.segment.fw-current .label { font-weight: 700; }
#fw-side { display: flex; flex-direction: column; gap: 10px; }
#fw-controls { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
#fw-controls button { font: inherit; padding: 4px 12px; border: 1px solid #8c959f;
                      border-radius: 6px; background: #f6f8fa; cursor: pointer; }
#fw-controls button:disabled { opacity: 0.4; cursor: default; }
#fw-count { color: #57606a; margin-left: 6px; }
#fw-step { border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 14px; min-height: 130px; }
#fw-head { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
           font-weight: 600; }
#fw-head.fw-lost, #fw-head.fw-dropped { color: #cf222e; }
#fw-role { color: #0550ae; font-size: 13px; }
#fw-moves { color: #57606a; font-size: 13px; margin: 6px 0 0; padding-left: 18px; }
#fw-states { font-size: 14px; }
.fw-key-a, .fw-key-b { display: inline-block; width: 12px; height: 12px; border-radius: 3px;
                       vertical-align: -1px; }
.fw-key-a { background: #0969da; } .fw-key-b { background: #bc4c00; }
#fw-diagram svg { display: block; width: 100%; height: auto; border: 1px solid #d0d7de;
                  border-radius: 6px; }
#fw-diagram .state.fw-a rect { fill: #ddf4ff; stroke: #0969da; stroke-width: 3; }
#fw-diagram .state.fw-b rect { fill: #fff1e5; stroke: #bc4c00; stroke-width: 3; }
#fw-diagram .state.fw-a.fw-b rect { fill: #f3e8ff; stroke: #8250df; }
#fw-diagram .edge.fw-took-a path { stroke: #0969da; stroke-width: 3; }
#fw-diagram .edge.fw-took-a polygon { fill: #0969da; }
#fw-diagram .edge.fw-took-b path { stroke: #bc4c00; stroke-width: 3; }
#fw-diagram .edge.fw-took-b polygon { fill: #bc4c00; }
kbd { border: 1px solid #8c959f; border-radius: 4px; padding: 0 4px; font-size: 12px; }
pre.fw-outcome { font-size: 12px; white-space: pre-wrap; color: #57606a; margin: 0; }
"""

_JS = """
(() => {
  'use strict';
  const steps = JSON.parse(document.getElementById('fw-steps').textContent);
  const who = JSON.parse(document.getElementById('fw-sides').textContent);
  const ladder = document.getElementById('fw-ladder');
  const rowEls = [...ladder.querySelectorAll('[data-row]')];
  const diagram = document.getElementById('fw-diagram');
  const $ = (id) => document.getElementById(id);
  let k = 0;
  function show(n) {
    k = Math.max(0, Math.min(steps.length - 1, n));
    const s = steps[k];
    for (const e of rowEls) {
      const r = Number(e.dataset.row);
      e.classList.toggle('fw-hidden', r > s.row);
      e.classList.toggle('fw-current', r === s.seg_row && e.classList.contains('segment'));
    }
    for (const e of diagram.querySelectorAll('.state')) {
      e.classList.toggle('fw-a', e.dataset.state === s.states[who[0]]);
      e.classList.toggle('fw-b', e.dataset.state === s.states[who[1]]);
    }
    for (const e of diagram.querySelectorAll('.edge')) {
      e.classList.remove('fw-took-a', 'fw-took-b');
    }
    for (const [w, from, to] of s.moves) {
      const e = diagram.querySelector(`.edge[data-from="${from}"][data-to="${to}"]`);
      if (e) e.classList.add(w === who[0] ? 'fw-took-a' : 'fw-took-b');
    }
    $('fw-head').textContent = s.head;
    $('fw-head').className = s.fate === 'lost' ? 'fw-lost' : s.fate === 'dropped' ? 'fw-dropped' : '';
    $('fw-time').textContent = s.t ? `${s.t} ms` : '';
    $('fw-role').textContent = s.role ? `[${s.role}]` : '';
    $('fw-text').textContent = s.text;
    const moves = $('fw-moves');
    moves.replaceChildren(...s.moves.map(([w, from, to]) => {
      const li = document.createElement('li');
      li.textContent = `${w}: ${from} → ${to}`;
      return li;
    }));
    $('fw-state-a').textContent = s.states[who[0]];
    $('fw-state-b').textContent = s.states[who[1]];
    $('fw-count').textContent = `step ${k} of ${steps.length - 1}`;
    $('fw-first').disabled = $('fw-prev').disabled = k === 0;
    $('fw-next').disabled = $('fw-last').disabled = k === steps.length - 1;
    const cur = ladder.querySelector('g.segment.fw-current, g.gap:not(.fw-hidden)');
    if (cur && cur.scrollIntoView) cur.scrollIntoView({block: 'nearest'});
    document.body.dataset.step = String(k);
  }
  $('fw-first').addEventListener('click', () => show(0));
  $('fw-prev').addEventListener('click', () => show(k - 1));
  $('fw-next').addEventListener('click', () => show(k + 1));
  $('fw-last').addEventListener('click', () => show(steps.length - 1));
  document.addEventListener('keydown', (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const to = {ArrowRight: k + 1, ArrowDown: k + 1, ArrowLeft: k - 1, ArrowUp: k - 1,
                Home: 0, End: steps.length - 1}[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    show(to);
  });
  show(0);
})();
"""


def _json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def render_learning_page(
    trace: Trace, *, relative: bool = True, title: str | None = None, outcome: str = ""
) -> str:
    """The learning page for ``trace`` as one HTML document (a string)."""
    left, right = sides(trace)
    if title is None:
        title = f"{endpoint_text(trace, left)} ⇄ {endpoint_text(trace, right)}"
    steps = learning_steps(trace, relative=relative)
    ladder = render_svg(trace, relative=relative, title=title).split("\n", 1)[1]
    numbering = (
        "relative sequence numbers (ISN = 0, first data byte = 1)"
        if relative
        else "raw sequence numbers"
    )
    esc = html.escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No network at all: everything the page needs is in it.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>finwait: {esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="fw-meta">Step through the exchange one segment at a time: the buttons, or '
        f"<kbd>←</kbd> <kbd>→</kbd> (<kbd>Home</kbd>, <kbd>End</kbd>). {esc(numbering)}; "
        f'<span class="fw-key-a"></span> {esc(left)}, <span class="fw-key-b"></span> '
        f"{esc(right)} on the state diagram.</p>",
        "</header><main>",
        f'<div id="fw-ladder" aria-label="ladder diagram">{ladder}</div>',
        '<div id="fw-side">',
        '<div id="fw-controls">'
        '<button id="fw-first" type="button" title="first step (Home)">« First</button>'
        '<button id="fw-prev" type="button" title="previous step (←)">◀ Back</button>'
        '<button id="fw-next" type="button" title="next step (→)">Next ▶</button>'
        '<button id="fw-last" type="button" title="last step (End)">Last »</button>'
        '<span id="fw-count" aria-live="polite"></span></div>',
        '<div id="fw-step" aria-live="polite"><div><span id="fw-head"></span> '
        '<span id="fw-role"></span> <span id="fw-time" class="fw-meta"></span></div>'
        '<p id="fw-text"></p><ul id="fw-moves"></ul></div>',
        f'<div id="fw-states"><span class="fw-key-a"></span> {esc(left)}: '
        f'<b id="fw-state-a"></b> &nbsp; <span class="fw-key-b"></span> {esc(right)}: '
        '<b id="fw-state-b"></b></div>',
        f'<div id="fw-diagram">{state_diagram_svg()}</div>',
        f'<pre class="fw-outcome">{esc(outcome)}</pre>' if outcome else "",
        "</div></main>",
        _json_script("fw-steps", steps),
        _json_script("fw-sides", [left, right]),
        f"<script>{_JS}</script>",
        "</body></html>",
        "",
    ]
    return "\n".join(out)
