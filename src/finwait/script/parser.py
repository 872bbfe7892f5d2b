"""Parse packetdrill's script dialect into :mod:`finwait.script.model` values.

The dialect is packetdrill's (``gtests/net/packetdrill/lexer.l`` and
``parser.y``): ``--name=value`` option lines, ``//`` and ``/* */`` comments,
backquoted shell commands, ``%{ }%`` code blocks, and events made of a time
(``0.1``, ``+0.1``, ``*``, ``a~b``, ``a...b``) and an action: a TCP segment
(``< S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>``) or a
socket call (``+0 accept(3, ..., ...) = 4``).

finwait adds one thing: a line starting ``//@engine`` or ``//@kernel`` holds
an event for that target only (a plain comment for packetdrill itself), so a
script can state where finwait deliberately differs from Linux.

This is a hand-written line-oriented parser rather than a port of the
grammar: an event is one logical line (a line continues while its brackets
are open), which gives every error its exact line.  Anything it cannot
interpret is a :class:`ScriptError` naming the line; nothing is skipped
silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..wire.segment import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG
from .model import (
    Action,
    Array,
    BitOr,
    Code,
    Command,
    Ellipsis_,
    Event,
    Expr,
    Option,
    Packet,
    Script,
    ScriptError,
    Struct,
    Symbol,
    Syscall,
    TimeSpec,
)

TARGETS = ("engine", "kernel")

_FLAG_CHARS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, ".": ACK, "U": URG, "E": ECE, "W": CWR}

_NUM = r"(?:\d+\.\d*|\.\d+|\d+)"
_TIME_RE = re.compile(
    rf"""^(?:
        (?P<any>\*)
      | (?P<plus>\+)?\s*(?P<start>{_NUM})
        (?:\s*~\s*(?P<uplus>\+)?\s*(?P<until>{_NUM}))?
        (?:\s*\.\.\.\s*(?P<bplus>\+)?\s*(?P<bend>{_NUM}))?
    )(?=\s|$|[<>`%])""",
    re.VERBOSE,
)
_OPTION_RE = re.compile(r"^--([A-Za-z0-9_]+)(?:=(.*))?$")
_SEQ_RE = re.compile(r"^(\d+):(\d+)\((\d+)\)$")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT_RE = re.compile(r"-?(?:0x[0-9a-fA-F]+|\d+)")
_MAX32 = 0xFFFFFFFF


def _strip_comments(text: str, path: str, target: str | None) -> list[tuple[int, str]]:
    """Return (line number, text) for each physical line with comments
    removed; ``/* */`` may span lines; strings, backquotes and ``%{ }%``
    blocks are kept whole (they may contain ``//``)."""
    out: list[str] = []
    i, n = 0, len(text)
    line = 1
    buf: list[str] = []
    lines: list[tuple[int, str]] = []

    def flush() -> None:
        lines.append((line, "".join(buf)))
        buf.clear()

    while i < n:
        c = text[i]
        if c == "\n":
            flush()
            line += 1
            i += 1
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            comment = text[i:j]
            m = re.match(r"//@(\w+)\s?(.*)$", comment)
            if m and m.group(1) in TARGETS:
                if target is None or m.group(1) == target:
                    buf.append(m.group(2))
            elif m:
                raise ScriptError(f"unknown target {m.group(1)!r} in //@ line", line, path)
            i = j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise ScriptError("unterminated /* comment", line, path)
            body = text[i : j + 2]
            for _ in range(body.count("\n")):
                flush()
                line += 1
            buf.append(" ")
            i = j + 2
            continue
        for opener, closer in (("%{", "}%"), ("`", "`"), ('"', '"')):
            if text.startswith(opener, i):
                j = text.find(closer, i + len(opener))
                if j < 0:
                    raise ScriptError(f"unterminated {opener}", line, path)
                body = text[i : j + len(closer)]
                buf.append(body.replace("\n", "\x00"))  # kept whole, lines counted below
                i = j + len(closer)
                break
        else:
            buf.append(c)
            i += 1
    flush()
    del out
    return lines


def _logical_lines(lines: list[tuple[int, str]], path: str) -> list[tuple[int, str]]:
    """Join a line with the next while its (), [] or {} are open."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for lineno, text in lines:
        if pending is not None:
            start, prev = pending
            text = prev + " " + text
            lineno = start
        depth = _depth(text)
        if depth > 0:
            pending = (lineno, text)
            continue
        pending = None
        if text.strip():
            out.append((lineno, text.strip()))
    if pending is not None:
        raise ScriptError("unclosed bracket", pending[0], path)
    return out


def _depth(text: str) -> int:
    depth = 0
    quoted = False
    for c in re.sub(r"<[^<>]*>", "", text):  # TCP option lists use < >
        if c in '`"':
            quoted = not quoted
        elif quoted:
            continue
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
    return depth


def parse_script(text: str, path: str = "", target: str | None = None) -> Script:
    """Parse a whole script.  ``target`` selects ``//@engine``/``//@kernel``
    lines (None: both are parsed, which checks their syntax)."""
    lines = _logical_lines(_strip_comments(text, path, target), path)
    options: list[tuple[str, str, int]] = []
    events: list[Event] = []
    init: Command | None = None
    cleanup: Command | None = None
    init_line = 0
    for lineno, raw in lines:
        line = raw.replace("\x00", "\n")
        m = _OPTION_RE.match(line)
        if m:
            if events:
                raise ScriptError("an --option must come before the first event", lineno, path)
            options.append((m.group(1), (m.group(2) or "").strip(), lineno))
            continue
        if line.startswith("`"):
            cmd = _backquoted(line, lineno, path)
            if not events and init is None:
                init, init_line = cmd, lineno
            elif events:
                if cleanup is not None:
                    raise ScriptError("a second cleanup command", lineno, path)
                cleanup = cmd
            else:
                raise ScriptError("a second init command", lineno, path)
            continue
        if cleanup is not None:
            raise ScriptError("an event after the cleanup command", lineno, path)
        events.append(_event(line, lineno, path))
    return Script(path, tuple(options), tuple(events), init, cleanup, init_line)


def _backquoted(text: str, lineno: int, path: str) -> Command:
    if not (len(text) >= 2 and text.startswith("`") and text.endswith("`")):
        raise ScriptError(f"cannot interpret {text!r}", lineno, path)
    return Command(text[1:-1])


def _event(text: str, lineno: int, path: str) -> Event:
    m = _TIME_RE.match(text)
    if not m:
        raise ScriptError(f"an event must start with a time: {_short(text)!r}", lineno, path)
    time = _time(m)
    rest = text[m.end() :].strip()
    action: Action
    if rest.startswith(("<", ">")) and (len(rest) == 1 or rest[1] in " \t"):
        action = _packet(rest[0], rest[1:].strip(), lineno, path)
    elif rest.startswith("`"):
        action = _backquoted(rest, lineno, path)
    elif rest.startswith("%{"):
        if not rest.endswith("}%"):
            raise ScriptError(f"cannot interpret {_short(rest)!r}", lineno, path)
        action = Code(rest[2:-2].strip())
    else:
        action = _syscall(rest, lineno, path)
    if time.block_end is not None and not isinstance(action, Syscall):
        raise ScriptError("only a socket call may have an end time (a...b)", lineno, path)
    return Event(lineno, time, action, text)


def _time(m: re.Match[str]) -> TimeSpec:
    if m.group("any"):
        return TimeSpec("any")
    kind = "rel" if m.group("plus") else "abs"
    until = float(m.group("until")) if m.group("until") else None
    bend = float(m.group("bend")) if m.group("bend") else None
    return TimeSpec(
        kind,
        float(m.group("start")),
        until,
        bool(m.group("uplus")),
        bend,
        bool(m.group("bplus")),
    )


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------
# TCP segments


def _packet(direction: str, text: str, lineno: int, path: str) -> Packet:
    def err(msg: str) -> ScriptError:
        return ScriptError(msg, lineno, path)

    opts_text: str | None = None
    lt = text.find("<")
    if lt >= 0:
        if not text.endswith(">"):
            raise err(f"TCP options must end the line with '>': {_short(text)!r}")
        opts_text = text[lt + 1 : -1].strip()
        text = text[:lt].strip()
    words = text.split()
    if len(words) < 2:
        raise err(f"a segment needs flags and start:end(len): {_short(text)!r}")
    flags_text = words[0]
    flags = 0
    if flags_text != "-":
        for c in flags_text:
            if c not in _FLAG_CHARS:
                raise err(f"unknown TCP flag {c!r} in {flags_text!r}")
            bit = _FLAG_CHARS[c]
            if flags & bit:
                raise err(f"TCP flag {c!r} given twice in {flags_text!r}")
            flags |= bit
    sm = _SEQ_RE.match(words[1])
    if not sm:
        raise err(f"expected start:end(len), got {words[1]!r}")
    start, end, length = (int(g) for g in sm.groups())
    if start > _MAX32 or end > _MAX32:
        raise err(f"sequence number out of range in {words[1]!r}")
    if (end - start) & _MAX32 != length:
        raise err(f"{words[1]!r}: end - start is {(end - start) & _MAX32}, not {length}")
    fields: dict[str, int] = {}
    rest = words[2:]
    while rest:
        key = rest[0]
        if key not in ("ack", "win", "urg"):
            raise err(f"unknown segment field {key!r}")
        if key in fields:
            raise err(f"{key!r} given twice")
        if len(rest) < 2 or not rest[1].isdigit():
            raise err(f"{key!r} needs a number")
        value = int(rest[1])
        if value > (_MAX32 if key == "ack" else 0xFFFF):
            raise err(f"{key} {value} out of range")
        fields[key] = value
        rest = rest[2:]
    options: tuple[Option, ...] | None = ()
    if opts_text is not None:
        options = None if opts_text == "..." else _tcp_options(opts_text, err)
    return Packet(
        direction,
        flags,
        flags_text,
        start,
        end,
        fields.get("ack"),
        fields.get("win"),
        fields.get("urg"),
        options,
    )


def _tcp_options(text: str, err: Callable[[str], ScriptError]) -> tuple[Option, ...]:
    out: list[Option] = []
    for item in (p.strip() for p in text.split(",")):
        words = item.split()
        if not words:
            raise err("empty TCP option")
        kind = words[0]
        if kind in ("nop", "eol", "sackOK") and len(words) == 1:
            out.append((kind,))
        elif kind in ("mss", "wscale") and len(words) == 2 and words[1].isdigit():
            value = int(words[1])
            if value > (0xFFFF if kind == "mss" else 255):
                raise err(f"{kind} {value} out of range")
            out.append((kind, value))
        elif kind == "sack" and len(words) >= 2:
            blocks = []
            for b in words[1:]:
                m = re.fullmatch(r"(\d+):(\d+)", b)
                if not m or int(m.group(1)) > _MAX32 or int(m.group(2)) > _MAX32:
                    raise err(f"bad SACK block {b!r}")
                blocks.append((int(m.group(1)), int(m.group(2))))
            if len(blocks) > 4:
                raise err("more than 4 SACK blocks")
            out.append(("sack", tuple(blocks)))
        elif (
            kind == "TS"
            and len(words) == 5
            and words[1] == "val"
            and words[3] == "ecr"
            and words[2].isdigit()
            and words[4].isdigit()
        ):
            val, ecr = int(words[2]), int(words[4])
            if val > _MAX32 or ecr > _MAX32:
                raise err("TS value out of range")
            out.append(("TS", val, ecr))
        else:
            raise err(f"unknown or malformed TCP option {item!r}")
    return tuple(out)


# ----------------------------------------------------------------------
# Socket calls

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<ell>\.\.\.)
      | (?P<str>"(?:\\.|[^"\\])*")
      | (?P<int>-?(?:0x[0-9a-fA-F]+|\d+))(?![A-Za-z_.])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[()\[\]{},=|])
    )""",
    re.VERBOSE,
)


class _Tokens:
    def __init__(self, text: str, lineno: int, path: str) -> None:
        self.toks: list[tuple[str, str]] = []
        self.lineno = lineno
        self.path = path
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                raise self.error(f"cannot interpret {_short(text[pos:].strip())!r}")
            kind = m.lastgroup
            assert kind is not None
            self.toks.append((kind, m.group(kind)))
            pos = m.end()
            if text[pos:].strip() == "":
                break
        self.i = 0

    def error(self, msg: str) -> ScriptError:
        return ScriptError(msg, self.lineno, self.path)

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of line" + (f", expected {value!r}" if value else ""))
        if value is not None and tok[1] != value:
            raise self.error(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok


def _syscall(text: str, lineno: int, path: str) -> Syscall:
    m = _WORD_RE.match(text)
    if not m or not text[m.end() :].lstrip().startswith("("):
        raise ScriptError(f"cannot interpret {_short(text)!r}", lineno, path)
    name = m.group(0)
    # A trailing "(Connection refused)" after the errno is a comment.
    text = re.sub(r"\)\s*=\s*(-?\w+)\s+(E[A-Z0-9]+)\s*\([^()]*\)\s*$", r") = \1 \2", text)
    toks = _Tokens(text[m.end() :], lineno, path)
    toks.take("(")
    args: list[Expr] = []
    if toks.peek() != ("punct", ")"):
        while True:
            args.append(_expr(toks))
            if toks.peek() == ("punct", ","):
                toks.take(",")
                continue
            break
    toks.take(")")
    toks.take("=")
    ret = _expr(toks)
    errno: str | None = None
    tok = toks.peek()
    if tok is not None:
        if tok[0] == "word" and re.fullmatch(r"E[A-Z0-9]+", tok[1]):
            errno = tok[1]
            toks.take()
        else:
            raise toks.error(f"unexpected {tok[1]!r} after the return value")
    if toks.peek() is not None:
        raise toks.error(f"unexpected {toks.peek()[1]!r} at the end")  # type: ignore[index]
    return Syscall(name, tuple(args), ret, errno)


def _expr(toks: _Tokens) -> Expr:
    first = _atom(toks)
    if toks.peek() != ("punct", "|"):
        return first
    items = [first]
    while toks.peek() == ("punct", "|"):
        toks.take("|")
        items.append(_atom(toks))
    return BitOr(tuple(items))


def _atom(toks: _Tokens) -> Expr:
    kind, value = toks.take()
    if kind == "ell":
        return Ellipsis_()
    if kind == "int":
        return int(value, 16) if value.lower().startswith(("0x", "-0x")) else int(value)
    if kind == "str":
        return value[1:-1].encode().decode("unicode_escape")
    if kind == "word":
        if value == "NULL":
            return None
        return Symbol(value)
    if value == "[":
        items: list[Expr] = []
        if toks.peek() != ("punct", "]"):
            while True:
                items.append(_expr(toks))
                if toks.peek() == ("punct", ","):
                    toks.take(",")
                    continue
                break
        toks.take("]")
        return Array(tuple(items))
    if value == "{":
        fields: list[tuple[str, Expr]] = []
        if toks.peek() != ("punct", "}"):
            while True:
                k, name = toks.take()
                if k != "word":
                    raise toks.error(f"expected a field name, got {name!r}")
                toks.take("=")
                fields.append((name, _expr(toks)))
                if toks.peek() == ("punct", ","):
                    toks.take(",")
                    continue
                break
        toks.take("}")
        return Struct(tuple(fields))
    raise toks.error(f"unexpected {value!r}")


def parse_file(path: str, target: str | None = None) -> Script:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read: {exc}", 0, path) from exc
    return parse_script(text, path, target)
