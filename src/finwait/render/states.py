"""RFC 9293's state diagram (Figure 5, §3.3.2) as SVG, drawn from
``tcp.state.TRANSITIONS`` — the table the engine's tests check — so the
picture and the engine cannot disagree.

The boxes sit where the RFC puts them: CLOSED on top, the opening states
below it, ESTABLISHED in the middle, the active closer's states on the left,
the passive closer's on the right, TIME-WAIT at the bottom.  As in the RFC,
CLOSED is drawn twice: transitions out of the synchronized states go to a
second CLOSED box at the bottom, and the abnormal ends (rcv RST, ABORT, a
timeout) of the synchronized states are short arrows to the word CLOSED
beside each box, which the RFC's figure leaves out.  Every row of the table is one
``<g class="edge" data-from data-to>`` with its event and action; every state
a ``<g class="state" data-state>`` (the learning page highlights them).
``docs/states.svg`` is this drawing (``python scripts/docs.py``).
"""

from __future__ import annotations

import html
import math

from ..tcp.state import TRANSITIONS, State

S = State
WIDTH, HEIGHT = 980, 810
BOX_W, BOX_H = 128, 34

# Centre of each box.  "CLOSED*" is the second CLOSED box, at the bottom.
POSITIONS: dict[str, tuple[float, float]] = {
    "CLOSED": (490, 44),
    "LISTEN": (490, 164),
    "SYN-RECEIVED": (170, 284),
    "SYN-SENT": (810, 284),
    "ESTABLISHED": (490, 404),
    "FIN-WAIT-1": (170, 524),
    "CLOSE-WAIT": (810, 524),
    "FIN-WAIT-2": (170, 644),
    "CLOSING": (490, 604),
    "LAST-ACK": (810, 644),
    "TIME-WAIT": (490, 744),
    "CLOSED*": (810, 744),
}
_UPPER = {S.CLOSED, S.LISTEN, S.SYN_SENT, S.SYN_RECEIVED}

# Bend of each edge (positive: to the left of its direction), where a
# straight line would run through a box or onto another edge; and where along
# the edge its label sits (0..1) and on which side.
_BEND: dict[tuple[State, State], float] = {
    (S.CLOSED, S.LISTEN): 22,
    (S.LISTEN, S.CLOSED): 22,
    (S.SYN_SENT, S.CLOSED): -45,
    (S.SYN_RECEIVED, S.LISTEN): -25,
    (S.LISTEN, S.SYN_RECEIVED): -25,
}
# Label beside its edge instead of on it: "start" (to the right of the
# edge's midpoint) or "end" (to the left).
_LABEL_SIDE: dict[tuple[State, State], str] = {
    (S.CLOSED, S.LISTEN): "start",
    (S.LISTEN, S.CLOSED): "end",
    (S.SYN_SENT, S.CLOSED): "start",
    (S.LISTEN, S.SYN_RECEIVED): "end",
    (S.SYN_RECEIVED, S.LISTEN): "start",
}
# The abnormal ends (a RST, ABORT, a timeout) of the synchronized states are
# drawn as a short arrow out of the box to "CLOSED", as the RFC's figure
# leaves them out: which side the arrow leaves from.
_STUB: dict[State, str] = {
    S.SYN_RECEIVED: "left",
    S.FIN_WAIT_1: "left",
    S.FIN_WAIT_2: "left",
    S.ESTABLISHED: "right",
    S.CLOSING: "right",
    S.CLOSE_WAIT: "right",
}

_STYLE = """
.sd text { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
.sd .state rect { fill: #f6f8fa; stroke: #57606a; stroke-width: 1.5; }
.sd .state text { font-size: 13px; font-weight: 600; fill: #1f2328; }
.sd .edge path { fill: none; stroke: #8c959f; stroke-width: 1.3; }
.sd .edge polygon { fill: #8c959f; }
.sd .edge text { font-size: 10.5px; fill: #57606a; paint-order: stroke; stroke: #ffffff;
                 stroke-width: 3px; stroke-linejoin: round; }
.sd .title { font-size: 14px; font-weight: 600; fill: #1f2328; }
.sd .note, .sd .stub-to { font-size: 11px; fill: #57606a; }
.sd .edge .stub-to { stroke: none; }
"""


def _node(state: State, to: bool, src: State | None = None) -> str:
    """Which box an edge end uses: transitions from synchronized states end
    at the lower CLOSED box."""
    if state is S.CLOSED and to and src is not None and src not in _UPPER:
        return "CLOSED*"
    return str(state)


def _edge_point(box: tuple[float, float], toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from the box's centre toward ``toward`` leaves the box."""
    (cx, cy), (tx, ty) = box, toward
    dx, dy = tx - cx, ty - cy
    if dx == 0 and dy == 0:
        return cx, cy
    sx = (BOX_W / 2) / abs(dx) if dx else math.inf
    sy = (BOX_H / 2) / abs(dy) if dy else math.inf
    s = min(sx, sy)
    return cx + dx * s, cy + dy * s


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def state_diagram_svg(*, title: bool = True) -> str:
    """The whole diagram as a standalone SVG document."""
    parts: list[str] = []
    for src, dst, event, action in TRANSITIONS:
        label = event if action == "x" else f"{event} / {action}"
        if dst is S.CLOSED and src in _STUB:
            parts.append(_stub(src, dst, event, action, label))
            continue
        a = POSITIONS[_node(src, False)]
        b = POSITIONS[_node(dst, True, src)]
        bend = _BEND.get((src, dst), 0.0)
        mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
        dx, dy = b[0] - a[0], b[1] - a[1]
        length = math.hypot(dx, dy) or 1.0
        nx, ny = dy / length, -dx / length  # left of the direction
        cx, cy = mx + nx * bend * 2, my + ny * bend * 2  # control point
        p0 = _edge_point(a, (cx, cy))
        p1 = _edge_point(b, (cx, cy))
        # Arrowhead along the curve's end tangent (from the control point).
        tx, ty = p1[0] - cx, p1[1] - cy
        tl = math.hypot(tx, ty) or 1.0
        ux, uy = tx / tl, ty / tl
        hx, hy = p1[0] - 9 * ux, p1[1] - 9 * uy
        head = (
            f"{p1[0]:.1f},{p1[1]:.1f} {hx - uy * 4:.1f},{hy + ux * 4:.1f} "
            f"{hx + uy * 4:.1f},{hy - ux * 4:.1f}"
        )
        t = 0.5
        lx = (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * cx + t**2 * p1[0]
        ly = (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * cy + t**2 * p1[1]
        anchor = _LABEL_SIDE.get((src, dst), "middle")
        lx += {"start": 8, "end": -8, "middle": 0}[anchor]
        parts.append(
            f'<g class="edge" data-from="{src}" data-to="{dst}" data-event="{_esc(event)}" '
            f'data-action="{_esc(action)}"><title>{src} → {dst}: {_esc(label)}</title>'
            f'<path d="M{p0[0]:.1f},{p0[1]:.1f} Q{cx:.1f},{cy:.1f} {hx:.1f},{hy:.1f}"/>'
            f'<polygon points="{head}"/>'
            + "".join(
                f'<text x="{lx:.1f}" y="{ly + 4 + 12 * (k - 0.5 * (n - 1)):.1f}" '
                f'text-anchor="{anchor}">{_esc(line)}</text>'
                for lines in [_wrap(label)]
                for n in [len(lines)]
                for k, line in enumerate(lines)
            )
            + "</g>"
        )
    for name, (x, y) in POSITIONS.items():
        state = name.rstrip("*")
        parts.append(
            f'<g class="state" data-state="{state}">'
            f'<rect x="{x - BOX_W / 2}" y="{y - BOX_H / 2}" width="{BOX_W}" height="{BOX_H}" '
            f'rx="6"/><text x="{x}" y="{y + 4.5}" text-anchor="middle">{state}</text></g>'
        )
    head = (
        '<text class="title" x="16" y="22">RFC 9293 Figure 5: TCP connection state diagram</text>'
        if title
        else ""
    )
    note = (
        f'<text class="note" x="16" y="{HEIGHT - 14}">→ CLOSED beside a box: rcv RST, ABORT '
        "or a timeout (delete TCB); each arrow's tooltip gives the exact events.</text>"
    )
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="sd" width="{WIDTH}" '
            f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="TCP connection state diagram">',
            f"<style>{_STYLE}</style>",
            '<rect width="100%" height="100%" fill="#ffffff"/>',
            head,
            *parts,
            note,
            "</svg>",
            "",
        ]
    )


def _stub(src: State, dst: State, event: str, action: str, label: str) -> str:
    """A short arrow from ``src``'s box to the word CLOSED beside it."""
    x, y = POSITIONS[str(src)]
    sign = -1 if _STUB[src] == "left" else 1
    x0 = x + sign * BOX_W / 2
    x1 = x0 + sign * 26
    anchor = "end" if sign < 0 else "start"
    return (
        f'<g class="edge stub" data-from="{src}" data-to="{dst}" data-event="{_esc(event)}" '
        f'data-action="{_esc(action)}"><title>{src} → {dst}: {_esc(label)}</title>'
        f'<path d="M{x0:.1f},{y} L{x1 - sign * 8:.1f},{y}"/>'
        f'<polygon points="{x1:.1f},{y} {x1 - sign * 9:.1f},{y - 4} {x1 - sign * 9:.1f},{y + 4}"/>'
        f'<text class="stub-to" x="{x1 + sign * 4:.1f}" y="{y + 4}" text-anchor="{anchor}">'
        f"CLOSED</text></g>"
    )


def _wrap(label: str, width: int = 26) -> list[str]:
    """Split a long label at its " / " separators into lines."""
    lines: list[str] = []
    for piece in label.split(" / "):
        if lines and len(lines[-1]) + 3 + len(piece) <= width:
            lines[-1] += " / " + piece
        else:
            lines.append(piece)
    return lines
