"""The ``--json`` writer: JSON Lines straight from the classification
columns, without building a dict per connection or calling ``json``.

Each line is one ``%`` template filled from columns converted to Python
values a block at a time; the nested objects that only some connections have
(each side's FIN and the segment that acknowledged it, anomalies) are
formatted for those connections only.  The output parses to exactly what
:meth:`~finwait.analyze.classify.Analysis.records` gives (a test checks that
on every capture the tests make): floats are written with ``repr``, as
``json`` does, and every string comes from a fixed table, an address
formatted by :mod:`ipaddress`, or Zeek's history letters, none of which need
escaping; only the file name and the anomaly lists go through ``json``.
Schema: docs/analyze.md.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from ..wire.segment import FIN
from .classify import _RSTOS0, CLOSES, HANDSHAKES, SIDES, ZEEK_STATES, Analysis

__all__ = ["iter_jsonl", "write_jsonl"]

BLOCK = 8192
I64 = npt.NDArray[np.int64]

_EP = '{"addr":"%s","port":%d}'
_PAIR = '{"client_to_server":%d,"server_to_client":%d}'
_LINE = (
    '{"id":%d,"client":' + _EP + ',"server":' + _EP + ',"start":%s%s%s,"end":%s%s%s,"duration":%s%s%s,'
    '"first_frame":%d,"last_frame":%d,"partial":%s,"flipped":%s,"packets":' + _PAIR + ',"bytes":' + _PAIR
    + ',"retransmissions":' + _PAIR + ',"handshake":%s,"close":%s,"first_fin":%s,'
    '"reset_by":%s,"reset_after_fin":%s,"half_close_bytes":%d,'
    '"fins":{"client":%s,"server":%s},"anomalies":%s,"conn_state":"%s","history":"%s","tunnel":%s%s}\n'
)  # fmt: skip
_FIN = '{"frame":%d,"time":%s%s%s,"seq":%d,"ack":%d,"len":%d,"retransmissions":%d,"acked_by":'
_FIN_ACKED = _FIN + '{"frame":%d,"time":%s%s%s,"seq":%d,"ack":%d,"carried_on":"%s"}}'
_FIN_UNACKED = _FIN + "null}"

_BOOL = np.array(["false", "true"], dtype=object)


def _quoted(names: tuple[str, ...]) -> npt.NDArray[Any]:
    """Index -1 is ``null``, k is ``"names[k]"`` (look up with ``index + 1``)."""
    return np.array(["null", *(f'"{n}"' for n in names)], dtype=object)


_HANDSHAKE = _quoted(HANDSHAKES)
_CLOSE = _quoted(CLOSES)
_SIDE = _quoted(SIDES)


def write_jsonl(res: Analysis, out: TextIO, file: str | None = None) -> int:
    """Write one line per connection of ``res`` to ``out``; with ``file``, each
    object also names it (several captures at once).  Returns the count."""
    for text in iter_jsonl(res, file):
        out.write(text)
    return res.n


def iter_jsonl(res: Analysis, file: str | None = None) -> Iterator[str]:
    """The JSON Lines text of ``res``, a block of connections at a time."""
    tail = "" if file is None else ',"file":' + json.dumps(file)
    for lo in range(0, res.n, BLOCK):
        yield _block(res, lo, min(res.n, lo + BLOCK), tail)


def _block(res: Analysis, lo: int, hi: int, tail: str) -> str:
    return "".join(_lines(res, lo, hi, tail))


def _lines(res: Analysis, lo: int, hi: int, tail: str) -> list[str]:
    c = res.cols
    m = hi - lo
    sl = slice(lo, hi)

    def col(name: str) -> list[Any]:
        out: list[Any] = c[name][sl].tolist()
        return out

    def lookup(table: npt.NDArray[Any], name: str, shift: int = 0) -> list[str]:
        out: list[str] = table[c[name][sl] + shift].tolist()
        return out

    # Endpoints: the 4-tuple is stored low endpoint first; ``client`` says which.
    keys = res._flow_key[c["flow"][sl]]
    cl = c["client"][sl].astype(bool)
    lo_addr = _addresses(res, keys[:, 0:4])
    hi_addr = _addresses(res, keys[:, 5:9])
    c_addr = np.where(cl, hi_addr, lo_addr).tolist()
    s_addr = np.where(cl, lo_addr, hi_addr).tolist()
    c_port = np.where(cl, keys[:, 9], keys[:, 4]).tolist()
    s_port = np.where(cl, keys[:, 4], keys[:, 9]).tolist()

    start, end = c["start"][sl], c["end"][sl]
    hist, at = c["hist_str"], c["hist_at"][lo : hi + 1].tolist()
    history = [hist[a:b] for a, b in itertools.pairwise(at)]
    zeek = c["zeek"][sl]
    state = np.array(ZEEK_STATES, dtype=object)[np.maximum(zeek, 0)]
    for j in np.flatnonzero(zeek < 0).tolist():
        # RSTOS0 needs the history: a SYN, nothing from the responder, a RST.
        state[j] = "RSTOS0" if _RSTOS0.match(history[j]) else "OTH"
    anomalies = ["[]"] * m
    for i, found in c["an_by_conn"].items():
        if lo <= i < hi:
            anomalies[i - lo] = json.dumps(found, separators=(",", ":"))

    columns: list[list[Any]] = [
        list(range(lo + 1, hi + 1)) if res.ids is None else res.ids[sl].tolist(),
        c_addr, c_port, s_addr, s_port,
        *_us(start), *_us(end), *_us(end - start),
        col("first_frame"), col("last_frame"), lookup(_BOOL, "partial"), lookup(_BOOL, "flipped"),
        col("pkts_c"), col("pkts_s"), col("bytes_c"), col("bytes_s"), col("retr_c"), col("retr_s"),
        lookup(_HANDSHAKE, "handshake", 1), lookup(_CLOSE, "close", 1),
        lookup(_SIDE, "first_fin", 1), lookup(_SIDE, "reset_by", 1),
        lookup(_BOOL, "reset_after_fin"), col("half_close_bytes"),
        _fins(c, sl, "c"), _fins(c, sl, "s"),
        anomalies, state.tolist(), history, _tunnels(res, sl), _tails(res, lo, hi, tail),
    ]  # fmt: skip
    return list(map(_LINE.__mod__, zip(*columns, strict=True)))


def _tails(res: Analysis, lo: int, hi: int, tail: str) -> list[str]:
    """What ends each line: a capture set's ``files`` list, then ``file``."""
    if res.files is None:
        return [tail] * (hi - lo)
    names = [json.dumps(f) for f in res.files]
    return [
        ',"files":[' + ",".join(names[k] for k in res.conn_files[i]) + "]" + tail
        for i in range(lo, hi)
    ]


def _tunnels(res: Analysis, sl: slice) -> list[str]:
    """Each connection's ``tunnel`` list as JSON text (one text per stack)."""
    text = [json.dumps(t, separators=(",", ":")) for t in res.tunnel_objects()]
    out: list[str] = [text[k] for k in res.cols["tunnel"][sl].tolist()]
    return out


def _addresses(res: Analysis, words: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Text of each row of address words, formatted once per distinct address."""
    w = words.astype(np.uint64)
    # One 64-bit key per address for a 1-D unique; checked, since two
    # addresses could share a key (then fall back to the exact 2-D unique).
    with np.errstate(over="ignore"):
        key = ((w[:, 0] << 32 | w[:, 1]) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            w[:, 2] << 32 | w[:, 3]
        )
    # A sort instead of np.unique (which imports numpy.ma: start-up time).
    o = np.argsort(key, kind="stable")
    sk = key[o]
    brk = np.r_[True, sk[1:] != sk[:-1]]
    first = o[brk]
    inv = np.empty(key.size, dtype=np.int64)
    inv[o] = np.cumsum(brk) - 1
    uniq = words[first]
    if not np.array_equal(uniq[inv], words):
        uniq, inv = np.unique(words, axis=0, return_inverse=True)
    text = np.array([res._addr(tuple(w)) for w in uniq.tolist()], dtype=object)
    out: npt.NDArray[Any] = text[inv.ravel()]
    return out


# Fractions of a second as text, three digits at a time: ".xyz" when more
# digits follow, else with trailing zeros dropped (".5", ".0"); the last
# three digits with trailing zeros dropped ("" for none).
_DOT3 = np.array([f".{k:03d}" for k in range(1000)], dtype=object)
_DOT3_END = np.array([f".{k:03d}".rstrip("0") if k else ".0" for k in range(1000)], dtype=object)
_END3 = np.array([f"{k:03d}".rstrip("0") for k in range(1000)], dtype=object)


def _us(times: npt.NDArray[Any]) -> list[list[Any]]:
    """Seconds rounded to the microsecond as JSON text (0.14, not
    0.13999999999999999), in three pieces per value for a ``%s%s%s`` slot:
    the text of ``repr(round(t, 6))`` (Python's round, as Analysis.records
    uses; numpy's differs in rare halves), formatted column-wise.

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
    frac = us % 1_000_000
    hi, lo = frac // 1000, frac % 1000
    whole: npt.NDArray[Any] = (us // 1_000_000).astype(object)
    head = np.where(lo > 0, _DOT3[hi], _DOT3_END[hi])
    tail = _END3[lo]
    bad = np.flatnonzero(~ok)
    if bad.size:
        whole[bad] = [repr(round(x, 6)) for x in t[bad].tolist()]
        head[bad] = tail[bad] = ""
    return [whole.tolist(), head.tolist(), tail.tolist()]


def _fins(c: dict[str, Any], sl: slice, side: str) -> list[str]:
    """Each connection's ``fins.<side>`` object text, or ``null``: one
    template for a FIN and the segment that acknowledged it (the common
    case), another for a FIN never acknowledged."""
    has = c["fin_has_" + side][sl]
    out = np.full(has.size, "null", dtype=object)
    q = np.flatnonzero(has)
    if not q.size:
        return out.tolist()  # type: ignore[no-any-return]
    acked = c["fack_has_" + side][sl][q]

    def take(name: str, rows: I64) -> list[Any]:
        v: list[Any] = c[name + "_" + side][sl][rows].tolist()
        return v

    def fin(rows: I64) -> list[list[Any]]:
        return [
            take("fin_frame", rows), *_us(c["fin_ts_" + side][sl][rows]), take("fin_seq", rows),
            take("fin_ack", rows), take("fin_plen", rows), take("fin_retr", rows),
        ]  # fmt: skip

    qa, qn = q[acked], q[~acked]
    if qa.size:
        flags = c["fack_flags_" + side][sl][qa]
        plen = c["fack_plen_" + side][sl][qa]
        # The acknowledging segment was itself a FIN, carried data, or neither.
        carried = np.where(flags & FIN, "fin", np.where(plen > 0, "data", "pure_ack"))
        cols = [
            *fin(qa),
            take("fack_frame", qa), *_us(c["fack_ts_" + side][sl][qa]), take("fack_seq", qa),
            take("fack_ack", qa), carried.tolist(),
        ]  # fmt: skip
        out[qa] = list(map(_FIN_ACKED.__mod__, zip(*cols, strict=True)))
    if qn.size:
        out[qn] = list(map(_FIN_UNACKED.__mod__, zip(*fin(qn), strict=True)))
    return out.tolist()  # type: ignore[no-any-return]


class OrderedJsonl:
    """JSON Lines of a streamed analysis (pieces of connections in any
    order, each piece's ids ascending) written in id order; with ``lines``,
    whatever lines that gives for rows ``lo`` .. ``hi`` - 1 of a piece
    (one per connection: the CSV writer's).  Lines that
    wait for an earlier connection are held in memory up to ``budget``
    bytes, then spilled to a temporary file (sorted by id, with numpy arrays
    of their ids and offsets) and read back in order, a run of consecutive
    ids at a time."""

    def __init__(
        self,
        out: TextIO,
        file: str | None = None,
        budget: int = 8 << 20,
        lines: Callable[[Analysis, int, int], list[str]] | None = None,
    ) -> None:
        self.out, self.budget = out, budget
        self.tail = "" if file is None else ',"file":' + json.dumps(file)
        self.lines = lines or (lambda res, lo, hi: _lines(res, lo, hi, self.tail))
        self.next = 1
        self.held: dict[int, str] = {}
        self.held_bytes = 0
        self.spill: Any = None
        # spilled runs: (ids, byte offsets with the end appended, cursor)
        self.segs: list[tuple[I64, I64]] = []
        self.cursor: list[int] = []
        self.heads: list[tuple[int, int]] = []  # heap of (next id, segment)

    def add(self, res: Analysis) -> None:
        ids = list(range(1, res.n + 1)) if res.ids is None else res.ids.tolist()
        for lo in range(0, res.n, BLOCK):
            hi = min(res.n, lo + BLOCK)
            lines = self.lines(res, lo, hi)
            waiting = self.held or self.heads
            if ids[lo] == self.next and not waiting and ids[hi - 1] - ids[lo] == hi - lo - 1:
                self.out.write("".join(lines))  # in order, nothing waiting
                self.next = ids[hi - 1] + 1
                continue
            for i, line in zip(ids[lo:hi], lines, strict=True):
                self.held[i] = line
                self.held_bytes += len(line)
            self._drain()
            if self.held_bytes > self.budget:
                self._spill()

    def close(self) -> None:
        self._drain()
        if self.spill is not None:
            self.spill.close()

    def _spill(self) -> None:
        import heapq
        import tempfile

        if self.spill is None:
            self.spill = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        f = self.spill
        f.seek(0, 2)
        ids = sorted(self.held)
        data = [self.held[i].encode() for i in ids]
        offs = np.cumsum([f.tell(), *map(len, data)])
        f.write(b"".join(data))
        self.segs.append((np.array(ids, dtype=np.int64), offs))
        self.cursor.append(0)
        heapq.heappush(self.heads, (ids[0], len(self.segs) - 1))
        self.held.clear()
        self.held_bytes = 0

    def _drain(self) -> None:
        out: list[str] = []
        size = 0
        while True:
            line = self.held.pop(self.next, None)
            if line is not None:
                self.held_bytes -= len(line)
                self.next += 1
            elif self.heads and self.heads[0][0] == self.next:
                line = self._read_run()
            else:
                break
            out.append(line)
            size += len(line)
            if size > 1 << 20:  # written as it goes, a megabyte at a time
                self.out.write("".join(out))
                out.clear()
                size = 0
        if out:
            self.out.write("".join(out))

    def _read_run(self) -> str:
        """The spilled lines from ``next`` on with consecutive ids in one
        segment (next to each other in the file), up to 4,096, in one read."""
        import heapq

        _, k = heapq.heappop(self.heads)
        ids, offs = self.segs[k]
        j = self.cursor[k]
        w = ids[j : j + 4096]
        run = int(np.argmin(np.r_[w - w[0] == np.arange(w.size), False]))
        self.spill.seek(int(offs[j]))
        text: str = self.spill.read(int(offs[j + run] - offs[j])).decode()
        self.next = int(ids[j + run - 1]) + 1
        self.cursor[k] = j + run
        if j + run < ids.size:
            heapq.heappush(self.heads, (int(ids[j + run]), k))
        return text
