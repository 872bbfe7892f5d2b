"""The text ladder: a Trace drawn as the classic two-column sequence diagram.

One row per event: an arrow per segment between the two endpoints' lines,
labelled with flags, seq, ack and len (relative numbers by default, as
Wireshark shows them), and each side's new state in its own column beside its
line at the moment it changes.  Lost segments stop short at a cross; dropped
ones reach the receiver with the reason beside its line.  Long transfers are
folded by the shared rule of ``rows.py`` (never the handshake, the release,
SYN/FIN/RST, or a lost or dropped segment).  Read RFC 9293 §3.5 (open) and
§3.6 (close, Figure 12/13) to follow the pictures this draws.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..trace import DELIVERED, LOST, StateEvent, Trace
from .rows import (
    DEFAULT_MAX_ROWS,
    Gap,
    Row,
    endpoint_text,
    format_ms,
    layout_rows,
    retransmissions,
    segment_label,
    sides,
)


@dataclass(frozen=True, slots=True)
class _Glyphs:
    line: str
    shaft: str
    right: str
    left: str
    lost: str
    gap: str
    drop: str


_UNICODE = _Glyphs(line="│", shaft="─", right="►", left="◄", lost="✗", gap="┆", drop="✗")
_ASCII = _Glyphs(line="|", shaft="-", right=">", left="<", lost="x", gap=":", drop="x")

# Minimum shaft on each side of a label, and the least interior width.
_MIN_SHAFT = 3
_MIN_INTERIOR = 24


@dataclass(frozen=True, slots=True)
class _Line:
    """One output row before the interior width is known."""

    t: str
    left: str  # note beside the left line: that side's new state, or a drop
    right: str  # the same for the right side
    kind: str  # "arrow", "state" or "gap"
    text: str = ""  # arrow label or gap description
    rightward: bool = True
    lost: bool = False


def render_text(
    trace: Trace,
    *,
    relative: bool = True,
    width: int = 88,
    elide: bool = True,
    max_rows: int = DEFAULT_MAX_ROWS,
    ascii: bool = False,
) -> str:
    """Draw ``trace`` as a text ladder about ``width`` columns wide (wider
    when a label needs it: labels are never cut).  ``relative=False`` shows
    raw sequence numbers; ``ascii=True`` uses only ASCII characters."""
    g = _ASCII if ascii else _UNICODE
    left, right = sides(trace)
    rows = layout_rows(trace, elide=elide, max_rows=max_rows)
    retx = {id(trace.events[i]) for i in retransmissions(trace)}
    lines = _lines(trace, rows, left, relative, retx, g, ascii)

    gutter = max([len("ms"), *(len(x.t) for x in lines)])
    left_w = max([0, *(len(x.left) for x in lines)])
    right_w = max([0, *(len(x.right) for x in lines)])
    needed = max([_MIN_INTERIOR, *(_needed(x) for x in lines)])
    interior = max(needed, width - (gutter + 1 + left_w + 1 + 2 + 1 + right_w))
    a_col = gutter + 1 + left_w + 1

    out = [_ascii_only(h, ascii) for h in _header(trace, left, right, a_col, a_col + 1 + interior)]
    out.append(f"{'ms':>{gutter}} {'':>{left_w}} {g.line}{' ' * interior}{g.line}".rstrip())
    for x in lines:
        edge = g.gap if x.kind == "gap" else g.line
        row = (
            f"{x.t:>{gutter}} {x.left:>{left_w}} {edge}{_interior(x, interior, g)}{edge} {x.right}"
        )
        out.append(_ascii_only(row.rstrip(), ascii))
    return "\n".join(out) + "\n"


def _lines(
    trace: Trace,
    rows: list[Row],
    left: str,
    relative: bool,
    retx: set[int],
    g: _Glyphs,
    ascii: bool,
) -> list[_Line]:
    """Rows to lines; consecutive state changes at one instant share a line."""
    out: list[_Line] = []
    for r in rows:
        if isinstance(r, Gap):
            out.append(_Line(t="", left="", right="", kind="gap", text=r.describe(ascii=ascii)))
            continue
        t = format_ms(r.t)
        if isinstance(r, StateEvent):
            on_left = r.who == left
            prev = out[-1] if out else None
            if (
                prev is not None
                and prev.kind == "state"
                and prev.t == t
                and not (prev.left if on_left else prev.right)
            ):
                out[-1] = _Line(
                    t=t,
                    left=str(r.state) if on_left else prev.left,
                    right=prev.right if on_left else str(r.state),
                    kind="state",
                )
                continue
            out.append(
                _Line(
                    t=t,
                    left=str(r.state) if on_left else "",
                    right="" if on_left else str(r.state),
                    kind="state",
                )
            )
            continue
        label = segment_label(trace, r, relative, id(r) in retx)
        rightward = r.src == left
        note = ""
        if r.fate not in (DELIVERED, LOST):
            note = f"{g.drop} {r.fate}" + (f": {r.reason}" if r.reason else "")
        own_state = ""
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.kind == "state"
            and prev.t == t
            and not (prev.right if rightward else prev.left)
        ):
            # The sender's state change that came with this send (CLOSE ->
            # FIN-WAIT-1 and its FIN) shares the arrow's row, beside the sender.
            own_state = prev.left if rightward else prev.right
            out.pop()
        out.append(
            _Line(
                t=t,
                left=own_state if rightward else note,
                right=note if rightward else own_state,
                kind="arrow",
                text=label,
                rightward=rightward,
                lost=r.fate == LOST,
            )
        )
    return out


def _needed(x: _Line) -> int:
    """Interior width this line needs to show its text whole."""
    if x.kind == "gap":
        return len(x.text) + 2
    if x.kind == "arrow":
        return len(x.text) + 2 + 2 * _MIN_SHAFT + 1 + (2 if x.lost else 0)
    return 0


def _interior(x: _Line, width: int, g: _Glyphs) -> str:
    if x.kind == "gap":
        return x.text.center(width)
    if x.kind == "state":
        return " " * width
    length = width
    if x.lost:
        # Stops short of the receiver: the segment never got there.
        length = min(width - 2, max(_needed(x) - 2, round(width * 0.7)))
    body = f" {x.text} "
    shaft = length - 1
    before = (shaft - len(body)) // 2
    after = shaft - len(body) - before
    drawn = g.shaft * before + body + g.shaft * after
    if x.rightward:
        return drawn + (g.lost if x.lost else g.right) + " " * (width - length)
    return " " * (width - length) + (g.lost if x.lost else g.left) + drawn


def _header(trace: Trace, left: str, right: str, a_col: int, b_col: int) -> list[str]:
    """Endpoint names and addresses: the left one ending over its line, the
    right one starting over its line."""
    a_text = endpoint_text(trace, left)
    b_text = endpoint_text(trace, right)
    a_start = max(0, a_col + 1 - len(a_text))
    row = " " * a_start + a_text
    row = row.ljust(b_col - 1) if len(row) < b_col - 1 else row + "  "
    return [row + b_text]


def _ascii_only(text: str, ascii: bool) -> str:
    """Make a finished row safe for a terminal: control characters (an
    escape sequence hidden in a name) become U+FFFD; in ASCII mode our glyphs
    are mapped and anything else non-ASCII is escaped as ``\\u....``."""
    text = _CONTROL.sub("\ufffd", text)
    if not ascii:
        return text
    text = text.translate(_TO_ASCII)
    return text.encode("ascii", "backslashreplace").decode("ascii")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TO_ASCII = str.maketrans({"✗": "x", "→": "->", "…": "...", "─": "-", "│": "|", "┆": ":"})
