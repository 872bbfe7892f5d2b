"""The packetdrill-dialect parser: what it reads, and one-line errors for
what it cannot (file:line, never a traceback)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finwait.script.model import Array, Code, Packet, ScriptError, Struct, Symbol, Syscall
from finwait.script.parser import parse_script
from finwait.wire.segment import ACK, FIN, PSH, SYN

GOOD = """\
// a comment
--tolerance_usecs=10000
--strict_segments
/* a block
   comment */
`echo init`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0
   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
   +0 > S 0:0(0) <...>
 +.01 < S. 0:0(0) ack 1 win 5792 <mss 1460,sackOK,TS val 700 ecr 100,nop,wscale 7>
   +0 > . 1:1(0) ack 1
+0.1~+0.2 < P. 1:1001(1000) ack 1 win 257 <nop,nop,sack 1:2 3:4>
   +0...0.300 read(3, ..., 1000) = 1000
    * > . 1:1(0) ack 1001
   +0 poll([{fd=3, events=POLLIN, revents=POLLIN}], 1, 0) = 1
   +0 %{ print(1) }%
   +0 < - 1:1(0) win 0
"""


def test_parses_every_construct() -> None:
    s = parse_script(GOOD, "good.pkt")
    assert s.option("tolerance_usecs") == "10000"
    assert s.option("strict_segments") == ""
    assert s.init_command is not None and s.init_command.text == "echo init"
    evs = s.events
    assert [e.line for e in evs] == [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    linger = evs[1].action
    assert isinstance(linger, Syscall) and isinstance(linger.args[3], Struct)
    conn = evs[3].action
    assert isinstance(conn, Syscall) and conn.ret == -1 and conn.errno == "EINPROGRESS"
    synack = evs[5].action
    assert isinstance(synack, Packet) and synack.flags == SYN | ACK and synack.ack == 1
    assert synack.options == (
        ("mss", 1460), ("sackOK",), ("TS", 700, 100), ("nop",), ("wscale", 7)
    )  # fmt: skip
    assert evs[4].action.options is None  # type: ignore[union-attr]
    data = evs[7]
    assert data.time.kind == "rel" and data.time.start == pytest.approx(0.1)
    assert data.time.until == pytest.approx(0.2) and data.time.until_rel
    assert isinstance(data.action, Packet) and data.action.flags == PSH | ACK
    assert data.action.options == (("nop",), ("nop",), ("sack", ((1, 2), (3, 4))))
    read = evs[8]
    assert read.time.block_end == pytest.approx(0.3)
    assert evs[9].time.kind == "any"
    poll = evs[10].action
    assert isinstance(poll, Syscall) and isinstance(poll.args[0], Array)
    assert isinstance(evs[11].action, Code)
    none = evs[12].action
    assert isinstance(none, Packet) and none.flags == 0


def test_per_target_lines() -> None:
    text = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n//@engine +0 close(3) = 0\n//@kernel +1 close(3) = 0\n"
    eng = parse_script(text, "t.pkt", "engine")
    ker = parse_script(text, "t.pkt", "kernel")
    assert [e.line for e in eng.events] == [1, 2]
    assert [e.line for e in ker.events] == [1, 3]
    assert len(parse_script(text, "t.pkt").events) == 3
    with pytest.raises(ScriptError, match=r"t\.pkt:1: unknown target"):
        parse_script("//@windows 0 close(3) = 0\n", "t.pkt")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:10(5) win 10\n", 2,
         "end - start is 10, not 5"),
        ("\n\n+0 < X 0:0(0) win 10\n", 3, "unknown TCP flag 'X'"),
        ("+0 < S 0:0(0) win 10 <mss 1000,bogus 3>\n", 1, "unknown or malformed TCP option"),
        ("+0 < S 0:0(0) wnd 10\n", 1, "unknown segment field 'wnd'"),
        ("+0 frobnicate\n", 1, "cannot interpret"),
        ("hello world\n", 1, "must start with a time"),
        ("+0 read(3, ..., 10\n", 1, "unclosed bracket"),
        ("/* open\n", 1, "unterminated /*"),
        ("+0 close(3) = 0 ENOPE extra\n", 1, "unexpected"),
        ("+0 < S 0:0(0) win 70000\n", 1, "win 70000 out of range"),
        ("+0 %{ x\n", 1, "unterminated %{"),
        ("+0 < S 0:0(0)\n--mss=1000\n", 2, "before the first event"),
    ],
)  # fmt: skip
def test_malformed_is_one_line_error(text: str, line: int, message: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(text, "bad.pkt")
    err = info.value
    assert err.line == line
    assert message in err.message
    assert str(err).startswith(f"bad.pkt:{line}: ")
    assert "\n" not in str(err)


def test_symbols_and_bitor() -> None:
    s = parse_script("0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n")
    call = s.events[0].action
    assert isinstance(call, Syscall)
    assert call.args[1] == Symbol("F_SETFL")


_ALPHABET = st.sampled_from(
    [*"0123456789+-*~.:()[]{}<>,=|`%/\"\n \t",
     "S", "F", "P", "R", ".", "ack", "win", "mss", "TS", "val", "ecr", "sack", "nop",
       "sackOK", "wscale", "read(", "close(", "socket(", "...", "//", "/*", "*/", "%{", "}%",
       "--x=1", "0 ", "+0 ", "< ", "> ", "0:0(0)", "1:1001(1000)", "EAGAIN", "{fd=3}"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_fuzz_parser_never_raises_anything_else(text: str) -> None:
    """Any text either parses or raises ScriptError with a line number in range."""
    try:
        parse_script(text, "fuzz.pkt")
    except ScriptError as exc:
        assert 0 <= exc.line <= text.count("\n") + 1
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(GOOD.splitlines()),
    st.integers(min_value=0, max_value=80),
    st.sampled_from(list("0123456789:()<>,.+-~*X ")),
)
def test_fuzz_mutated_lines(line: str, pos: int, ch: str) -> None:
    """One character changed in a valid event line: parses or a ScriptError."""
    pos = min(pos, len(line))
    text = line[:pos] + ch + line[pos + 1 :] + "\n"
    try:
        parse_script(text, "m.pkt")
    except ScriptError as exc:
        assert exc.line == 1


def test_fin_flags() -> None:
    s = parse_script("0 > F. 1:1(0) ack 2\n")
    pkt = s.events[0].action
    assert isinstance(pkt, Packet) and pkt.flags == FIN | ACK and pkt.direction == ">"
