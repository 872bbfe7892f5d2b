"""The ``--json`` writer: JSON Lines straight from the classification
columns, without building a dict per connection or calling ``json``, and
without running Python code per connection or per value: each field is
formatted for a block of connections at once with numpy (integers in groups
of four digits looked up in a table, times likewise, names from tables of
their JSON text), the fields are laid side by side in a matrix of words
padded with NUL bytes, and the padding is dropped (see ``_Text``).  The
nested objects that only some connections have (each side's FIN and the
segment that acknowledged it, anomalies) are formatted for those connections
only.  The output parses to exactly what
:meth:`~finwait.analyze.classify.Analysis.records` gives (a test checks that
on every capture the tests make): floats are written as ``repr`` writes
them, as ``json`` does, and every string comes from a fixed table, an
address formatted by :mod:`ipaddress`, or Zeek's history letters, none of
which need escaping; only the file name and the anomaly lists go through
``json``.  Schema: docs/analyze.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from ..wire.segment import FIN
from .classify import _RSTOS0, CLOSES, HANDSHAKES, SIDES, ZEEK_STATES, Analysis

__all__ = ["iter_jsonl", "write_jsonl"]

# Connections a block: the block's text matrices stay a few megabytes (peak
# RSS on the mixed capture: 132 MB at 2,048, 161 MB at 8,192).  Not a power
# of two: the stack's transposition (_Text._lines) reads a column at a time,
# and at a row stride of 2,048 words (8 kB) those reads fall into the same
# few cache sets, which made it twice as slow as at 2,000 or 3,000; 3,000
# also spreads each block's fixed cost over more lines (the JSON text of the
# mixed capture 117 -> 93 ms in process, against 2,048).
BLOCK = 3000
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]


def write_jsonl(res: Analysis, out: TextIO, file: str | None = None) -> int:
    """Write one line per connection of ``res`` to ``out``; with ``file``, each
    object also names it (several captures at once).  Returns the count."""
    for text in iter_jsonl(res, file):
        out.write(text)
    return res.n


def iter_jsonl(res: Analysis, file: str | None = None) -> Iterator[str]:
    """The JSON Lines text of ``res``, a block of connections at a time."""
    tail = "" if file is None else ',"file":' + _json(file)
    for lo in range(0, res.n, BLOCK):
        yield _text(res, lo, min(res.n, lo + BLOCK), tail).decode("ascii")


# -- text a column at a time -------------------------------------------------
#
# Text is held in 4-byte words (uint32) padded with NUL bytes, which JSON
# text never holds (``json`` escapes it).  A *piece* is the text of one field
# for ``n`` lines: a ``(words, n)`` matrix, line j in column j.  Pieces are
# stacked one under the other, the stack is transposed once (each line's
# words now next to each other) and the NUL bytes dropped.


LineNumbers = list[int]  # (named here: in _Text, ``int`` is its method)


class _Text:
    """The text of ``n`` lines built a field at a time, no Python code run
    per line or per value."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[U32] = []
        self.literal = ""

    def lit(self, text: str) -> _Text:
        """Text every line has."""
        self.literal += text
        return self

    def rows(self, piece: U32) -> _Text:
        """A piece: each line's own text."""
        self._flush()
        self.parts.append(piece)
        return self

    def int(self, values: npt.NDArray[Any]) -> _Text:
        """Integers as ``%d`` writes them."""
        return self.rows(_digits(values))

    def _flush(self) -> None:
        if self.literal:
            self.parts.append(_literal(self.literal))
            self.literal = ""

    def stack(self) -> U32:
        """The pieces one under the other: a ``(words, n)`` piece."""
        self._flush()
        out = np.empty((sum(p.shape[0] for p in self.parts), self.n), dtype=np.uint32)
        at = 0
        for p in self.parts:
            out[at : at + p.shape[0]] = p  # (a literal: a column, broadcast)
            at += p.shape[0]
        self.parts = []  # (memory)
        return out

    def join(self) -> bytes:
        """The lines' text (ASCII)."""
        return self._lines().tobytes().translate(None, b"\0")

    def join_runs(self, starts: LineNumbers, ends: LineNumbers) -> list[bytes]:
        """The text of lines ``a`` .. ``b`` - 1 for each ``a``, ``b`` of
        ``starts``, ``ends``: each run's rows of words on their own (no
        search for the line ends in the text)."""
        lines = self._lines()
        return [
            lines[a:b].tobytes().translate(None, b"\0") for a, b in zip(starts, ends, strict=True)
        ]

    def _lines(self) -> U32:
        """The stack transposed: row j holds line j's words.  A view:
        ``tobytes`` then copies the words in line order straight into the
        bytes (a contiguous copy first, then its bytes, moved the text
        twice: 14 against 9 ms for the mixed capture)."""
        out: U32 = self.stack().T
        return out


@functools.cache  # (the same few dozen texts in every block; read-only arrays)
def _literal(text: str) -> U32:
    """``text`` as a column of words, NUL bytes in front to fill the first."""
    b = text.encode()
    return np.frombuffer(b"\0" * (-len(b) % 4) + b, dtype=np.uint32)[:, None]


def _table(texts: list[bytes]) -> U32:
    """Texts as a table: row k holds text k in words (NUL-padded at the end).
    A piece is ``table[index].T``."""
    a = np.array(texts)
    size = -(-a.dtype.itemsize // 4) * 4
    return np.ascontiguousarray(a.astype(f"S{size}")).view(np.uint32).reshape(a.size, size // 4)


def _texts(texts: list[bytes]) -> U32:
    """A piece of one text per line."""
    return _table(texts).T


def _digit_bytes(k: npt.NDArray[np.int64], width: int, lead: bool, trail: bool) -> U8:
    """``k`` in ``width`` digits, a row of bytes each: leading zeros written
    unless ``lead`` is false (then NUL bytes, but the last digit); with
    ``trail``, zeros after the last non-zero digit are NUL bytes.  (numpy,
    not a Python loop: the tables below are made at import, which start-up
    time counts.)"""
    p = 10 ** np.arange(width - 1, -1, -1)
    out = ((k[:, None] // p) % 10 + 48).astype(np.uint8)
    if not lead:
        out[(k[:, None] < p) & (p > 1)] = 0
    if trail:
        out[(k[:, None] % (p * 10) == 0) & (p < 10 ** (width - 1))] = 0
    return out


def _word_rows(b: U8) -> U32:
    """Rows of bytes as rows of words (NUL-padded at the end)."""
    pad = np.zeros((b.shape[0], -b.shape[1] % 4), dtype=np.uint8)
    out: U32 = np.ascontiguousarray(np.concatenate([b, pad], axis=1)).view(np.uint32)
    return out


# A number in groups of 4 digits, each group a word: k (0 .. 9999) without
# leading zeros (NUL bytes in front) and 0 as no digits at all (a leading
# group of a small number); 10000 + k with them ("0042"); 20000 + k
# without, 0 as "0" (the last group of a number below 10000).
_K = np.arange(10000, dtype=np.int64)
_GROUP = np.concatenate([
    np.r_[0, _word_rows(_digit_bytes(_K[1:], 4, False, False)).ravel()].astype(np.uint32),
    _word_rows(_digit_bytes(_K, 4, True, False)).ravel(),
    _word_rows(_digit_bytes(_K, 4, False, False)).ravel(),
])  # fmt: skip
_MINUS = _table([b"\0\0\0-", b""]).ravel()  # index 0: a negative number's sign


def _divmod(a: I64, d: int) -> tuple[I64, I64]:
    """``np.divmod(a, d)``: numpy's divmod divides one element at a time,
    its floor division by a scalar is vectorised (a block's numbers: half
    the time)."""
    q = a // d
    r: I64 = a - q * d
    return q, r


def _digits(values: npt.NDArray[Any]) -> U32:
    """Decimal text of integers, as ``%d`` writes them: groups of 4 digits
    looked up in a table."""
    v = np.asarray(values).astype(np.int64, copy=False)
    if not v.size:
        return np.zeros((1, 0), dtype=np.uint32)
    low = int(v.min())
    if low == -(2**63):  # (it has no positive: one by one)
        return _texts([b"%d" % x for x in v.tolist()])
    a = np.abs(v) if low < 0 else v
    top = int(a.max())
    groups = [a]
    while top >= 10000:
        groups[0], rest = _divmod(groups[0], 10000)
        groups.insert(1, rest)
        top //= 10000
    out = np.empty((len(groups) + 1, v.size), dtype=np.uint32)
    last = len(groups) - 1
    for j, g in enumerate(groups):
        alone = 0 if j < last else 20000  # (the last group writes 0 as "0")
        # Digits were written before group j when the number is at least
        # 10000 ** (the groups from j on): then "%04d".
        lead = np.where(a >= 10000 ** (last - j + 1), 10000, alone) if j else alone
        out[j + 1] = _GROUP[g + lead]
    if low < 0:
        out[0] = _MINUS[(v >= 0).astype(np.intp)]
        return out
    return out[1:]


def _quoted(names: tuple[str, ...]) -> U32:
    """Row 0 is ``null``, k + 1 is ``"names[k]"`` (look up with ``index + 1``)."""
    return _table([b"null", *(f'"{n}"'.encode() for n in names)])


_BOOL = _table([b"false", b"true"])
_HANDSHAKE = _quoted(HANDSHAKES)
_CLOSE = _quoted(CLOSES)
_SIDE = _quoted(SIDES)
_STATE = _table([s.encode() for s in ZEEK_STATES])
_CARRIED = _table([b"pure_ack", b"data", b"fin"])
_NULL = _literal("null")


def _look(table: U32, index: npt.NDArray[Any]) -> U32:
    """The piece of ``table``'s row ``index[j]`` for line j: a word at a
    time (one plain gather each, straight into the piece's rows; gathering
    whole rows copies each row by a call of its own)."""
    idx = index.astype(np.intp, copy=False)
    out = np.empty((table.shape[1], idx.size), dtype=np.uint32)
    for w, column in enumerate(np.ascontiguousarray(table.T)):
        np.take(column, idx, out=out[w])
    return out


def _padded(piece: U32, k: int) -> U32:
    """``piece`` with NUL words added below it up to ``k`` rows."""
    if piece.shape[0] == k:
        return piece
    out = np.zeros((k, piece.shape[1]), dtype=np.uint32)
    out[: piece.shape[0]] = piece
    return out


def _pick(cond: npt.NDArray[np.bool_], a: U32, b: U32) -> U32:
    """Line by line ``a`` where ``cond``, else ``b``."""
    k = max(a.shape[0], b.shape[0])
    a, b = _padded(a, k), _padded(b, k)
    out: U32 = np.where(cond, a, b)
    return out


def _place(n: int, fill: U32, parts: list[tuple[I64, U32]]) -> U32:
    """A piece of ``n`` lines: ``fill`` (a literal) but for lines ``rows``
    of each ``(rows, piece)`` in ``parts``."""
    k = max(fill.shape[0], *(p.shape[0] for _, p in parts))
    # Written a line at a time (a line's words side by side: each part's
    # lines are whole rows, which numpy copies a row at a time, where taking
    # a piece's columns moves one word at a time), then transposed (a view).
    lines = np.empty((n, k), dtype=np.uint32)
    lines[:] = _padded(fill, k).T
    for rows, p in parts:
        lines[rows] = _padded(p, k).T
    out: U32 = lines.T
    return out


def _rows(piece: U32) -> list[str]:
    """The lines of a piece, as strings."""
    b = piece.T.tobytes()
    w = piece.shape[0] * 4
    return [b[i : i + w].replace(b"\0", b"").decode("ascii") for i in range(0, len(b), w)]


# -- the lines -----------------------------------------------------------------


def _text(res: Analysis, lo: int, hi: int, tail: str) -> bytes:
    """The JSON Lines text (ASCII) of connections ``lo`` .. ``hi`` - 1."""
    if hi <= lo:
        return b""
    return _block_lines(res, lo, hi, tail).join()


def _block_lines(res: Analysis, lo: int, hi: int, tail: str) -> _Text:
    """The lines of connections ``lo`` .. ``hi`` - 1 (``hi > lo``), to join."""
    c = res.cols
    sl = slice(lo, hi)
    t = _Text(hi - lo)

    def side_pair(a: str, b: str) -> None:
        t.lit('{"client_to_server":').int(c[a][sl]).lit(',"server_to_client":').int(c[b][sl])
        t.lit("}")

    # Endpoints: the 4-tuple is stored low endpoint first; ``client`` says which.
    keys = np.take(res._flow_key, c["flow"][sl], axis=0)
    cl = c["client"][sl].astype(bool)
    lo_addr = _addresses(res, keys[:, 0:4])
    hi_addr = _addresses(res, keys[:, 5:9])
    start, end = c["start"][sl], c["end"][sl]
    ids = np.arange(lo + 1, hi + 1) if res.ids is None else res.ids[sl]
    t.lit('{"id":').int(ids)
    t.lit(',"client":{"addr":"').rows(_pick(cl, hi_addr, lo_addr))
    t.lit('","port":').int(np.where(cl, keys[:, 9], keys[:, 4]))
    t.lit('},"server":{"addr":"').rows(_pick(cl, lo_addr, hi_addr))
    t.lit('","port":').int(np.where(cl, keys[:, 4], keys[:, 9]))
    t.lit('},"start":').rows(_us(start)).lit(',"end":').rows(_us(end))
    t.lit(',"duration":').rows(_us(end - start))
    t.lit(',"first_frame":').int(c["first_frame"][sl])
    t.lit(',"last_frame":').int(c["last_frame"][sl])
    t.lit(',"partial":').rows(_look(_BOOL, c["partial"][sl]))
    t.lit(',"flipped":').rows(_look(_BOOL, c["flipped"][sl]))
    t.lit(',"packets":')
    side_pair("pkts_c", "pkts_s")
    t.lit(',"bytes":')
    side_pair("bytes_c", "bytes_s")
    t.lit(',"retransmissions":')
    side_pair("retr_c", "retr_s")
    t.lit(',"handshake":').rows(_look(_HANDSHAKE, c["handshake"][sl] + 1))
    t.lit(',"close":').rows(_look(_CLOSE, c["close"][sl] + 1))
    t.lit(',"first_fin":').rows(_look(_SIDE, c["first_fin"][sl] + 1))
    t.lit(',"reset_by":').rows(_look(_SIDE, c["reset_by"][sl] + 1))
    t.lit(',"reset_after_fin":').rows(_look(_BOOL, c["reset_after_fin"][sl]))
    t.lit(',"half_close_bytes":').int(c["half_close_bytes"][sl])
    t.lit(',"fins":{"client":').rows(_fins(c, sl, "c"))
    t.lit(',"server":').rows(_fins(c, sl, "s"))
    t.lit('},"anomalies":').rows(_anomaly_text(c, lo, hi))
    t.lit(',"conn_state":"').rows(_states(c, lo, hi))
    t.lit('","history":"').rows(_history_text(c, lo, hi))
    t.lit('","tunnel":').rows(_tunnels(res, sl))
    if res.files is None:
        t.lit(tail)
    else:
        t.rows(_texts([x.encode() for x in _tails(res, lo, hi, tail)]))
    t.lit("}\n")
    return t


def _json(value: Any) -> str:
    """``value`` as compact JSON (``json`` imported on use: start-up time)."""
    import json

    return json.dumps(value, separators=(",", ":"))


def _tails(res: Analysis, lo: int, hi: int, tail: str) -> list[str]:
    """What ends each line: a capture set's ``files`` list, then ``file``."""
    if res.files is None:
        return [tail] * (hi - lo)
    names = [_json(f) for f in res.files]
    return [
        ',"files":[' + ",".join(names[k] for k in res.conn_files[i]) + "]" + tail
        for i in range(lo, hi)
    ]


def _tunnels(res: Analysis, sl: slice) -> U32:
    """Each connection's ``tunnel`` list as JSON text (one text per stack)."""
    text = [_json(t).encode() if t else b"[]" for t in res.tunnel_objects()]
    return _look(_table(text), res.cols["tunnel"][sl])


def _anomaly_text(c: dict[str, Any], lo: int, hi: int) -> U32:
    """Each connection's ``anomalies`` list as JSON text (``[]`` for most)."""
    found = [(i - lo, v) for i, v in c["an_by_conn"].items() if lo <= i < hi]
    empty = _literal("[]")
    if not found:
        return np.broadcast_to(empty, (1, hi - lo))
    rows = np.array([j for j, _ in found], dtype=np.int64)
    text = _texts([_json(v).encode() for _, v in found])
    return _place(hi - lo, empty, [(rows, text)])


def _history_text(c: dict[str, Any], lo: int, hi: int) -> U32:
    """Each connection's Zeek history letters (a slice of ``hist_str``)."""
    at = c["hist_at"][lo : hi + 1]
    first, size = at[:-1] - at[0], np.diff(at)
    w = -(-max(int(size.max()), 1) // 4) * 4
    buf = np.frombuffer(c["hist_str"][int(at[0]) : int(at[-1])].encode("ascii") + b"\0",
                        dtype=np.uint8)  # fmt: skip
    k = np.arange(w)
    idx = np.where(k < size[:, None], first[:, None] + k, buf.size - 1)
    out: U32 = buf[idx].view(np.uint32).T
    return out


def _states(c: dict[str, Any], lo: int, hi: int) -> U32:
    """Each connection's Zeek ``conn_state``."""
    zeek = c["zeek"][lo:hi]
    state = np.take(_STATE, np.maximum(zeek, 0), axis=0)
    hist, at = c["hist_str"], c["hist_at"]
    for j in np.flatnonzero(zeek < 0).tolist():
        # RSTOS0 needs the history: a SYN, nothing from the responder, a RST.
        h = hist[int(at[lo + j]) : int(at[lo + j + 1])]
        state[j] = _STATE[ZEEK_STATES.index("RSTOS0" if _RSTOS0.match(h) else "OTH")]
    out: U32 = state.T
    return out


def _addresses(res: Analysis, words: npt.NDArray[np.int64]) -> U32:
    """Text of each row of address words, formatted once per distinct address."""
    w = words.astype(np.uint64)
    # One 64-bit key per address for a 1-D unique; checked, since two
    # addresses could share a key (then fall back to the exact 2-D unique).
    with np.errstate(over="ignore"):
        key = ((w[:, 0] << 32 | w[:, 1]) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            w[:, 2] << 32 | w[:, 3]
        )
    # A sort instead of np.unique (which imports numpy.ma: start-up time);
    # not a stable one (3 times faster): which row of a group comes first
    # does not matter, as the check below makes sure its words are all the
    # group's.
    o = np.argsort(key)
    sk = key[o]
    brk = np.r_[True, sk[1:] != sk[:-1]]
    first = o[brk]
    inv = np.empty(key.size, dtype=np.int64)
    inv[o] = np.cumsum(brk) - 1
    uniq = np.take(words, first, axis=0)
    if not np.array_equal(np.take(uniq, inv, axis=0), words):
        uniq, inv = np.unique(words, axis=0, return_inverse=True)
    text = _table([res._addr(tuple(w)).encode() for w in uniq.tolist()])
    return _look(text, inv.ravel())


# Fractions of a second as text, three digits at a time, a word each:
# ".xyz" when more digits follow, else with trailing zeros dropped (".5",
# ".0"; at 1000 + k), then the last three digits with trailing zeros dropped
# (nothing for none).
_DOT = np.full((1000, 1), ord("."), dtype=np.uint8)
_HEAD = np.concatenate([
    _word_rows(np.concatenate([_DOT, _digit_bytes(_K[:1000], 3, True, False)], axis=1)).ravel(),
    _word_rows(np.concatenate([_DOT, _digit_bytes(_K[:1000], 3, True, True)], axis=1)).ravel(),
])  # fmt: skip
_END3 = _word_rows(_digit_bytes(_K[:1000], 3, True, True)).ravel()
_END3[0] = 0  # (".xyz" then nothing)


def _us(times: npt.NDArray[Any]) -> U32:
    """Seconds rounded to the microsecond as JSON text (0.14, not
    0.13999999999999999): the text of ``repr(round(t, 6))`` (Python's
    round, as Analysis.records uses; numpy's differs in rare halves),
    formatted column-wise.

    For 1e-4 <= t < 2**33 that text is the six-decimal one with trailing
    zeros dropped (doubles there are closer than a microsecond, so no
    shorter decimal names the same double), and ``rint(t * 1e6)`` is the
    correctly rounded microsecond count unless ``t * 1e6`` is within its
    rounding error of a half; those, zero's sign, and the values outside
    (``repr`` switches to exponents below 1e-4) are formatted one by one."""
    t = np.asarray(times, dtype=np.float64)
    p = t * 1e6
    q = np.rint(p)
    with np.errstate(invalid="ignore"):  # (inf, nan: formatted one by one)
        ok = (t >= 1e-4) & (t < 2.0**33) & (0.5 - np.abs(p - q) > np.spacing(p))
    ok |= (t == 0) & ~np.signbit(t)
    us = np.where(ok, q, 0).astype(np.int64)
    whole, frac = _divmod(us, 1_000_000)
    hi, lo = _divmod(frac, 1000)
    secs = _digits(whole)
    k = secs.shape[0]
    out = np.empty((k + 2, t.size), dtype=np.uint32)
    out[:k] = secs
    out[k] = _HEAD[hi + 1000 * (lo == 0)]
    out[k + 1] = _END3[lo]
    bad = np.flatnonzero(~ok)
    if bad.size:  # (a few lines: their own text replaces what was written)
        text = _texts([repr(round(x, 6)).encode() for x in t[bad].tolist()])
        k = max(out.shape[0], text.shape[0])
        out = _padded(out, k)
        out[:, bad] = _padded(text, k)
    return out


def _fins(c: dict[str, Any], sl: slice, side: str) -> U32:
    """Each connection's ``fins.<side>`` object text, or ``null``: one
    template for a FIN and the segment that acknowledged it (the common
    case), another for a FIN never acknowledged."""
    has = c["fin_has_" + side][sl].astype(bool)
    q = np.flatnonzero(has)
    if not q.size:
        return np.broadcast_to(_NULL, (1, has.size))
    acked = c["fack_has_" + side][sl][q].astype(bool)

    def take(name: str, rows: I64) -> npt.NDArray[Any]:
        v: npt.NDArray[Any] = c[name + "_" + side][sl][rows]
        return v

    def fin(rows: I64) -> _Text:
        t = _Text(rows.size)
        t.lit('{"frame":').int(take("fin_frame", rows))
        t.lit(',"time":').rows(_us(take("fin_ts", rows)))
        t.lit(',"seq":').int(take("fin_seq", rows)).lit(',"ack":').int(take("fin_ack", rows))
        t.lit(',"len":').int(take("fin_plen", rows))
        t.lit(',"retransmissions":').int(take("fin_retr", rows)).lit(',"acked_by":')
        return t

    parts: list[tuple[I64, U32]] = []
    qa, qn = q[acked], q[~acked]
    if qa.size:
        flags = take("fack_flags", qa)
        plen = take("fack_plen", qa)
        # The acknowledging segment was itself a FIN, carried data, or neither.
        carried = np.where(flags & FIN, 2, np.where(plen > 0, 1, 0))
        t = fin(qa)
        t.lit('{"frame":').int(take("fack_frame", qa))
        t.lit(',"time":').rows(_us(take("fack_ts", qa)))
        t.lit(',"seq":').int(take("fack_seq", qa)).lit(',"ack":').int(take("fack_ack", qa))
        t.lit(',"carried_on":"').rows(_look(_CARRIED, carried)).lit('"}}')
        parts.append((qa, t.stack()))
    if qn.size:
        parts.append((qn, fin(qn).lit("null}").stack()))
    return _place(has.size, _NULL, parts)


class ByteText:
    """A text stream written as bytes: to ``out.buffer`` when ``out`` has
    one (no decoding and encoding again of every line), else decoded as
    ``out`` would encode it; ``encoding`` and ``errors`` are ``out``'s."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.raw = getattr(out, "buffer", None)
        self.encoding = getattr(out, "encoding", None) or "utf-8"
        self.errors = getattr(out, "errors", None) or "strict"

    def write(self, text: bytes) -> None:
        if self.raw is None:
            self.out.write(text.decode(self.encoding, self.errors))
            return
        self.out.flush()  # (whatever was written as text first stays first)
        self.raw.write(text)


class OrderedJsonl(ByteText):
    """JSON Lines of a streamed analysis (pieces of connections in any
    order, each piece's ids ascending) written in id order; with ``lines``,
    whatever lines that gives for rows ``lo`` .. ``hi`` - 1 of a piece
    (one per connection: the CSV writer's).  Lines that wait for an earlier
    connection are held as *runs*, the text of consecutive ids (a piece's
    ids come in runs of tens: the connections that ended together), in
    memory up to ``budget`` bytes, then spilled to a temporary file (sorted
    by id, with numpy arrays of each run's first and last id and offset)
    and read back in order, consecutive runs of a file segment in one
    read.  The text is kept and written as bytes (to ``out.buffer`` when
    ``out`` has one: no decoding and encoding again of every line)."""

    def __init__(
        self,
        out: TextIO,
        file: str | None = None,
        budget: int = 8 << 20,
        lines: Callable[[Analysis, int, int], list[str]] | None = None,
        as_done: bool = False,
    ) -> None:
        super().__init__(out)  # (the CSV lines' text encoded as ``out`` would)
        self.as_done = as_done  # (``--follow``: each piece written as it comes, and flushed)
        self.budget = budget
        self.tail = "" if file is None else ',"file":' + _json(file)
        self.lines = lines
        self.next = 1
        self.held: dict[int, tuple[int, bytes]] = {}  # first id -> (last id, text)
        self.held_bytes = 0
        self.spill: Any = None
        self.spilled = 0  # bytes in the spill file
        # Spilled runs, a segment per spill: first ids, last ids, byte
        # offsets (the end appended); the cursor; a heap of (next id, segment).
        self.segs: list[tuple[I64, I64, I64]] = []
        self.cursor: list[int] = []
        self.heads: list[tuple[int, int]] = []

    def add(self, res: Analysis) -> None:
        if self.as_done:
            for lo in range(0, res.n, BLOCK):
                self.write(self._block(res, lo, min(res.n, lo + BLOCK)))
            (self.out if self.raw is None else self.raw).flush()
            return
        all_ids = np.arange(1, res.n + 1) if res.ids is None else res.ids
        for lo in range(0, res.n, BLOCK):
            hi = min(res.n, lo + BLOCK)
            ids = all_ids[lo:hi]
            first, last = int(ids[0]), int(ids[-1])
            if first == self.next and not (self.held or self.heads) and last - first == hi - lo - 1:
                self.write(self._block(res, lo, hi))  # in order, nothing waiting
                self.next = last + 1
                continue
            # Runs of consecutive ids: rows a .. b - 1 of the block.
            cut = np.flatnonzero(ids[1:] != ids[:-1] + 1) + 1
            starts, ends = np.r_[0, cut].tolist(), np.r_[cut, ids.size].tolist()
            if self.lines is None:
                runs = _block_lines(res, lo, hi, self.tail).join_runs(starts, ends)
            else:
                lines = self.lines(res, lo, hi)
                runs = [self._encode(lines[a:b]) for a, b in zip(starts, ends, strict=True)]
            heads, tails = ids[starts].tolist(), ids[np.array(ends) - 1].tolist()
            for i, j, run in zip(heads, tails, runs, strict=True):
                self.held[i] = (j, run)
                self.held_bytes += len(run)
            self._drain()
            if self.held_bytes > self.budget:
                self._spill()

    def _block(self, res: Analysis, lo: int, hi: int) -> bytes:
        if self.lines is None:
            return _text(res, lo, hi, self.tail)
        return self._encode(self.lines(res, lo, hi))

    def _encode(self, lines: list[str]) -> bytes:
        return "".join(lines).encode(self.encoding, self.errors)

    def close(self) -> None:
        self._drain()
        if self.spill is not None:
            self.spill.close()

    def _spill(self) -> None:
        import heapq
        import tempfile

        if self.spill is None:
            # Unbuffered: runs go out by writev and come back by pread, no
            # joined copy of them on the way (hundreds of MB on a large
            # capture whose first connections stay open to the end).
            self.spill = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 - closed by close()
        fd = self.spill.fileno()
        firsts = sorted(self.held)
        data = [self.held[i][1] for i in firsts]
        offs = np.cumsum([self.spilled, *map(len, data)])
        write_at(fd, data, self.spilled)
        self.spilled = int(offs[-1])
        lasts = np.array([self.held[i][0] for i in firsts], dtype=np.int64)
        self.segs.append((np.array(firsts, dtype=np.int64), lasts, offs))
        self.cursor.append(0)
        heapq.heappush(self.heads, (firsts[0], len(self.segs) - 1))
        self.held.clear()
        self.held_bytes = 0

    def _drain(self) -> None:
        out: list[bytes | bytearray] = []
        size = 0
        while True:
            text: bytes | bytearray
            run = self.held.pop(self.next, None)
            if run is not None:
                text = run[1]
                self.held_bytes -= len(text)
                self.next = run[0] + 1
            elif self.heads and self.heads[0][0] == self.next:
                text = self._read_runs()
            else:
                break
            out.append(text)
            size += len(text)
            if size > 1 << 20:  # written as it goes, a megabyte at a time
                self.write(b"".join(out))
                out.clear()
                size = 0
        if out:
            self.write(b"".join(out))

    def _read_runs(self) -> bytearray:
        """The spilled runs from ``next`` on that follow each other without
        a gap in one segment (next to each other in the file), up to 256,
        in one read."""
        import heapq

        _, k = heapq.heappop(self.heads)
        firsts, lasts, offs = self.segs[k]
        j = self.cursor[k]
        f, g = firsts[j : j + 256], lasts[j : j + 256]
        r = 1 + int(np.argmin(np.r_[f[1:] == g[:-1] + 1, False]))
        text = bytearray(int(offs[j + r] - offs[j]))
        read_at(self.spill.fileno(), text, int(offs[j]))
        self.next = int(lasts[j + r - 1]) + 1
        self.cursor[k] = j + r
        if j + r < firsts.size:
            heapq.heappush(self.heads, (int(firsts[j + r]), k))
        return text


def write_at(fd: int, data: list[Any], at: int) -> None:
    """The buffers ``data`` (bytes, uint8 arrays) into file ``fd``, one after
    the other from offset ``at``: IOV_MAX buffers a call, short writes
    resumed.  The spill files' writer, here and in analyze/weave.py."""
    import os

    views = [memoryview(d).cast("B") for d in data]
    step = getattr(os, "IOV_MAX", 1024)  # (os.pwritev: POSIX)
    k = 0
    while k < len(views):
        done = os.pwritev(fd, views[k : k + step], at)
        at += done
        while k < len(views) and done >= views[k].nbytes:
            done -= views[k].nbytes
            k += 1
        if done:
            views[k] = views[k][done:]


def read_at(fd: int, into: Any, at: int) -> None:
    """Fill ``into`` (a bytearray, a uint8 array) from file ``fd`` at offset
    ``at``; the spill files' reader, here and in analyze/weave.py."""
    import os

    view = memoryview(into).cast("B")
    while view.nbytes:
        got = os.preadv(fd, [view], at)
        if not got:
            raise EOFError("the spill file is short")
        view, at = view[got:], at + got
