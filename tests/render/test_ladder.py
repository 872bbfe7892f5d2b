"""The text ladder: the seed's release drawn with the right numbers, in order,
in the right direction, with the right states; elision; ASCII mode."""

from __future__ import annotations

import re

from render_traces import (
    A_ISN,
    Script,
    bare_fin,
    long_trace,
    lost_fin,
    seed_release,
)

from finwait.render.ladder import render_text
from finwait.tcp.state import State
from finwait.trace import LOST, Trace
from finwait.wire.segment import ACK, PSH

RELEASE = (
    ("FIN,ACK seq=50 ack=248 len=0", "left", "FIN-WAIT-1"),
    ("ACK seq=248 ack=51 len=0", "right", "CLOSE-WAIT"),
    ("FIN,ACK seq=248 ack=51 len=0", "right", "LAST-ACK"),
    ("ACK seq=51 ack=249 len=0", "left", "TIME-WAIT"),
)


def _line_with(text: str, label: str) -> tuple[int, str]:
    for i, line in enumerate(text.splitlines()):
        if label in line:
            return i, line
    raise AssertionError(f"{label!r} not in ladder:\n{text}")


def test_seed_release_arrows_in_order_with_direction_and_state(seed: Trace) -> None:
    out = render_text(seed)
    positions = []
    for label, direction, state in RELEASE:
        i, line = _line_with(out, label)
        positions.append(i)
        if direction == "left":
            assert "◄" in line and "►" not in line
        else:
            assert "►" in line and "◄" not in line
        # The sender's new state is on the arrow's row or the row above at the
        # same instant, on the sender's side of the arrow.
        rows = out.splitlines()
        holder = line if state in line else rows[i - 1]
        assert state in holder
        assert holder.split()[0] == line.split()[0]  # same time stamp
        label_at = line.index(label)
        assert (holder.index(state) > label_at) == (direction == "left")
    assert positions == sorted(positions)


def test_final_states_are_shown_in_each_sides_column(seed: Trace) -> None:
    out = render_text(seed)
    _, fin_wait_2 = _line_with(out, "FIN-WAIT-2")
    _, a_closed = _line_with(out, "CLOSED")
    # B's states sit right of both lines, A's left of them.
    assert fin_wait_2.rstrip().endswith("FIN-WAIT-2")
    assert re.match(r"\s*100\.000\s+CLOSED │", a_closed)
    last = out.splitlines()[-1]
    assert last.endswith("CLOSED") and last.lstrip().startswith("60,100.000")


def test_header_names_both_endpoints(seed: Trace) -> None:
    head = render_text(seed).splitlines()[0]
    assert "A 192.168.1.100:51234" in head
    assert "B 119.75.218.70:80" in head
    assert head.index("A 192") < head.index("B 119")


def test_lines_are_aligned_in_every_row(seed: Trace) -> None:
    rows = render_text(seed).splitlines()[1:]
    columns = {tuple(i for i, ch in enumerate(r) if ch == "│") for r in rows}
    # Every row has exactly the two timelines, at the same two columns.
    assert len(columns) == 1
    assert len(next(iter(columns))) == 2


def test_raw_numbers_on_request(seed: Trace) -> None:
    out = render_text(seed, relative=False)
    assert "FIN,ACK seq=5050 ack=1248 len=0" in out
    assert "ACK seq=5051 ack=1249 len=0" in out
    assert "seq=50 ack=248" not in out


def test_ascii_mode_is_pure_ascii_even_with_hostile_names() -> None:
    tr = seed_release().trace
    tr.endpoints["B"].addr = "serveur-é→✓"  # display only; numbers unaffected
    out = render_text(tr, ascii=True)
    assert out.isascii()
    assert "<" in out and ">" in out
    _, line = _line_with(out, "FIN,ACK seq=50 ack=248 len=0")
    assert re.search(r"\|<-+ FIN,ACK seq=50 ack=248 len=0 -+\|", line)


def test_lost_segment_stops_short_and_retransmission_is_marked() -> None:
    out = render_text(lost_fin().trace)
    lines = [ln for ln in out.splitlines() if "FIN,ACK seq=50 ack=248" in ln]
    assert len(lines) == 2
    lost, retx = lines
    assert "✗" in lost and "◄" not in lost
    # The cross is not at the receiver's line: the arrow stops short.
    left_line = lost.index("│")
    assert lost.index("✗") > left_line + 3
    assert "◄" in retx and "(retx)" in retx


def test_dropped_segment_shows_reason_at_receiver() -> None:
    out = render_text(bare_fin().trace)
    _, line = _line_with(out, "FIN seq=248 len=0")
    assert "►" in line
    assert line.rstrip().endswith("✗ dropped: fin without ack")


def test_long_transfer_is_elided_but_never_the_handshake_or_release() -> None:
    script = long_trace(n=400)
    tr = script.trace
    out = render_text(tr, max_rows=40)
    n_segments = sum(1 for _ in tr.segments())
    arrows = [ln for ln in out.splitlines() if "►" in ln or "◄" in ln]
    assert len(arrows) <= 40
    m = re.search(r"… ([\d,]+) segments \(A→B ([\d,]+), B→A ([\d,]+); ([\d,]+) bytes\) …", out)
    assert m is not None
    hidden = int(m.group(1).replace(",", ""))
    assert hidden + len(arrows) == n_segments
    assert int(m.group(2).replace(",", "")) + int(m.group(3).replace(",", "")) == hidden
    for label in (
        "SYN seq=0 len=0",
        "SYN,ACK seq=0 ack=1 len=0",
        "ACK seq=1 ack=1 len=0",
        "FIN,ACK seq=1 ack=400001 len=0",
        "ACK seq=400001 ack=2 len=0",
        "FIN,ACK seq=400001 ack=2 len=0",
        "ACK seq=2 ack=400002 len=0",
    ):
        assert label in out
    assert len(render_text(tr, elide=False).splitlines()) > n_segments


def test_elision_keeps_a_lost_segment_in_the_middle() -> None:
    s = Script()
    s.state("A", State.ESTABLISHED)
    for i in range(200):
        s.send("A", PSH | ACK, b"x" * 100, fate=LOST if i == 100 else "delivered")
    out = render_text(s.trace, max_rows=20)
    # No SYN: the first data byte is relative 0, and B never sent, so ack=0.
    _, line = _line_with(out, "seq=10000 ack=0 len=100")
    assert "✗" in line
    assert out.count("segments (") == 2  # one gap on each side of it
    assert s.trace.isn("A") == A_ISN


def test_short_trace_is_not_elided_and_unknown_endpoints_do_not_crash() -> None:
    tr = Trace()
    tr.add_endpoint("A", "2001:db8::1", 40000, 7)
    s = Script()
    seg = next(s.trace.segments(), None)
    assert seg is None
    from finwait.wire.segment import Segment

    tr.add_segment(0.0, Segment("2001:db8::1", "2001:db8::2", 40000, 443, 8, 1, ACK, 0, b"hi"))
    out = render_text(tr)
    assert "A [2001:db8::1]:40000" in out
    assert "2001:db8::2:443" in out
    assert "ACK seq=1 ack=" in out


def test_control_characters_in_names_cannot_reach_the_terminal() -> None:
    tr = seed_release().trace
    tr.endpoints["B"].addr = "evil\x1b[2J\x07"
    for ascii in (False, True):
        out = render_text(tr, ascii=ascii)
        assert "\x1b" not in out and "\x07" not in out
        assert "evil" in out
