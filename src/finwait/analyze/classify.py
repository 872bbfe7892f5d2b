"""Per-connection classification from the tracker's columns: who is the
client, how the handshake went, how the connection was released, who closed
first, who reset, the half-close, each side's FIN and its acknowledgment,
anomalies, and Zeek's ``conn_state`` and ``history``.

The rules are written down in docs/analyze.md (the JSON Lines schema) and
follow RFC 9293 §3.5/§3.6: a FIN consumes one sequence number, so the ACK of
a FIN at relative N is N + 1; a second FIN whose ACK covers the first is a
three-segment close when no pure ACK came before it (Linux's delayed ACK in
"pingpong" mode, tcp_fin()), and FINs that do not acknowledge each other
crossed (simultaneous close, §3.6 Figure 13).  ``conn_state`` follows Zeek's
``Conn::conn_state`` decision list over per-endpoint states.

Everything is computed column-wise; only the JSON record of each connection
is built in Python.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from ..capture.decode import member
from ..wire.segment import ACK, FIN, SYN
from .columns import DirColumns
from .tracker import (
    A_NO_HS,
    A_RST_AFTER,
    ANOMALIES,
    H_F,
    HALF,
    HISTORY,
    M32,
    NONE,
    Tracker,
)

I64 = npt.NDArray[np.int64]


class Handshake(IntEnum):
    """How the connection opened (docs/analyze.md, ``handshake``)."""

    complete = 0
    refused = 1
    unanswered = 2
    partial = 3
    none = 4


class Close(IntEnum):
    """How the connection was released (docs/analyze.md, ``close``)."""

    four_way = 0
    three_way = 1
    simultaneous = 2
    reset = 3
    refused = 4
    unanswered = 5
    half_closed = 6
    open = 7
    probe = 8


class Side(IntEnum):
    """``first_fin`` / ``reset_by`` (-1 in the columns: null)."""

    client = 0
    server = 1
    both = 2


class ZeekEndpoint(IntEnum):
    """Zeek's TCP endpoint states (TCP_Endpoint.h)."""

    INACTIVE = 0
    SYN_SENT = 1
    SYN_ACK_SENT = 2
    PARTIAL = 3
    ESTABLISHED = 4
    CLOSED = 5
    RESET = 6


class ZeekState(IntEnum):
    """Zeek's ``conn_state`` values (base/protocols/conn/main.zeek)."""

    S0 = 0
    S1 = 1
    SF = 2
    REJ = 3
    S2 = 4
    S3 = 5
    RSTO = 6
    RSTR = 7
    RSTOS0 = 8
    RSTRH = 9
    SH = 10
    SHR = 11
    OTH = 12


HANDSHAKES = tuple(h.name for h in Handshake)
CLOSES = tuple(c.name for c in Close)
SIDES = tuple(x.name for x in Side)
ZEEK_STATES = tuple(z.name for z in ZeekState)
Z_INACTIVE, Z_SYN_SENT, Z_SYN_ACK_SENT, Z_PARTIAL, Z_ESTABLISHED, Z_CLOSED, Z_RESET = ZeekEndpoint
RSTOS0_OR_OTH = -1  # conn_state decided on the history string
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R")
RECORD_BLOCK = 4096
MAX_FRAMES = 20  # frames listed per anomaly; ``count`` has the total


@dataclass
class Analysis:
    """The result for one capture file."""

    path: str
    records_read: int = 0
    tcp_packets: int = 0
    drops: Counter[str] = field(default_factory=Counter)  # skip reasons, and "tcp"
    notes: Counter[str] = field(default_factory=Counter)  # e.g. ipv4_length_from_capture
    tunnels: list[tuple[tuple[str, str, str], ...]] = field(default_factory=lambda: [()])
    error: str | None = None
    error_offset: int | None = None
    empty: bool = False
    n: int = 0
    cols: dict[str, Any] = field(default_factory=dict)
    # Connection ids (1-based) of the rows, when they are not 1..n: a piece
    # of a streamed analysis (Tracker.retire).
    ids: I64 | None = None
    _flow_key: I64 = field(default_factory=lambda: np.zeros((0, 10), dtype=np.int64))
    _addr_text: dict[tuple[int, ...], str] = field(default_factory=dict)
    # Capture sets (analyze/sets.py): the files in capture order, per
    # connection the indices of the files it appears in, one error per file.
    files: list[str] | None = None
    conn_files: list[list[int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Streamed (rows not held): connections inside a tunnel, and the records
    # kept for :meth:`record` (connection id -> record).
    tunnelled: int | None = None
    kept: dict[int, dict[str, Any]] | None = None

    def __len__(self) -> int:
        return self.n

    def tunnel_objects(self) -> list[list[dict[str, str]]]:
        """Each tunnel stack as the ``tunnel`` field shows it: outer layers
        first, each with its type and outer endpoints."""
        return [[{"type": t, "src": a, "dst": b} for t, a, b in st] for st in self.tunnels]

    def skipped(self) -> dict[str, dict[str, int]]:
        """Packets not analysed: reason -> detail -> count."""
        out: dict[str, dict[str, int]] = {}
        for key, v in sorted(self.drops.items()):
            if key == "tcp":
                continue
            reason, _, detail = key.partition(": ")
            out.setdefault(reason, {})[detail or reason] = v
        return out

    def stats(self) -> dict[str, Any]:
        """What ``--stats`` prints: packets read, TCP analysed, skipped by
        reason, notes, connections, tunnels."""
        sk = self.skipped()
        return {
            "file": self.path,
            "packets_read": self.records_read,
            "tcp_packets": self.tcp_packets,
            "skipped": sum(sum(d.values()) for d in sk.values()),
            "skipped_by_reason": sk,
            "notes": dict(sorted(self.notes.items())),
            "connections": self.n,
            "tunnelled_connections": self.tunnelled_connections(),
            "error": self.error,
        }

    def tunnelled_connections(self) -> int:
        if self.tunnelled is not None:
            return self.tunnelled
        return int((self.cols["tunnel"] > 0).sum()) if self.n else 0

    # -- summary -------------------------------------------------------------

    def counts(self, column: str, names: tuple[str, ...]) -> dict[str, int]:
        if not self.n:
            return {}
        bc = np.bincount(self.cols[column], minlength=len(names))
        return {names[i]: int(v) for i, v in enumerate(bc.tolist()) if v}

    def anomaly_counts(self) -> dict[str, tuple[int, int]]:
        """name -> (connections, occurrences)."""
        conn: I64 | None = self.cols.get("an_conn")
        code: I64 = self.cols.get("an_code", np.zeros(0, dtype=np.int64))
        if conn is None or not conn.size:
            return {}
        out: dict[str, tuple[int, int]] = {}
        for k, name in enumerate(ANOMALIES):
            m = code == k
            if m.any():
                out[name] = (int(np.unique(conn[m]).size), int(m.sum()))
        return out

    def by_close_and_closer(self) -> dict[tuple[str, str], int]:
        if not self.n:
            return {}
        key = self.cols["close"] * 4 + self.cols["first_fin"] + 1
        bc = np.bincount(key, minlength=len(CLOSES) * 4)
        closer = ("-", *SIDES)
        return {(CLOSES[i // 4], closer[i % 4]): int(v) for i, v in enumerate(bc.tolist()) if v}

    # -- records -------------------------------------------------------------

    def record(self, cid: int) -> dict[str, Any]:
        """The record of connection ``cid`` (1-based)."""
        if self.kept is not None:
            return self.kept[cid]
        return next(self.records(cid - 1, cid))

    def records(self, lo: int = 0, hi: int | None = None) -> Iterator[dict[str, Any]]:
        """Records ``lo`` .. ``hi`` - 1 (0-based), built a block at a time so
        memory stays flat however many connections there are."""
        hi = self.n if hi is None else min(hi, self.n)
        for start in range(lo, hi, RECORD_BLOCK):
            yield from self._block(start, min(hi, start + RECORD_BLOCK))

    def _block(self, lo: int, hi: int) -> Iterator[dict[str, Any]]:
        c = self.cols
        sl = slice(lo, hi)
        L: dict[str, Any] = {k: (v[sl].tolist() if isinstance(v, np.ndarray) and v.shape[:1] == (self.n,) else None)
             for k, v in c.items()}  # fmt: skip
        hist, hist_at = c["hist_str"], c["hist_at"]
        an = c["an_by_conn"]
        tun = self.tunnel_objects()
        for j in range(hi - lo):
            i = lo + j
            ep = self._endpoints(L["flow"][j])
            cl = L["client"][j]
            cli, srv = (ep[0], ep[1]), (ep[2], ep[3])
            if cl == 1:
                cli, srv = srv, cli
            close = L["close"][j]
            ff = L["first_fin"][j]
            rb = L["reset_by"][j]
            zs = L["zeek"][j]
            h = hist[hist_at[i] : hist_at[i + 1]]
            if zs == RSTOS0_OR_OTH:  # needs the history: S, nothing from the responder, R
                zs = ZeekState.RSTOS0 if _RSTOS0.match(h) else ZeekState.OTH
            rec: dict[str, Any] = {
                "id": i + 1 if self.ids is None else int(self.ids[i]),
                "client": {"addr": cli[0], "port": cli[1]},
                "server": {"addr": srv[0], "port": srv[1]},
                # Seconds to the microsecond (0.14, not 0.13999999999999999).
                "start": round(L["start"][j], 6),
                "end": round(L["end"][j], 6),
                "duration": round(L["end"][j] - L["start"][j], 6),
                "first_frame": L["first_frame"][j],
                "last_frame": L["last_frame"][j],
                "partial": L["partial"][j],
                "flipped": L["flipped"][j],
                "packets": {"client_to_server": L["pkts_c"][j], "server_to_client": L["pkts_s"][j]},
                "bytes": {"client_to_server": L["bytes_c"][j], "server_to_client": L["bytes_s"][j]},
                "retransmissions": {
                    "client_to_server": L["retr_c"][j],
                    "server_to_client": L["retr_s"][j],
                },
                "handshake": HANDSHAKES[L["handshake"][j]],
                "close": CLOSES[close],
                "first_fin": SIDES[ff] if ff >= 0 else None,
                "reset_by": SIDES[rb] if rb >= 0 else None,
                "reset_after_fin": L["reset_after_fin"][j],
                "half_close_bytes": L["half_close_bytes"][j],
                "fins": {"client": self._fin(L, j, "c"), "server": self._fin(L, j, "s")},
                "anomalies": an.get(i, []),
                "conn_state": ZEEK_STATES[zs],
                "history": h,
                "tunnel": tun[L["tunnel"][j]],
            }
            if self.files is not None:
                rec["files"] = [self.files[k] for k in self.conn_files[i]]
            yield rec

    @staticmethod
    def _fin(L: dict[str, Any], j: int, side: str) -> dict[str, Any] | None:
        if not L["fin_has_" + side][j]:
            return None
        acked: dict[str, Any] | None = None
        if L["fack_has_" + side][j]:
            fl, pl = L["fack_flags_" + side][j], L["fack_plen_" + side][j]
            acked = {
                "frame": L["fack_frame_" + side][j],
                "time": round(L["fack_ts_" + side][j], 6),
                "seq": L["fack_seq_" + side][j],
                "ack": L["fack_ack_" + side][j],
                "carried_on": "fin" if fl & FIN else ("data" if pl else "pure_ack"),
            }
        return {
            "frame": L["fin_frame_" + side][j],
            "time": round(L["fin_ts_" + side][j], 6),
            "seq": L["fin_seq_" + side][j],
            "ack": L["fin_ack_" + side][j],
            "len": L["fin_plen_" + side][j],
            "retransmissions": L["fin_retr_" + side][j],
            "acked_by": acked,
        }

    def _endpoints(self, flow: int) -> tuple[str, int, str, int]:
        k = self._flow_key[flow].tolist()
        return self._addr(tuple(k[0:4])), k[4], self._addr(tuple(k[5:9])), k[9]

    def _addr(self, w: tuple[int, ...]) -> str:
        text = self._addr_text.get(w)
        if text is None:
            text = self._addr_text[w] = addr_text(w)
        return text


def addr_text(w: Sequence[int]) -> str:
    """The text of an address held as four 32-bit words (IPv4 mapped into
    IPv6, ``::ffff:a.b.c.d``, as the tracker keys it).  IPv4 by hand:
    ``ipaddress`` (a millisecond of start-up) only for IPv6's RFC 5952 text."""
    if w[0] == 0 and w[1] == 0 and w[2] == 0xFFFF:
        v = w[3]
        return f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"
    import ipaddress

    return str(ipaddress.IPv6Address((w[0] << 96) | (w[1] << 64) | (w[2] << 32) | w[3]))


# Per-direction columns come as (n, 2) pairs (DirColumns.pairs).  numpy's
# reductions along an axis of two are slow (a loop set up per row) and so is
# 2-D fancy indexing: these take the two columns as two arrays instead, and a
# side's value through the flat row 2 * conn + side.


def _both(pair: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``pair.all(axis=1)``."""
    return pair[:, 0] & pair[:, 1]


def _either(pair: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``pair.any(axis=1)``."""
    return pair[:, 0] | pair[:, 1]


def _lower(pair: I64) -> I64:
    """``pair.min(axis=1)``."""
    return np.minimum(pair[:, 0], pair[:, 1])


def _lower_side(pair: I64) -> I64:
    """``np.argmin(pair, axis=1)``: the side with the lower value, 0 on a tie."""
    return (pair[:, 1] < pair[:, 0]).astype(np.int64)


class _Side:
    """One side (direction) of every connection: ``of(pair)`` is each
    connection's value on it (``pair[arange(n), d]``)."""

    def __init__(self, d: I64) -> None:
        self.d = d
        self.rows = 2 * np.arange(d.size) + d  # the flat row 2 * conn + side

    def of(self, pair: npt.NDArray[Any]) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = pair.reshape(-1)[self.rows]
        return out


def classify(tr: Tracker, path: str) -> Analysis:
    """Turn the tracker's columns into an :class:`Analysis`."""
    res = Analysis(path, tcp_packets=tr.packets)
    n = res.n = tr.nconns
    res._flow_key = tr.flow_key[: tr.nflows]
    if n and tr.row_id[n - 1] != n - 1:  # not 0 .. n-1: a streamed piece
        res.ids = tr.row_id[:n] + 1
    if n == 0:
        res.cols = {"hist_str": "", "hist_at": np.zeros(1, dtype=np.int64), "an_by_conn": {}}
        return res
    s = tr.s.pairs(n)  # (n, 2): [connection, direction]
    c = tr.c.head(n)
    # Whether each frame column was written ("has a SYN", "has a FIN" ...).
    has = {
        k: getattr(s, k) != NONE
        for k in ("syn_frame", "sa_frame", "hs_frame", "fin_frame", "fack_frame", "rst_first")
    }

    # Client: the SYN sender; else the receiver of a SYN-ACK; else the first sender.
    syn_any = _either(has["syn_frame"])
    sa_any = _either(has["sa_frame"])
    flip = _zeek_flip(tr, c.flow, c.first_dir, c.first_flags)
    client = np.where(
        syn_any,
        _lower_side(s.syn_frame),
        np.where(sa_any, 1 - _lower_side(s.sa_frame), c.first_dir ^ flip),
    )
    server = 1 - client
    cl, sv = _Side(client), _Side(server)

    def cs(name: str) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Column ``name`` for the client and for the server."""
        a = getattr(s, name)
        return cl.of(a), sv.of(a)

    syn_c, _ = cs("syn_frame")
    has_syn_c = syn_c != NONE
    has_sa_s = cs("sa_frame")[1] != NONE
    has_hs_c = cs("hs_frame")[0] != NONE
    _pk_c, pk_s = cs("pkts")
    _rst_c, rst_s = cs("rst_first")

    handshake = np.select(
        [
            has_syn_c & has_sa_s & has_hs_c,
            has_syn_c & ~has_sa_s & (rst_s != NONE),
            has_syn_c & ~has_sa_s & (pk_s == 0),
            syn_any | sa_any,
        ],
        [Handshake.complete, Handshake.refused, Handshake.unanswered, Handshake.partial],
        Handshake.none,
    )

    # FINs: first and second, and whether the second acknowledged the first.
    fin = s.fin_frame
    both_fin = _both(has["fin_frame"])
    any_fin = _either(has["fin_frame"])
    f1 = _Side(_lower_side(fin))  # side of the first FIN
    f2 = _Side(1 - f1.d)
    f1_end = (f1.of(s.fin_seq) + f1.of(s.fin_plen) + 1) & M32
    f2_acks_f1 = ((f2.of(s.fin_ack) - f1_end) & M32) < HALF
    acked_before_f2 = f1.of(s.fack_frame) < f2.of(fin)
    fack = s.fack_frame
    close_done = np.where(
        both_fin & _both(has["fack_frame"]), np.maximum(fack[:, 0], fack[:, 1]), NONE
    )
    rst_first = _lower(s.rst_first)
    rst_any = rst_first != NONE
    reset = rst_any & (~both_fin | (rst_first < close_done))
    probe = (handshake == Handshake.none) & ((c.first_flags & ACK) == 0)
    close = np.select(
        [
            probe,
            handshake == Handshake.refused,
            handshake == Handshake.unanswered,
            reset,
            both_fin & f2_acks_f1 & acked_before_f2,
            both_fin & f2_acks_f1,
            both_fin,
            any_fin,
        ],
        [Close.probe, Close.refused, Close.unanswered, Close.reset, Close.four_way,
         Close.three_way, Close.simultaneous, Close.half_closed],
        Close.open,
    )  # fmt: skip
    side_of = np.where(f1.d == client, Side.client, Side.server)
    first_fin = np.where(
        close == Close.simultaneous,
        Side.both,
        np.where(any_fin & (close != Close.probe), side_of, -1),
    )
    first_rst_dir = _lower_side(s.rst_first)
    reset_by = np.where(rst_any, np.where(first_rst_dir == client, Side.client, Side.server), -1)
    reset_after_fin = rst_any & (_lower(fin) < rst_first)
    hc = f2.of(s.hc_bytes)
    half_close_bytes = np.where(any_fin & (close != Close.simultaneous), hc, 0)

    res.cols = cols = {
        "flow": c.flow,
        "flipped": flip & ~syn_any,
        "tunnel": c.tunnel,
        "client": client,
        "start": c.first_ts,
        "end": c.last_ts,
        "first_frame": c.first_frame,
        "last_frame": c.last_frame,
        "partial": ~has_syn_c,
        "handshake": handshake,
        "close": close,
        "first_fin": first_fin,
        "reset_by": reset_by,
        "reset_after_fin": reset_after_fin,
        "half_close_bytes": half_close_bytes,
    }
    for name, key in (("pkts", "pkts"), ("bytes", "bytes"), ("retr", "retrans")):
        cols[name + "_c"], cols[name + "_s"] = cs(key)
    # Relative numbers: each side's own ISN for seq, the peer's for ack.
    base = s.base
    for side, me, peer in (("c", cl, sv), ("s", sv, cl)):
        cols["fin_has_" + side] = me.of(has["fin_frame"])
        cols["fin_frame_" + side] = me.of(fin)
        cols["fin_ts_" + side] = me.of(s.fin_ts)
        # Relative seq of the FIN segment, past 4 GiB too (the tracker unwraps).
        cols["fin_seq_" + side] = me.of(s.fin_pos) - me.of(s.fin_plen)
        cols["fin_ack_" + side] = (me.of(s.fin_ack) - peer.of(base)) & M32
        cols["fin_plen_" + side] = me.of(s.fin_plen)
        cols["fin_retr_" + side] = np.maximum(me.of(s.fin_count) - 1, 0)
        cols["fack_has_" + side] = me.of(has["fack_frame"])
        cols["fack_frame_" + side] = me.of(fack)
        cols["fack_ts_" + side] = me.of(s.fack_ts)
        cols["fack_seq_" + side] = (me.of(s.fack_seq) - peer.of(base)) & M32
        cols["fack_ack_" + side] = (me.of(s.fack_ack) - me.of(base)) & M32
        cols["fack_flags_" + side] = me.of(s.fack_flags)
        cols["fack_plen_" + side] = me.of(s.fack_plen)

    cols["zeek"] = _zeek(tr, s, cl, sv)
    _history(tr, cols, client, n)
    _anomalies(tr, cols, handshake, close_done, c.first_frame, n)
    return res


def _zeek(tr: Tracker, s: DirColumns, client: _Side, server: _Side) -> I64:
    """Zeek's conn_state (base/protocols/conn/main.zeek, ``conn_state``);
    -1 means RSTOS0 or OTH, decided on the history string."""
    n = client.d.size
    fcount = tr.hist_count[: 2 * n, H_F].reshape(n, 2)

    def state(me: _Side, peer: _Side, orig: bool) -> I64:
        fin = me.of(fcount) > 0
        # A RST from a side that sent its FIN after the peer had (or before
        # the peer's FIN, which turns it back) leaves it CLOSED: Zeek keeps
        # a FIN exchange over a later RST (UpdateClosedState,
        # UpdateEstablishedState).
        after_fins = (me.of(s.anyfin_frame) < me.of(s.anyrst_frame)) & (
            peer.of(s.anyfin_frame) != NONE
        )
        rst = (me.of(s.rst_count) > 0) & ~after_fins
        syn = me.of(s.syn_count) > 0
        sa = me.of(s.sa_frame) != NONE
        peer_sa = peer.of(s.sa_frame) != NONE
        # Zeek: the responder's SYN-ACK establishes both its side and an
        # originator that sent a SYN; an originator whose SYN was not
        # captured is established by its ACK of that SYN-ACK.
        est = (syn & peer_sa) | (~syn & peer_sa & (me.of(s.hs_frame) != NONE)) if orig else sa
        first, second = (syn, sa) if orig else (sa, syn)
        return np.select(
            [rst, fin, est, first, second, me.of(s.pkts) > 0],
            [Z_RESET, Z_CLOSED, Z_ESTABLISHED,
             Z_SYN_SENT if orig else Z_SYN_ACK_SENT, Z_SYN_ACK_SENT if orig else Z_SYN_SENT,
             Z_PARTIAL],
            Z_INACTIVE,
        )  # fmt: skip

    os_ = state(client, server, True)
    rs = state(server, client, False)
    o_in = (os_ == Z_INACTIVE) | (os_ == Z_PARTIAL)
    r_in = (rs == Z_INACTIVE) | (rs == Z_PARTIAL)
    nobytes = (client.of(s.bytes) == 0) & (server.of(s.bytes) == 0)
    return np.select(
        [
            (rs == Z_RESET) & ((os_ == Z_SYN_SENT) | (os_ == Z_SYN_ACK_SENT) | ((os_ == Z_RESET) & nobytes)),
            (rs == Z_RESET) & o_in,
            rs == Z_RESET,
            (os_ == Z_RESET) & r_in,
            os_ == Z_RESET,
            (rs == Z_CLOSED) & (os_ == Z_CLOSED),
            (os_ == Z_CLOSED) & r_in,
            os_ == Z_CLOSED,
            (rs == Z_CLOSED) & o_in,
            rs == Z_CLOSED,
            (os_ == Z_SYN_SENT) & (rs == Z_INACTIVE),
            (os_ == Z_ESTABLISHED) & (rs == Z_ESTABLISHED),
        ],
        [ZeekState.REJ, ZeekState.RSTRH, ZeekState.RSTR, RSTOS0_OR_OTH, ZeekState.RSTO,
         ZeekState.SF, ZeekState.SH, ZeekState.S2, ZeekState.SHR, ZeekState.S3, ZeekState.S0,
         ZeekState.S1],
        ZeekState.OTH,
    )  # fmt: skip


# Ports Zeek takes for a server's when a connection does not start with a
# SYN (``likely_server_ports``, filled by the protocol analyzers a default
# Zeek loads): the sender of the first packet is made the responder when its
# port is one of these and the peer's is not (TCPAnalyzer::WantConnection).
LIKELY_SERVER_PORTS = np.array(sorted({
    21, 22, 23, 25, 53, 80, 81, 88, 110, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587,
    614, 631, 636, 989, 990, 992, 993, 995, 1080, 1433, 3128, 3306, 5223, 5432, 6379, 6666,
    6667, 6668, 6669, 8000, 8080, 8443, 8888, 20000,
}), dtype=np.int64)  # fmt: skip


def _zeek_flip(tr: Tracker, flow: I64, first_dir: I64, first_flags: I64) -> I64:
    """1 where Zeek would swap originator and responder (its ``^``): the
    first packet is not a bare SYN and its source port looks like a server's
    (when both do, only a non-SYN to a higher port is flipped)."""
    lo_port, hi_port = tr.flow_key[:, 4][flow], tr.flow_key[:, 9][flow]
    sport = np.where(first_dir == 0, lo_port, hi_port)
    dport = np.where(first_dir == 0, hi_port, lo_port)
    bare_syn = (first_flags & (SYN | ACK)) == SYN
    ls = member(sport, LIKELY_SERVER_PORTS)
    ld = member(dport, LIKELY_SERVER_PORTS)
    flip = ~bare_syn & ls & (~ld | (((first_flags & SYN) == 0) & (sport < dport)))
    out: I64 = flip.astype(np.int64)
    return out


def _history(tr: Tracker, cols: dict[str, Any], client: I64, n: int) -> None:
    # The events' keys (Events: frame << 5 | letter << 1 | direction) with
    # the frame plus one (+ 32), so that Zeek's ``^``, which comes first in
    # a flipped connection's history, can take frame -1 (0 here).
    conn, key = tr.history.packed()
    fl = np.flatnonzero(cols["flipped"])
    conn = np.concatenate([conn, fl])
    key = np.concatenate([key + 32, (len(HISTORY) << 1) | client[fl]])
    # By connection, frame, letter: the keys sorted with the connection
    # above them when it fits (25 + 38 bits), else a lexsort (the same
    # order).  No two events share a connection, frame and letter (a packet
    # gives a letter once), so the direction below them changes nothing in
    # the order, and the sort need not be stable.  The keys themselves are
    # sorted (numpy's default sort) and the fields read back from them:
    # before, the fields unpacked, an argsort and a gather of each field
    # (the mixed capture's 375 k events: 11 against 18.5 ms for all of this).
    if n < 1 << 25 and (not key.size or int(key.max()) < 1 << 38):
        key = np.sort((conn << 38) | key)
        conn = key >> 38
    else:
        o = np.lexsort((key, conn))
        conn, key = conn[o], key[o]
    code, d = (key >> 1) & 15, key & 1
    letters = np.frombuffer((HISTORY + "^").encode(), dtype=np.uint8)[code]
    # Upper case for the originator (the client), lower case for the responder.
    letters = np.where((d == client[conn]) | (code == len(HISTORY)), letters, letters + 32)
    letters = letters.astype(np.uint8)
    cols["hist_str"] = letters.tobytes().decode("ascii")
    cols["hist_at"] = np.searchsorted(conn, np.arange(n + 1))


def _anomalies(
    tr: Tracker, cols: dict[str, Any], handshake: I64, close_done: I64, first_frame: I64, n: int
) -> None:
    conn, frame, code, _ = tr.anomalies.arrays()
    parts_c, parts_f, parts_k = [conn], [frame], [code]
    nh = np.flatnonzero(handshake == Handshake.none)
    parts_c.append(nh)
    parts_f.append(first_frame[nh])
    parts_k.append(np.full(nh.size, A_NO_HS, dtype=np.int64))
    rc, rf, _, _ = tr.rsts.arrays()
    late = rf > close_done[rc] if rc.size else np.zeros(0, dtype=bool)
    parts_c.append(rc[late])
    parts_f.append(rf[late])
    parts_k.append(np.full(int(late.sum()), A_RST_AFTER, dtype=np.int64))
    conn = np.concatenate(parts_c)
    frame = np.concatenate(parts_f)
    code = np.concatenate(parts_k)
    o = np.lexsort((frame, code, conn))
    conn, frame, code = conn[o], frame[o], code[o]
    cols["an_conn"], cols["an_code"] = conn, code
    by: dict[int, list[dict[str, Any]]] = {}
    if conn.size:
        brk = np.flatnonzero(np.r_[True, (conn[1:] != conn[:-1]) | (code[1:] != code[:-1]), True])
        cl, kl, fl = conn.tolist(), code.tolist(), frame.tolist()
        for a, b in zip(brk[:-1].tolist(), brk[1:].tolist(), strict=True):
            by.setdefault(cl[a], []).append(
                {"name": ANOMALIES[kl[a]], "count": b - a, "frames": fl[a : min(b, a + MAX_FRAMES)]}
            )
    cols["an_by_conn"] = by
