"""The SVG ladder: a Trace as a self-contained sequence diagram for browsers.

Two vertical timelines (the left endpoint, A, and the right one); one arrow
per segment, slanted from its send time down to its arrival time when the
trace knows it (simulation), level otherwise (a capture sees one instant);
state boxes on each timeline where the state changes; lost segments end in a
cross part-way, dropped ones reach the receiver and carry the reason; a
legend.  The vertical axis is by event, not linear time (a 60 s TIME-WAIT
would flatten everything else): arrival times are placed by interpolating
between the rows around them.  Each arrow is a ``<g class="segment">`` with
``data-flags``, ``data-seq``, ``data-ack``, ``data-len``, ``data-fate``,
``data-from`` and ``data-to``, so tests and browsers can count them; every
row's elements carry ``data-row`` (the learning page reveals them in turn).  Each
label runs along its arrow where it overlaps no other label, arrow, cross,
state box or timeline; rows too crowded for that get more room, and a label
that still fits nowhere goes to a column right of the ladder.  All
text is escaped; characters XML 1.0 forbids are replaced.  Elision follows
``rows.py``.  Read RFC 9293 §3.5 and §3.6 (Figures 6-13) for the exchanges
drawn.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

from ..trace import DELIVERED, LOST, SegmentEvent, StateEvent, Trace
from ..wire.segment import ACK, FIN, RST, SYN, format_flags
from .rows import (
    DEFAULT_MAX_ROWS,
    Gap,
    Row,
    endpoint_text,
    format_ms,
    layout_rows,
    numbers,
    retransmissions,
    segment_label,
    sides,
)

WIDTH = 880
X_TIME = 76  # right edge of the time gutter
X_LEFT = 250
X_RIGHT = 630
ROW_SEGMENT = 30
ROW_STATE = 26
ROW_GAP = 44
LOST_AT = 0.6  # a lost arrow ends this far along its path

_STYLE = """
text { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
       font-size: 12px; fill: #1f2328; }
.title { font-size: 15px; font-weight: 600; }
.endpoint { font-size: 13px; font-weight: 600; }
.addr, .time, .legend text { font-size: 11px; fill: #57606a; }
.timeline { stroke: #57606a; stroke-width: 2; }
.label { paint-order: stroke; stroke: #ffffff; stroke-width: 4px; stroke-linejoin: round; }
.segment line { stroke-width: 1.6; }
.segment [data-part="head"] { stroke: none; }
[data-kind="syn"] line { stroke: #1a7f37; } [data-kind="syn"] polygon { fill: #1a7f37; }
[data-kind="fin"] line { stroke: #0550ae; } [data-kind="fin"] polygon { fill: #0550ae; }
[data-kind="rst"] line { stroke: #cf222e; } [data-kind="rst"] polygon { fill: #cf222e; }
[data-kind="ack"] line { stroke: #424a53; } [data-kind="ack"] polygon { fill: #424a53; }
[data-fate="lost"] line[data-part="shaft"] { stroke-dasharray: 5 3; }
.cross { stroke: #cf222e !important; stroke-width: 2.2; }
.reason { fill: #cf222e; font-size: 11px; }
.state rect { fill: #fff8c5; stroke: #9a6700; stroke-width: 1; }
.state text { font-size: 11px; font-weight: 600; fill: #4d2d00; }
.gap rect { fill: #ffffff; }
.gap line { stroke: #8c959f; stroke-width: 2; stroke-dasharray: 2 4; }
.gap text { fill: #57606a; font-style: italic; }
"""


def render_svg(
    trace: Trace,
    *,
    relative: bool = True,
    title: str | None = None,
    elide: bool = True,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> str:
    """Draw ``trace`` as a standalone SVG document (a string)."""
    left, right = sides(trace)
    rows = layout_rows(trace, elide=elide, max_rows=max_rows)
    retx = {id(trace.events[i]) for i in retransmissions(trace)}
    if title is None:
        title = f"{endpoint_text(trace, left)}  ⇄  {endpoint_text(trace, right)}"

    top = 36
    head = [
        f'<text class="title" x="{WIDTH / 2:.0f}" y="22" text-anchor="middle">{_esc(title)}</text>'
    ]
    for name, x in ((left, X_LEFT), (right, X_RIGHT)):
        ep = trace.endpoints.get(name)
        addr = endpoint_text(trace, name)[len(name) + 1 :] if ep else ""
        head.append(
            f'<text class="endpoint" x="{x}" y="{top + 14}" text-anchor="middle">{_esc(name)}</text>'
        )
        head.append(
            f'<text class="addr" x="{x}" y="{top + 29}" text-anchor="middle">{_esc(addr)}</text>'
        )
    head.append(f'<text class="time" x="{X_TIME}" y="{top + 29}" text-anchor="end">ms</text>')
    y0 = top + 44

    # Lay out; where labels fit nowhere along their arrows, give those rows
    # more room above them and lay out again (a few times at most; then such a
    # label goes to a column right of the ladder).
    extra: dict[int, float] = {}
    for attempt in range(MAX_SPREADS + 1):
        body, width, y_end, crowded = _draw(
            trace, rows, left, relative, retx, y0, extra, last=attempt == MAX_SPREADS
        )
        if not crowded:
            break
        for i in crowded:
            extra[i] = extra.get(i, 0.0) + SPREAD
    timelines = [
        f'<line class="timeline" x1="{x}" y1="{y0}" x2="{x}" y2="{y_end:.1f}"/>'
        for x in (X_LEFT, X_RIGHT)
    ]
    legend, height = _legend(y_end + 26)
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_STYLE}</style>",
            '<rect width="100%" height="100%" fill="#ffffff"/>',
            *head,
            *timelines,
            *body,
            *legend,
            "</svg>",
            "",
        ]
    )


MAX_SPREADS = 12  # extra-room passes before a label goes to the side column
SPREAD = 12.0  # room added above a crowded row per pass


def _draw(
    trace: Trace,
    rows: list[Row],
    left: str,
    relative: bool,
    retx: set[int],
    y0: float,
    extra: dict[int, float],
    *,
    last: bool,
) -> tuple[list[str], float, float, list[int]]:
    """The body elements, the width, the bottom of the timelines, and the
    row indices of the labels that fit nowhere along their arrows (none on
    the ``last`` pass, where such labels go to the side)."""
    ys = _row_positions(rows, y0 + 14, extra)
    anchors = _anchors(rows, ys)
    y_end = (ys[-1] if ys else y0) + 24
    body: list[str] = []
    arrows: list[tuple[_Arrow, str]] = []
    row_of: list[int] = []
    obstacles: list[_Box] = []
    slots: list[int] = []
    last_time = ""
    for i, (row, y) in enumerate(zip(rows, ys, strict=True)):
        if isinstance(row, Gap):
            body.append(_gap(row, y, i))
            obstacles.append(_Box.rect(X_LEFT - 3, y + 6, X_RIGHT + 3, y + ROW_GAP - 6))
            last_time = ""
            continue
        stamp = format_ms(row.t)
        if stamp != last_time:
            body.append(
                f'<text class="time" data-row="{i}" x="{X_TIME}" y="{y + 4:.1f}" '
                f'text-anchor="end">{stamp}</text>'
            )
            last_time = stamp
        if isinstance(row, StateEvent):
            x = X_LEFT if row.who == left else X_RIGHT
            body.append(_state(row, x, y, i))
            w = _state_width(row)
            obstacles.append(_Box.rect(x - w / 2, y - 9, x + w / 2, y + 9))
            continue
        y_arr = _arrival_y(row, i, y, anchors)
        y_end = max(y_end, y_arr + 16)
        label = segment_label(trace, row, relative, id(row) in retx)
        arrow = _segment(trace, row, relative, row.src == left, y, y_arr, i)
        arrows.append((arrow, label))
        row_of.append(i)
        obstacles.extend(arrow.obstacles)
        body.append("")  # the arrow's place: filled once its label is placed
        slots.append(len(body) - 1)

    obstacles.extend(
        _Box.segment((float(x), float(y0)), (float(x), y_end)) for x in (X_LEFT, X_RIGHT)
    )
    width, failed = _place_labels(arrows, obstacles, side=last)
    if failed:
        return body, width, y_end, [row_of[k] for k in failed]
    for slot, (arrow, _) in zip(slots, arrows, strict=True):
        body[slot] = arrow.svg()
    return body, width, y_end, []


# -- layout -------------------------------------------------------------


def _row_positions(rows: list[Row], y: float, extra: dict[int, float] | None = None) -> list[float]:
    """The y of each row (a gap's is its top); ``extra`` adds room above rows."""
    out: list[float] = []
    for i, row in enumerate(rows):
        if extra:
            y += extra.get(i, 0.0)
        out.append(y)
        if isinstance(row, Gap):
            y += ROW_GAP
        elif isinstance(row, StateEvent):
            y += ROW_STATE
        else:
            y += ROW_SEGMENT
    return out


def _anchors(rows: list[Row], ys: list[float]) -> list[tuple[float, float, int, str]]:
    """(time, y, row index, who changed state) points of the piecewise-linear
    time -> y map.  Times are made non-decreasing so a trace slightly out of
    order still maps monotonically."""
    out: list[tuple[float, float, int, str]] = []
    t_max = -math.inf
    for i, (row, y) in enumerate(zip(rows, ys, strict=True)):
        if isinstance(row, Gap):
            t_max = max(t_max, row.t_first)
            out.append((t_max, y, i, ""))
            t_max = max(t_max, row.t_last)
            out.append((t_max, y + ROW_GAP, i, ""))
        else:
            t_max = max(t_max, row.t)
            out.append((t_max, y, i, row.who if isinstance(row, StateEvent) else ""))
    return out


def _arrival_y(
    ev: SegmentEvent, index: int, y_send: float, anchors: list[tuple[float, float, int, str]]
) -> float:
    """Where the arrow ends: level without an arrival time; otherwise at the
    first later row at or after the arrival, interpolated between rows.  An
    arrival that changes the receiver's state ends at the top of its box."""
    if ev.arrive is None or ev.arrive <= ev.t:
        return y_send
    prev_t, prev_y = ev.t, y_send
    for t, y, i, who in anchors:
        if i <= index:
            continue
        if t >= ev.arrive:
            if t == ev.arrive and who == ev.dst:
                return max(y_send, y - 11)
            if t == prev_t:
                return y
            return prev_y + (y - prev_y) * (ev.arrive - prev_t) / (t - prev_t)
        prev_t, prev_y = t, y
    # Arrives after everything recorded: one row further down.
    return max(prev_y, y_send) + ROW_SEGMENT


# -- elements -----------------------------------------------------------


def _kind(flags: int) -> str:
    if flags & RST:
        return "rst"
    if flags & SYN:
        return "syn"
    if flags & FIN:
        return "fin"
    return "ack"


@dataclass
class _Arrow:
    """One segment's drawing: its parts, the obstacles they make, and the
    line its label runs along (from the left end to the right end)."""

    head: str
    parts: list[str]
    obstacles: list[_Box]
    left_end: tuple[float, float]
    right_end: tuple[float, float]
    prefer_start: bool  # label near the left end (the sender's, rightward)
    label_svg: str = ""

    def svg(self) -> str:
        return "".join([self.head, *self.parts, self.label_svg, "</g>"])


def _segment(
    trace: Trace,
    ev: SegmentEvent,
    relative: bool,
    rightward: bool,
    y1: float,
    y2: float,
    row: int,
) -> _Arrow:
    seg = ev.segment
    seq, ack = numbers(trace, ev, relative)
    x1, x2 = (float(X_LEFT), float(X_RIGHT)) if rightward else (float(X_RIGHT), float(X_LEFT))
    # The label runs along the whole path, also where a lost arrow stops short.
    path = ((x1, y1), (x2, y2)) if rightward else ((x2, y2), (x1, y1))
    if ev.fate == LOST:
        x2 = x1 + (x2 - x1) * LOST_AT
        y2 = y1 + (y2 - y1) * LOST_AT
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    attrs = (
        f'class="segment" data-flags="{format_flags(seg.flags)}" data-seq="{seq}" '
        f'data-ack="{ack if seg.flags & ACK else ""}" data-len="{len(seg.payload)}" '
        f'data-fate="{_esc(ev.fate)}" data-from="{_esc(ev.src)}" data-to="{_esc(ev.dst)}" '
        f'data-t="{ev.t:.9g}" data-kind="{_kind(seg.flags)}" data-row="{row}"'
    )
    tip = f"{seg.describe()} [{ev.fate}{': ' + ev.reason if ev.reason else ''}]"
    parts = [f"<title>{_esc(tip)}</title>"]
    parts.append(f'<line data-part="shaft" x1="{x1}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>')
    obstacles = [_Box.segment((x1, y1), (x2, y2))]
    if ev.fate == LOST:
        parts.append(_cross(x2, y2))
        obstacles.append(_Box.rect(x2 - 5, y2 - 5, x2 + 5, y2 + 5))
    else:
        # Arrowhead drawn as a polygon (no <marker>: simpler to colour and test).
        bx, by = x2 - 10 * ux, y2 - 10 * uy
        nx, ny = -uy * 4.5, ux * 4.5
        parts.append(
            f'<polygon data-part="head" points="{x2:.1f},{y2:.1f} {bx + nx:.1f},{by + ny:.1f} '
            f'{bx - nx:.1f},{by - ny:.1f}"/>'
        )
        obstacles.append(_Box([(x2, y2), (bx + nx, by + ny), (bx - nx, by - ny)]))
    if ev.fate not in (DELIVERED, LOST):
        cx, cy = x2 - 16 * ux, y2 - 16 * uy
        parts.append(_cross(cx, cy))
        obstacles.append(_Box.rect(cx - 5, cy - 5, cx + 5, cy + 5))
        reason = ev.fate + (f": {ev.reason}" if ev.reason else "")
        anchor, rx = ("start", x2 + 8) if rightward else ("end", x2 - 8)
        parts.append(
            f'<text class="reason" x="{rx:.1f}" y="{y2 + 4:.1f}" text-anchor="{anchor}">'
            f"{_esc(reason)}</text>"
        )
        w = CHAR_W * len(reason)
        lo = rx if rightward else rx - w
        obstacles.append(_Box.rect(lo, y2 + 4 - ASCENT, lo + w, y2 + 4 + DESCENT))
    return _Arrow(f"<g {attrs}>", parts, obstacles, path[0], path[1], rightward)


# -- label layout ---------------------------------------------------------

# Text metrics of the label font (12 px monospace: DejaVu Sans Mono's advance
# is 0.602 em), a little generous.
CHAR_W = 7.3
ASCENT = 10.0
DESCENT = 3.5
LABEL_PAD = 1.5
LABEL_GAP = 7.0  # between a label and its own arrow (its padded box clears a 5 px cross)
LABEL_MARGIN = (12.0, 16.0)  # clear of the tail and of the head along the arrow
SIDE_X = X_RIGHT + 96  # the label column, for labels that fit nowhere along their arrow


@dataclass
class _Box:
    """A convex polygon (a rotated label box, an arrowhead) or a line segment."""

    points: list[tuple[float, float]]

    @classmethod
    def rect(cls, x0: float, y0: float, x1: float, y1: float) -> _Box:
        return cls([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    @classmethod
    def segment(cls, a: tuple[float, float], b: tuple[float, float]) -> _Box:
        return cls([a, b])

    def y_range(self) -> tuple[float, float]:
        ys = [p[1] for p in self.points]
        return min(ys), max(ys)

    def overlaps(self, other: _Box) -> bool:
        """Separating-axis test: True when the two shapes share an area
        (touching edges do not count)."""
        for shape in (self, other):
            pts = shape.points
            for i in range(len(pts)):
                (ax, ay), (bx, by) = pts[i], pts[(i + 1) % len(pts)]
                nx, ny = by - ay, ax - bx
                if nx == 0 and ny == 0:
                    continue
                p = [nx * x + ny * y for x, y in self.points]
                q = [nx * x + ny * y for x, y in other.points]
                if max(p) <= min(q) + 1e-6 or max(q) <= min(p) + 1e-6:
                    return False
        return True


def _label_box(
    origin: tuple[float, float], ux: float, uy: float, width: float, above: bool
) -> tuple[_Box, tuple[float, float]]:
    """The box of a label whose text starts at ``origin`` on its arrow and
    runs along (ux, uy), above or below; and the text's baseline start."""
    nx, ny = uy, -ux  # the normal pointing up (for a left-to-right arrow)
    lo, hi = (
        (LABEL_GAP, LABEL_GAP + DESCENT + ASCENT)
        if above
        else (-(LABEL_GAP + DESCENT + ASCENT), -LABEL_GAP)
    )
    ox, oy = origin
    p = LABEL_PAD  # a little air around the text, so neighbours do not touch
    corners = [
        (ox + ux * a + nx * n, oy + uy * a + ny * n) for a, n in
        ((-p, lo - p), (width + p, lo - p), (width + p, hi + p), (-p, hi + p))
    ]  # fmt: skip
    base = lo + DESCENT
    return _Box(corners), (ox + nx * base, oy + ny * base)


def _place_labels(
    arrows: list[tuple[_Arrow, str]], obstacles: list[_Box], *, side: bool
) -> tuple[float, list[int]]:
    """Give every arrow its label where it overlaps no other label, arrow,
    state box or timeline: along its own arrow when some stretch of it is
    free (nearest the sender first, then the other side); else, with
    ``side``, in a column right of the ladder at the height the segment
    leaves, and without, leave it out.  Returns the width the drawing needs
    and the indices of the arrows whose labels did not fit."""
    placed: list[_Box] = []
    failed: list[int] = []
    side_boxes: list[_Box] = []
    width = float(WIDTH)
    for k, (arrow, label) in enumerate(arrows):
        w = CHAR_W * len(label)
        (lx, ly), (rx, ry) = arrow.left_end, arrow.right_end
        length = math.hypot(rx - lx, ry - ly) or 1.0
        ux, uy = (rx - lx) / length, (ry - ly) / length
        y_lo, y_hi = min(ly, ry) - w - 30, max(ly, ry) + w + 30
        near = [
            b for b in (*obstacles, *placed)
            if b.y_range()[1] >= y_lo and b.y_range()[0] <= y_hi
        ]  # fmt: skip
        first, last = LABEL_MARGIN if arrow.prefer_start else LABEL_MARGIN[::-1]
        starts: list[float] = []
        a = first
        while a + w <= length - last + 1e-9:
            starts.append(a)
            a += 4.0
        if not arrow.prefer_start:
            starts.reverse()
        spot = None
        for above in (arrow.prefer_start, not arrow.prefer_start):
            for a in starts:
                box, base = _label_box((lx + ux * a, ly + uy * a), ux, uy, w, above)
                if not any(box.overlaps(o) for o in near):
                    spot = (box, base)
                    break
            if spot:
                break
        if spot is not None:
            box, (bx, by) = spot
            angle = math.degrees(math.atan2(uy, ux))
            arrow.label_svg = (
                f'<text class="label" x="{bx:.1f}" y="{by:.1f}" '
                f'transform="rotate({angle:.2f} {bx:.1f} {by:.1f})">{_esc(label)}</text>'
            )
            placed.append(box)
            continue
        if not side:
            failed.append(k)
            continue
        # Nowhere along the arrow: the side column, at the sending end's height.
        y = (ly if arrow.prefer_start else ry) + 4
        p = LABEL_PAD
        box = _Box.rect(SIDE_X - p, y - ASCENT - p, SIDE_X + w + p, y + DESCENT + p)
        while any(box.overlaps(o) for o in side_boxes):
            y += ASCENT + DESCENT + 2 * p
            box = _Box.rect(SIDE_X - p, y - ASCENT - p, SIDE_X + w + p, y + DESCENT + p)
        side_boxes.append(box)
        placed.append(box)
        width = max(width, SIDE_X + w + 16)
        arrow.label_svg = f'<text class="label side" x="{SIDE_X}" y="{y:.1f}">{_esc(label)}</text>'
    return width, failed


def _cross(x: float, y: float, r: float = 5.0) -> str:
    return (
        f'<line class="cross" x1="{x - r:.1f}" y1="{y - r:.1f}" x2="{x + r:.1f}" y2="{y + r:.1f}"/>'
        f'<line class="cross" x1="{x - r:.1f}" y1="{y + r:.1f}" x2="{x + r:.1f}" y2="{y - r:.1f}"/>'
    )


def _state_width(ev: StateEvent) -> float:
    return 7.3 * len(str(ev.state)) + 12


def _state(ev: StateEvent, x: float, y: float, row: int) -> str:
    text = str(ev.state)
    w = _state_width(ev)
    return (
        f'<g class="state" data-who="{_esc(ev.who)}" data-state="{text}" data-row="{row}">'
        f'<rect x="{x - w / 2:.1f}" y="{y - 9:.1f}" width="{w:.1f}" height="18" rx="4"/>'
        f'<text x="{x}" y="{y + 4:.1f}" text-anchor="middle">{text}</text></g>'
    )


def _gap(gap: Gap, y: float, row: int) -> str:
    mid = y + ROW_GAP / 2
    lines = "".join(
        f'<line x1="{x}" y1="{y + 6:.1f}" x2="{x}" y2="{y + ROW_GAP - 6:.1f}"/>'
        for x in (X_LEFT, X_RIGHT)
    )
    return (
        f'<g class="gap" data-count="{gap.count}" data-row="{row}">'
        f'<rect x="{X_LEFT - 3}" y="{y + 6:.1f}" width="{X_RIGHT - X_LEFT + 6}" '
        f'height="{ROW_GAP - 12}"/>{lines}'
        f'<text x="{(X_LEFT + X_RIGHT) / 2}" y="{mid + 4:.1f}" text-anchor="middle">'
        f"{_esc(gap.describe())}</text></g>"
    )


def _legend(y: float) -> tuple[list[str], float]:
    """Sample arrows for each colour and fate; returns elements and height."""
    items: list[str] = ['<g class="legend">']
    samples = (
        ("syn", "SYN"),
        ("fin", "FIN"),
        ("rst", "RST"),
        ("ack", "data / ACK"),
    )
    x = 40.0
    for kind, text in samples:
        items.append(
            f'<g data-kind="{kind}"><line x1="{x}" y1="{y}" x2="{x + 34}" y2="{y}" '
            f'stroke-width="2"/><polygon points="{x + 40},{y} {x + 31},{y - 4} {x + 31},{y + 4}"/>'
            f'</g><text x="{x + 46}" y="{y + 4}">{text}</text>'
        )
        x += 60 + 7 * len(text)
    items.append(
        f'<line x1="{x}" y1="{y}" x2="{x + 30}" y2="{y}" stroke="#424a53" '
        f'stroke-dasharray="5 3"/>{_cross(x + 30, y)}<text x="{x + 42}" y="{y + 4}">lost</text>'
    )
    x += 90
    items.append(f'{_cross(x + 8, y)}<text x="{x + 20}" y="{y + 4}">dropped by receiver</text>')
    x += 175
    items.append(
        f'<g class="state"><rect x="{x}" y="{y - 9}" width="46" height="18" rx="4"/></g>'
        f'<text x="{x + 54}" y="{y + 4}">state</text>'
    )
    items.append("</g>")
    return items, y + 24


# XML 1.0 allows only these characters; anything else (a NUL in a reason read
# from a capture) would make the document unparseable.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _esc(text: str) -> str:
    return html.escape(_NOT_XML.sub("\ufffd", text), quote=True)
