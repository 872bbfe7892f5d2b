"""The passive two-sided connection tracker, in columns.

It watches both directions of every 4-tuple and records, per connection and
per direction, what a classifier needs: first SYN, SYN-ACK, handshake ACK,
FIN (with its relative number, retransmissions and the segment that
acknowledged it), RSTs, bytes (retransmissions excluded) and the history of
Zeek letters.  It never acts: it is not the engine, which would
answer with RSTs.  Read RFC 9293 §3.4 (sequence space; a FIN consumes one
number), §3.5 and §3.6 (opening, closing), §3.10.7.4 (a segment without ACK
in a synchronized state is dropped, so a FIN without ACK is never a close:
Linux ignores it, tcp_rcv_state_process), and Zeek's conn.log documentation
for ``history``.

Everything is vectorised over a batch: the only Python loops run over the
distinct 4-tuples of a batch (to give them stable ids across batches).  The
state kept between batches is per 4-tuple and per connection, so memory
grows with connections, not with packets.

Port reuse is split as Wireshark does: a SYN without ACK on a 4-tuple whose
current connection has seen a FIN or RST since its last SYN (or since its
first packet, when something else began it) starts a new connection (a
retransmitted SYN does not).  Sequence numbers are made
relative to each direction's ISN (or to the first sequence number seen,
minus one, when the SYN was not captured), and unwrapped past 4 GiB (each
packet placed within 2 GiB of its direction's previous one).

Layout: the state is two typed tables (analyze/columns.py): ``DirColumns``
per connection and direction, ``ConnColumns`` per connection.  A batch goes
through :meth:`Tracker.add`: flow ids (:meth:`_flows`), connection ids at
port reuse and Zeek's timers (:meth:`_segment`), then :meth:`_update` folds
it in one concern at a time — sequence numbers, bytes and retransmissions
(:meth:`_sequence`), the handshake, the FINs and their ACKs, the RSTs, the
anomalies and the history letters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..capture.decode import BAD_CHECKSUM, TcpColumns, member
from ..wire.segment import ACK, FIN, PSH, RST, SYN, URG
from .columns import ConnColumns, DirColumns, _grow, _keep

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

M32 = 0xFFFFFFFF
HALF = 1 << 31
NONE = np.int64(1 << 62)  # "no frame": larger than any frame number

# History letters, in the order they are written for one packet (Zeek
# conn.log: upper case for the originator, lower case for the responder).
HISTORY = "QISHADTWFRCG"
H_Q, H_I, H_S, H_H, H_A, H_D, H_T, H_W, H_F, H_R, H_C, H_G = range(len(HISTORY))
# T, W, C (bad checksum, with --verify-checksums) and G (content gap) are
# written again at the 10th, 100th, 1000th ... occurrence.
LOG_LETTERS = (H_T, H_W, H_C, H_G)

ANOMALIES = (
    "fin_without_ack",
    "null_flags",
    "xmas_flags",
    "syn_fin",
    "no_handshake",
    "data_after_fin",
    "fin_seq_changed",
    "rst_after_close",
    "ack_of_unsent_data",
    "rst_seq_unexpected",
    "syn_in_connection",
)
(
    A_FIN_NO_ACK,
    A_NULL,
    A_XMAS,
    A_SYN_FIN,
    A_NO_HS,
    A_DATA_AFTER_FIN,
    A_FIN_SEQ,
    A_RST_AFTER,
    A_ACK_UNSENT,
    A_RST_SEQ,
    A_SYN_IN_CONN,
) = range(len(ANOMALIES))

_H = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
     0xFF51AFD7ED558CCD], dtype=np.uint64,
)  # fmt: skip


def _mix(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The murmur3 64-bit finaliser: every input bit reaches every output bit."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xC4CEB9FE1A85EC53)
        return h ^ (h >> np.uint64(33))


def _endpoint_hash(words: I64, port: I64) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of (address words, port) per packet."""
    w = words.view(np.uint64)  # the words are non-negative 32-bit values
    with np.errstate(over="ignore"):
        h = w[:, 0] * _H[0] + w[:, 1] * _H[1] + w[:, 2] * _H[2] + w[:, 3] * _H[3]
        h += port.view(np.uint64) * _H[4]
    return _mix(h)


_POS_BITS = 20  # a batch's packet positions (a 4 MiB batch holds under 2**18)


def _grouped(h: npt.NDArray[np.uint64]) -> tuple[I64, npt.NDArray[np.uint64]]:
    """``np.argsort(h, kind="stable")``: positions grouped by hash, in
    order within a group, and the hashes in that order.  By numpy's
    unstable sort (several times faster) of one distinct key per position,
    the hash's top 44 bits above the position: the keys themselves are
    sorted and the positions read back from their low bits (cheaper than
    an argsort and a gather of the keys).  If two hashes share those bits
    (about once in 10**6 batches of 4,000 flows), the stable sort instead."""
    n = h.size
    if n < 1 << _POS_BITS:
        shift = np.uint64(_POS_BITS)
        key = np.sort((h >> shift << shift) | np.arange(n, dtype=np.uint64))
        order = (key & np.uint64((1 << _POS_BITS) - 1)).astype(np.int64)
        sh, top = h[order], key >> shift
        if not ((sh[1:] != sh[:-1]) & (top[1:] == top[:-1])).any():
            return order, sh
    order = np.argsort(h, kind="stable")
    return order, h[order]


@dataclass(eq=False, repr=False)
class Events:
    """Sparse per-connection events: (conn, frame, code, dir) rows, kept
    per part as two arrays, the connections and one key packing the frame
    (below 2**58), the code (below 16) and the direction: retirement
    (:func:`_events_split`) moves every event held each time, two arrays
    instead of four."""

    parts: list[tuple[I64, I64]] = field(default_factory=list)

    def add(self, conn: I64, frame: I64, code: int | I64, d: I64) -> None:
        if conn.size:
            self.parts.append((conn, (frame << 5) | (np.asarray(code) << 1) | d))

    def packed(self) -> tuple[I64, I64]:
        """The connections and keys of every event."""
        if not self.parts:
            e = np.zeros(0, dtype=np.int64)
            return e, e
        if len(self.parts) == 1:
            return self.parts[0]
        conn, key = zip(*self.parts, strict=True)
        return np.concatenate(conn), np.concatenate(key)

    def arrays(self) -> tuple[I64, I64, I64, I64]:
        """Connections, frames, codes and directions of every event."""
        conn, key = self.packed()
        return conn, key >> 5, (key >> 1) & 15, key & 1


_EVENTS = ("history", "anomalies", "rsts")
if max(len(HISTORY), len(ANOMALIES)) > 16:  # (Events' keys hold a code in 4 bits)
    raise RuntimeError("Events packs an event's code in 4 bits: 16 kinds at most")


def _events_split(ev: Events, new: I64) -> tuple[Events, Events]:
    """``ev``'s rows renumbered by ``new`` (old row -> new row, or
    ``-2 - row`` for row ``row`` of the other part): the other part's
    events and the rest's."""
    conn, key = ev.packed()
    c = new[conn]
    kept = c >= 0
    gone = ~kept
    out, rest = Events(), Events()
    if gone.any():
        out.parts.append((-2 - c[gone], key[gone]))
    if kept.any():
        rest.parts.append((c[kept], key[kept]))
    return out, rest


# Zeek's TCP timers (base/init-bare.zeek defaults), seconds: a connection is
# removed this long after its close completed (a RST, or a FIN once the peer
# has closed or never sent), after an unanswered first SYN, after a side whose
# first packet was its FIN while the peer has not closed, or when idle.
ZEEK_CLOSE_DELAY = 5.0  # tcp_close_delay, tcp_reset_delay
ZEEK_ATTEMPT_DELAY = 5.0  # tcp_attempt_delay
ZEEK_INACTIVITY = 300.0  # tcp_inactivity_timeout
ZEEK_PARTIAL_CLOSE_DELAY = 3.0  # tcp_partial_close_delay
_NEVER = float("inf")

# Without Zeek's timers: a packet this long after the previous one on its
# 4-tuple starts a new connection, once both FINs or a RST were seen (Zeek's
# tcp_close_delay), or in any case (Zeek's tcp_inactivity_timeout).
CLOSE_AFTER = ZEEK_CLOSE_DELAY
IDLE_AFTER = ZEEK_INACTIVITY
# Vectorised rounds of :meth:`Tracker._horizon_starts` before it decides
# the rest one packet at a time.
HORIZON_ROUNDS = 4
# :meth:`Tracker.retire` takes connections out once they are this share of
# the rows held.
RETIRE_SHARE = 0.25


def _room(rows: int, quarter: bool) -> int:
    """The capacity a table grows to when ``rows`` no longer fit.  Growth
    copies the rows in use, so a tracker that keeps every connection (the
    mixed capture's keeps nearly all to the end) doubles: with a quarter
    of headroom its tables were copied at almost every batch (117 MB of
    copies for 49 k connections, 7 % of the tracker's time).  The capacity
    not in use is never written (:func:`~finwait.analyze.columns._grow`).
    Once it retires connections, its size follows the connections open at
    a time and a quarter more (``quarter``) is enough: doubled there, one
    late growth of the 5M capture's tables (64 k connections held) raised
    the peak RSS by 17 MB, past 200."""
    return max(rows + rows // 4 if quarter else 2 * rows, 1024)


_BIG = np.int64(1 << 41)  # above any relative end (2 TiB a direction)


class _Batch:
    """One batch's packets as :meth:`Tracker._update` sees them: grouped by
    connection (capture order within), with each packet's slot (row
    ``2 * conn + d``), its peer's slot, and where connections and
    directions start."""

    def __init__(self, conn: I64, d: I64, p: TcpColumns, fl: I64, s: DirColumns) -> None:
        self.conn, self.d, self.p, self.fl, self.s = conn, d, p, fl, s
        self.n = n = conn.size
        self.slot = 2 * conn + d
        self.other = self.slot ^ 1
        cstart = np.r_[True, conn[1:] != conn[:-1]]
        self.g = np.cumsum(cstart) - 1  # connection's index within the batch
        self.cpos0 = np.flatnonzero(cstart)
        self.cend = np.r_[self.cpos0[1:] - 1, n - 1]
        self.is_dir = (d == 0, d == 1)
        self.dirpos = (np.flatnonzero(self.is_dir[0]), np.flatnonzero(self.is_dir[1]))

    def split(self, mask: Mask) -> tuple[I64, I64]:
        """Positions of the masked packets, per direction (two contiguous
        passes each: cheaper than gathering the mask at ``dirpos``)."""
        return np.flatnonzero(mask & self.is_dir[0]), np.flatnonzero(mask & self.is_dir[1])

    def firsts(self, mask: Mask | None) -> I64:
        """Position of the first masked packet (None: of any packet) of each
        (connection, direction)."""
        out = []
        for q in self.dirpos if mask is None else self.split(mask):
            if q.size:
                c = self.conn[q]
                out.append(q[np.r_[True, c[1:] != c[:-1]]])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def set_first(self, mask: Mask, col: str, target: I64 | None = None) -> I64:
        """Positions that fill column ``col`` (still unset) for their slot
        (or for ``target``'s)."""
        q = self.firsts(mask)
        tgt = self.slot[q] if target is None else target[q]
        keep: I64 = q[getattr(self.s, col)[tgt] == NONE]
        return keep


class _Runs:
    """One batch's packets sorted by flow (capture order within), as
    :meth:`Tracker._segment` sees them: each flow's run of packets."""

    def __init__(self, f: I64) -> None:
        self.n = n = f.size
        self.pos = np.arange(n)
        gstart = np.r_[True, f[1:] != f[:-1]]
        self.first = np.flatnonzero(gstart)  # each run's first position
        self.last = np.r_[self.first[1:] - 1, n - 1]  # each run's last position
        self.flows = f[self.first]  # each run's flow
        # each packet's run's first position
        self.head = self.first[np.cumsum(gstart) - 1]


class Tracker:
    """Feed :class:`TcpColumns` batches in capture order with :meth:`add`.

    With ``zeek_timeouts``, a 4-tuple's packets are also split where Zeek's
    timers would have removed the connection (:meth:`_timer_starts`)."""

    def __init__(self, zeek_timeouts: bool = False) -> None:
        self.zeek_timeouts = zeek_timeouts
        # flow -> [last time, delete at, attempt expires at, originator
        # direction, directions seen (bits), directions closed (bits)]
        self._timers: dict[int, list[float]] = {}
        self.flow_ids: dict[bytes, int] = {}  # exact path only
        self._exact = False
        self._known_h = np.zeros(0, dtype=np.uint64)  # sorted flow hashes
        self._known_id = np.zeros(0, dtype=np.int64)
        self.nflows = 0
        self.flow_key = np.zeros(
            (0, 10), dtype=np.int64
        )  # lo addr(4), lo port, hi addr(4), hi port
        self.flow_conn = np.zeros(0, dtype=np.int64)
        self.flow_fr = np.zeros(0, dtype=np.int64)  # FIN/RST since the last SYN or start
        self.nconns = 0
        self.c = ConnColumns()
        self.s = DirColumns()  # row 2 * conn + direction
        self.hist_count = np.zeros((0, len(HISTORY)), dtype=np.int64)
        self.history = Events()
        self.anomalies = Events()
        self.rsts = Events()
        self.packets = 0
        # Content holes not yet filled nor acknowledged (see _gaps): the
        # row (2 * conn + d) of the side whose data is missing, and the
        # relative number where the hole starts.
        self.hole_slot = np.zeros(0, dtype=np.int64)
        self.hole_start = np.zeros(0, dtype=np.int64)
        # Streaming (:meth:`retire`): rows are the connections still held;
        # ``row_id`` is each row's connection id (0-based, order of first
        # packet), ``next_id`` the next id to give, ``now`` the latest time.
        self.row_id = np.zeros(0, dtype=np.int64)
        self.next_id = 0
        self.now = -np.inf

    # -- ids ---------------------------------------------------------------

    def _flows(self, cols: TcpColumns) -> tuple[I64, I64, I64]:
        """Flow id and direction (0: from the flow's first endpoint) per
        packet, and the packet order grouped by flow (capture order within).

        Fast path: a 64-bit hash per endpoint and per flow, one sort, and a
        sorted table of known flow hashes; then every packet's endpoints are
        compared with its flow's stored 4-tuple, so a hash collision (even a
        crafted one) falls back to the exact path instead of merging flows."""
        if self._exact:
            return self._flows_exact(cols)
        src, dst, sport, dport = cols.src, cols.dst, cols.sport, cols.dport
        ha, hb = _endpoint_hash(src, sport), _endpoint_hash(dst, dport)
        d = (ha > hb).astype(np.int64)
        tie = ha == hb
        if tie.any() and not (
            np.array_equal(src[tie], dst[tie]) and np.array_equal(sport[tie], dport[tie])
        ):
            return self._flows_exact(cols)
        lo_h, hi_h = np.minimum(ha, hb), np.maximum(ha, hb)
        with np.errstate(over="ignore"):
            fh = _mix(lo_h * np.uint64(0xD6E8FEB86659FD93) + hi_h)
        order, sh = _grouped(fh)
        brk = np.r_[True, sh[1:] != sh[:-1]]
        grp = np.cumsum(brk) - 1
        uh, rep = sh[brk], order[brk]
        known = self._known_h
        pos = np.searchsorted(known, uh)
        found = np.zeros(uh.size, dtype=bool)
        if known.size:
            found = known[np.minimum(pos, known.size - 1)] == uh
        ids = np.empty(uh.size, dtype=np.int64)
        ids[found] = self._known_id[pos[found]]
        fresh = np.flatnonzero(~found)
        if fresh.size:
            first = self.nflows
            ids[fresh] = np.arange(first, first + fresh.size)
            r = rep[fresh]
            key = np.empty((fresh.size, 10), dtype=np.int64)
            low = d[r] == 0
            src_r, dst_r = np.take(src, r, axis=0), np.take(dst, r, axis=0)
            key[:, 0:4] = np.where(low[:, None], src_r, dst_r)
            key[:, 4] = np.where(low, sport[r], dport[r])
            key[:, 5:9] = np.where(low[:, None], dst_r, src_r)
            key[:, 9] = np.where(low, dport[r], sport[r])
            self._add_flows(key)
            self._known_h = np.insert(known, pos[fresh], uh[fresh])
            self._known_id = np.insert(self._known_id, pos[fresh], ids[fresh])
        fid = np.empty(fh.size, dtype=np.int64)
        fid[order] = ids[grp]
        # Exactness: each packet's endpoints are its flow's, in its direction.
        # (The key's two endpoints as rows 2 * flow and 2 * flow + 1; taken
        # whole rows at a time: numpy's 2-D fancy indexing copies each row's
        # five values by a loop of its own, three times slower.)
        ends = self.flow_key[: self.nflows].reshape(2 * self.nflows, 5)
        me = np.take(ends, 2 * fid + d, axis=0)
        peer = np.take(ends, 2 * fid + 1 - d, axis=0)
        if not (
            np.array_equal(me[:, 0:4], src)
            and np.array_equal(me[:, 4], sport)
            and np.array_equal(peer[:, 0:4], dst)
            and np.array_equal(peer[:, 4], dport)
        ):
            return self._flows_exact(cols)
        return fid, d, order

    def _add_flows(self, key: I64) -> None:
        n = self.nflows + key.shape[0]
        if self.flow_conn.shape[0] < n:  # (every new row written below)
            self._grow_flows(_room(n, quarter=self.next_id > self.nconns))
        self.flow_key[self.nflows : n] = key
        self.flow_conn[self.nflows : n] = -1
        self.flow_fr[self.nflows : n] = 0
        self.nflows = n

    def _flows_exact(self, cols: TcpColumns) -> tuple[I64, I64, I64]:
        """The collision-proof path: endpoints ordered lexicographically and
        4-tuples looked up as bytes.  Flows it creates are not entered in the
        hash table, so once used for a capture it stays in use."""
        table = self.flow_ids
        if not self._exact:  # index the flows the fast path made, both orders
            for known, row in enumerate(self.flow_key[: self.nflows]):
                table[row.tobytes()] = known
                table[np.r_[row[5:], row[:5]].tobytes()] = known
            self._exact = True
        a = np.concatenate([cols.src, cols.sport[:, None]], axis=1)
        b = np.concatenate([cols.dst, cols.dport[:, None]], axis=1)
        lt = np.zeros(len(cols), dtype=bool)
        eq = np.ones(len(cols), dtype=bool)
        for k in range(5):
            lt |= eq & (a[:, k] < b[:, k])
            eq &= a[:, k] == b[:, k]
        d = (~lt & ~eq).astype(np.int64)  # src is the higher endpoint
        lo = np.where(d[:, None] == 0, a, b)
        hi = np.where(d[:, None] == 0, b, a)
        key = np.ascontiguousarray(np.concatenate([lo, hi], axis=1))
        keyv = key.view(np.dtype((np.void, key.dtype.itemsize * 10))).ravel()
        _, first, inv = np.unique(keyv, return_index=True, return_inverse=True)
        ukeys = key[first]
        ids = np.empty(first.size, dtype=np.int64)
        fresh: list[int] = []
        for i, kb in enumerate(map(bytes, ukeys)):
            fid = table.get(kb)
            if fid is None:
                fid = table[kb] = self.nflows + len(fresh)
                fresh.append(i)
            ids[i] = fid
        if fresh:
            self._add_flows(ukeys[fresh])
        fid_all = ids[inv.ravel()]
        # Direction relative to the stored order of the flow's endpoints.
        stored_lo = self.flow_key[fid_all, 0:5]
        src_end = np.concatenate([cols.src, cols.sport[:, None]], axis=1)
        d = (~(stored_lo == src_end).all(axis=1)).astype(np.int64)
        return fid_all, d, np.argsort(fid_all, kind="stable")

    def _new_conns(self, n: int) -> None:
        total = self.nconns + n
        if self.c.flow.shape[0] < total:
            self._grow_conns(_room(total, quarter=self.next_id > self.nconns))
        # (Rows are filled here, as they come into use: not at growth.)
        self.c.clear(self.nconns, total)
        self.s.clear(2 * self.nconns, 2 * total)
        self.hist_count[2 * self.nconns : 2 * total] = 0
        self.row_id[self.nconns : total] = np.arange(self.next_id, self.next_id + n)
        self.next_id += n
        self.nconns = total

    def _grow_conns(self, rows: int) -> None:
        """Every per-connection table (and per-slot one) to room for ``rows``
        connections (:func:`~finwait.analyze.columns._grow`)."""
        n = self.nconns
        self.c.grow(rows, n)
        self.s.grow(2 * rows, 2 * n)
        self.hist_count = _grow(self.hist_count, 2 * rows, 2 * n)
        self.row_id = _grow(self.row_id, rows, n)

    def _grow_flows(self, rows: int) -> None:
        """Every per-flow table to room for ``rows`` flows."""
        f = self.nflows
        self.flow_key = _grow(self.flow_key, rows, f)
        self.flow_conn = _grow(self.flow_conn, rows, f)
        self.flow_fr = _grow(self.flow_fr, rows, f)

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` more connections and flows (a batch of ``rows``
        segments makes at most that many), grown to twice what is needed
        when short (and a quarter more): a tracker that keeps every
        connection to the end (a partition of a parallel run) would
        otherwise copy a table of a few hundred thousand connections many
        times, each copy into fresh pages (the page faults were most of a
        worker's system time, 3-4 s for 250 k connections when the tables
        grew by a quarter).  Doubled, the copies add up to about the
        table's final size."""
        n, f = self.nconns + rows, self.nflows + rows
        cap = self.c.flow.shape[0]
        if cap < n:
            self._grow_conns(_room(max(n, 2 * cap), quarter=True))
        cap = self.flow_conn.shape[0]
        if cap < f:
            self._grow_flows(_room(max(f, 2 * cap), quarter=True))

    # -- streaming -------------------------------------------------------------

    def retire(self, rows: int | None = None, share: float | None = None) -> Tracker | None:
        """Take out the connections no later packet can belong to: closed
        (both FINs, or a RST) and without a packet for CLOSE_AFTER (5 s) of
        capture time, or without one for IDLE_AFTER (300 s), since such a
        packet starts a new connection (:meth:`_horizon_starts`, or Zeek's
        timers, :meth:`_timer_starts`, which remove them then too).
        Returns them as a tracker of their own (rows in id order,
        ``row_id`` their ids) for :func:`~finwait.analyze.classify.classify`,
        or None; this tracker keeps the others.  With ``rows``, only rows
        ``0 .. rows - 1`` may go (a partition's: the others' ids are not
        known yet, analyze/weave.py).  They go once they are ``share`` of
        the rows at least (by default :data:`RETIRE_SHARE`; 0: as soon as
        one is done, ``--follow``)."""
        n = self.nconns
        if not n or rows == 0:
            return None
        fin, rst = self.s.anyfin_frame[: 2 * n], self.s.anyrst_frame[: 2 * n]
        # Both FINs (the later one's frame is set) or a RST (the earlier one's
        # is); per direction pair, without numpy's slow reductions over an
        # axis of two.
        closed = (np.maximum(fin[0::2], fin[1::2]) != NONE) | (
            np.minimum(rst[0::2], rst[1::2]) != NONE
        )
        idle = self.now - self.c.last_ts[:n]
        done = idle > np.where(closed, CLOSE_AFTER, IDLE_AFTER)
        if rows is not None:
            done[rows:] = False
        # Only once they are a good share of the rows: every retirement
        # moves all the rows kept (compaction), so it is amortised over the
        # rows it frees; the rest wait for a later call, which changes nothing
        # but when their piece comes (no later packet can belong to them).
        ndone = int(np.count_nonzero(done))
        if not ndone or ndone < (RETIRE_SHARE if share is None else share) * n:
            return None
        out, keep = np.flatnonzero(done), np.flatnonzero(~done)
        # Events in one pass: old row -> the piece's row (as -2 - row) or
        # the row kept.
        new = np.empty(n, dtype=np.int64)
        new[out] = -2 - np.arange(out.size)
        new[keep] = np.arange(keep.size)
        split = {name: _events_split(getattr(self, name), new) for name in _EVENTS}
        snap = self._take(out)
        for name in _EVENTS:
            setattr(snap, name, split[name][0])
            setattr(self, name, split[name][1])
        self._compact(keep, new)
        return snap

    def _take(self, rows: I64) -> Tracker:
        """Rows ``rows`` as a tracker of their own (events left empty)."""
        m = rows.size
        dr = (2 * rows[:, None] + np.arange(2)).ravel()
        snap = Tracker(self.zeek_timeouts)
        snap.nconns = snap.next_id = m
        snap.s = self.s.rows(dr)
        snap.c = self.c.rows(rows)
        snap.flow_key = np.take(self.flow_key, snap.c.flow, axis=0)
        snap.nflows = m
        snap.c.flow = np.arange(m, dtype=np.int64)
        snap.hist_count = np.take(self.hist_count, dr, axis=0)
        snap.row_id = self.row_id[rows]
        return snap

    def _compact(self, keep: I64, new: I64) -> None:
        """Keep only rows ``keep`` (in order), and the flows they are on;
        ``new``: each old row's new one (negative: gone).  The events are
        the caller's (:func:`_events_split`)."""
        k = keep.size
        dr = (2 * keep[:, None] + np.arange(2)).ravel()
        # In place: the arrays keep their capacity for the next batch's rows.
        self.s.keep(dr)
        self.c.keep(keep)
        _keep(self.hist_count, dr)
        _keep(self.row_id, keep)
        fc = self.flow_conn[: self.nflows]
        fc[:] = np.maximum(np.where(fc >= 0, new[np.maximum(fc, 0)], -1), -1)
        # A flow whose current connection went (an older one on it stays:
        # open, while the newer one closed) starts a new connection with
        # its next packet, as a start past the horizon would, so its count
        # of FIN/RST restarts there too (before this reset, that count was
        # carried into the new connection, whose next SYN then split it).
        self.flow_fr[: self.nflows][fc < 0] = 0
        if self.hole_slot.size:
            hs = new[self.hole_slot >> 1]
            held = hs >= 0
            self.hole_slot = 2 * hs[held] + (self.hole_slot[held] & 1)
            self.hole_start = self.hole_start[held]
        self.nconns = k
        if self._exact:
            return  # (flows stay: the exact path's table holds their ids)
        live = np.zeros(self.nflows, dtype=bool)
        live[self.c.flow[:k]] = True
        fkeep = np.flatnonzero(live)
        fmap = np.full(self.nflows, -1, dtype=np.int64)
        fmap[fkeep] = np.arange(fkeep.size)
        _keep(self.flow_key, fkeep)
        _keep(self.flow_conn, fkeep)
        _keep(self.flow_fr, fkeep)
        self.nflows = fkeep.size
        self.c.flow[:k] = fmap[self.c.flow[:k]]
        held = live[self._known_id]
        self._known_h = self._known_h[held]
        self._known_id = fmap[self._known_id[held]]
        if self._timers:
            self._timers = {int(fmap[f]): v for f, v in self._timers.items() if live[f]}

    # -- one batch -----------------------------------------------------------

    def add(self, cols: TcpColumns) -> None:
        n = len(cols)
        if n == 0:
            return
        self.packets += n
        self.now = max(self.now, float(cols.ts.max()))
        fid, d, o = self._flows(cols)  # o: by 4-tuple, capture order within
        # Addresses and ports are done with: reorder only what is used below.
        e = np.zeros(0, dtype=np.int64)
        p = TcpColumns(
            cols.frame[o], cols.ts[o], e, e, e, e, cols.seq[o], cols.ack[o], cols.flags[o],
            cols.window[o], cols.plen[o], cols.tunnel[o],
        )  # fmt: skip
        f, d = fid[o], d[o]
        fl = p.flags
        conn = self._segment(f, d, p)
        # Each connection's packets are contiguous here: its last one is the
        # last before the next connection starts.
        last = np.flatnonzero(np.r_[conn[1:] != conn[:-1], True])
        self.c.last_ts[conn[last]] = p.ts[last]
        self.c.last_frame[conn[last]] = p.frame[last]
        bad = (fl & BAD_CHECKSUM) != 0
        if bad.any():
            # Dropped, as Zeek does: only the C/c letter remains of them.
            self.packets -= int(bad.sum())
            q = np.flatnonzero(bad)
            self._letters(conn, d, 2 * conn + d, p.frame, {H_C: (q[d[q] == 0], q[d[q] == 1])})
            good = np.flatnonzero(~bad)
            conn, d, fl = conn[good], d[good], fl[good]
            p = TcpColumns(
                p.frame[good], p.ts[good], e, e, e, e, p.seq[good], p.ack[good], fl,
                p.window[good], p.plen[good], p.tunnel[good],
            )  # fmt: skip
            if not good.size:
                return
        self._update(conn, d, p, fl)

    def _segment(self, f: I64, d: I64, p: TcpColumns) -> I64:
        """Connection id per packet (packets sorted by flow, then frame)."""
        r = _Runs(f)
        n, fl, pos, gpos0, gend, flows = r.n, p.flags, r.pos, r.first, r.last, r.flows
        psyn = (fl & (SYN | ACK | RST | FIN)) == SYN
        new_flow = self.flow_conn[flows] < 0
        start = np.zeros(n, dtype=bool)
        start[gpos0[new_flow]] = True
        if self.zeek_timeouts:
            # (The SYN rule is decided in the timers' pass: a timer's start
            # also restarts the count of FIN/RST.)
            return self._assign(f, d, p, self._timer_starts(f, d, p, start, psyn), r)
        # The FIN/RST count restarts at every SYN (after it: it carries
        # neither) and at every start past a horizon (at it: its own count,
        # as the packet belongs to the new connection).
        h = self._horizon_starts(f, d, p, r, psyn)
        start |= h
        fr = ((fl & (FIN | RST)) != 0).astype(np.int64)
        cfr = np.cumsum(fr)
        cfr_ex = cfr - fr
        reset = np.maximum.accumulate(np.where(psyn | h, pos, -1))  # the last, inclusive
        P = np.flatnonzero(psyn)
        if P.size:
            # FIN/RST since the last restart strictly before each SYN on its
            # 4-tuple (in this batch, or carried in flow_fr).
            g0 = r.head[P]
            prev = np.where(P > 0, reset[np.maximum(P - 1, 0)], -1)
            since = np.where(
                prev >= g0,
                cfr_ex[P] - cfr_ex[np.maximum(prev, 0)],
                cfr_ex[P] - cfr_ex[g0] + self.flow_fr[f[P]],
            )
            start[P[since > 0]] = True
        # Carried to the next batch: FIN/RST since each flow's last restart.
        last = reset[gend]
        self.flow_fr[flows] = np.where(
            last >= gpos0,
            cfr[gend] - cfr_ex[np.maximum(last, 0)],
            self.flow_fr[flows] + cfr[gend] - cfr_ex[gpos0],
        )
        return self._assign(f, d, p, start, r)

    def _assign(self, f: I64, d: I64, p: TcpColumns, start: Mask, r: _Runs) -> I64:
        """Connection ids: a new one at each ``start``, else the flow's
        current one."""
        n, fl = r.n, p.flags
        spos = np.flatnonzero(start)
        ids = np.full(n, -1, dtype=np.int64)
        if spos.size:
            order = np.argsort(p.frame[spos], kind="stable")
            newid = np.empty(spos.size, dtype=np.int64)
            newid[order] = np.arange(self.nconns, self.nconns + spos.size)
            ids[spos] = newid
            self._new_conns(spos.size)
            c = self.c
            c.flow[newid] = f[spos]
            c.first_frame[newid] = p.frame[spos]
            c.first_ts[newid] = p.ts[spos]
            c.first_dir[newid] = d[spos]
            c.first_flags[newid] = fl[spos]
            c.tunnel[newid] = p.tunnel[spos]
        last_start = np.maximum.accumulate(np.where(start, r.pos, -1))
        valid = last_start >= r.head
        conn = np.where(valid, ids[np.maximum(last_start, 0)], self.flow_conn[f])
        self.flow_conn[r.flows] = conn[r.last]
        return conn

    def _horizon_starts(self, f: I64, d: I64, p: TcpColumns, r: _Runs, psyn: Mask) -> Mask:
        """Packets more than CLOSE_AFTER after the previous one on their
        4-tuple once its connection is closed (both FINs, or a RST, since
        the connection began: its last SYN or its first packet), or more
        than IDLE_AFTER after it in any case: each starts a new connection
        (so a connection can be forgotten then, :meth:`retire`).  Zeek's
        timers do this with ``--zeek-timeouts``.

        A connection begun by such a packet has seen no close yet: a FIN or
        RST before it belonged to the previous one.  Whether a packet starts
        one depends on the starts before it on its 4-tuple, so the starts
        are found in rounds: each round decides, per 4-tuple, at least the
        next packet that may start one (more than CLOSE_AFTER after the
        previous), from the starts the previous round found before it.  A
        few rounds suffice unless a 4-tuple has long chains of such packets;
        those are finished one packet at a time.  The answer is the one
        packet-by-packet processing gives, whatever the batches."""
        n, pos, gpos0 = r.n, r.pos, r.first
        ts, fl = p.ts, p.flags
        cur = self.flow_conn[r.flows]
        prev_t = np.r_[np.inf, ts[:-1]]
        prev_t[gpos0] = np.inf
        held = cur >= 0
        prev_t[gpos0[held]] = self.c.last_ts[cur[held]]
        gap = ts - prev_t
        idle: Mask = gap > IDLE_AFTER
        cand: Mask = (gap > CLOSE_AFTER) & ~idle
        if not cand.any():
            return idle
        g0 = r.head
        curp = np.repeat(cur, np.diff(np.r_[gpos0, n]))
        fin, rst = self.s.anyfin_frame, self.s.anyrst_frame
        if not fin.size:  # no connection yet
            fin = rst = np.full(2, NONE, dtype=np.int64)
            curp = np.full(n, -1, dtype=np.int64)
        r2 = 2 * np.maximum(curp, 0)
        ok = curp >= 0
        carried = (
            ok & (fin[r2] != NONE),
            ok & (fin[r2 + 1] != NONE),
            ok & ((rst[r2] != NONE) | (rst[r2 + 1] != NONE)),
        )
        # Exclusive counts: a packet's own flags are not before it.
        ex = tuple(
            np.cumsum(m) - m
            for m in (
                ((fl & FIN) != 0) & (d == 0),
                ((fl & FIN) != 0) & (d == 1),
                (fl & RST) != 0,
            )
        )
        last_syn = np.maximum.accumulate(np.where(psyn, pos, -1))

        def closed(at: I64, base: I64) -> Mask:
            # base: where the packet's connection began in this batch, or
            # before g0 if it began earlier (then its carried state counts).
            inb = base >= g0[at]
            b = np.maximum(base, g0[at])
            seen = [(e[at] - e[b] > 0) | (~inb & c[at]) for e, c in zip(ex, carried, strict=True)]
            out: Mask = seen[2] | (seen[0] & seen[1])
            return out

        def round_(h: Mask) -> Mask:
            # the last start strictly before each packet (a SYN counts itself)
            prev_h = np.r_[-1, np.maximum.accumulate(np.where(h, pos, -1))[:-1]]
            base = np.maximum(last_syn, prev_h)
            out: Mask = idle.copy()
            out[cand] = closed(pos[cand], base[cand])
            return out

        h = round_(idle)
        for _ in range(HORIZON_ROUNDS):
            h2 = round_(h)
            if np.array_equal(h2, h):
                return h2
            h = h2
        return self._horizon_chains(h, cand, g0, last_syn, closed)

    def _horizon_chains(
        self, h: Mask, cand: Mask, g0: I64, last_syn: I64, closed: Callable[[I64, I64], Mask]
    ) -> Mask:
        """:meth:`_horizon_starts`' rounds did not settle: decide its
        candidate packets in order, one Python step each (only for
        4-tuples with long chains of packets more than CLOSE_AFTER apart)."""
        out = h.copy()
        c = np.flatnonzero(cand)
        # Non-candidate starts (IDLE_AFTER) are decided already.
        fixed = out & ~cand
        last_fixed = np.maximum.accumulate(np.where(fixed, np.arange(out.size), -1))
        prev = -1  # the last candidate start, if on the same 4-tuple
        for i in c.tolist():
            base = max(int(last_syn[i]), int(last_fixed[i - 1]) if i else -1)
            if prev >= g0[i] and prev < i:
                base = max(base, prev)
            at = np.array([i])
            start = bool(closed(at, np.array([base]))[0])
            out[i] = start
            if start:
                prev = i
        return out

    def _timer_starts(self, f: I64, d: I64, p: TcpColumns, start: Mask, psyn: Mask) -> Mask:
        """``start`` plus the packets that come after Zeek would have removed
        their 4-tuple's connection (TCPSessionAdapter's ConnDeleteTimer,
        AttemptTimer, PartialCloseTimer and inactivity timer; timers fire
        when the capture's time passes them), and the SYNs (``psyn``) that
        start one by the port-reuse rule (a FIN or RST since the connection
        began: its last SYN, or its first packet; ``flow_fr`` carries the
        count).  One Python step per packet: only with ``--zeek-timeouts``."""
        out = start.copy()
        timers = self._timers
        ts, fl, fs, ds = p.ts.tolist(), p.flags.tolist(), f.tolist(), d.tolist()
        begins, syns = start.tolist(), psyn.tolist()
        count: dict[int, int] = {}  # flow -> FIN/RST since the last restart
        for i, flow in enumerate(fs):
            t, flags, di = ts[i], fl[i], ds[i]
            c = count.get(flow)
            if c is None:
                c = int(self.flow_fr[flow])
            began = begins[i] or (syns[i] and c > 0)
            out[i] = began
            st = None if began else timers.get(flow)
            if st is not None:
                seen, closed, reset = int(st[4]), int(st[5]), int(st[7])
                peer_seen = seen & (1 << (1 - int(st[3])))
                # PartialCloseTimer: both sides seen, not both closed, no RST.
                partial = t > st[6] and seen == 3 and closed != 3 and not reset
                if (
                    t > st[1]
                    or t - st[0] > ZEEK_INACTIVITY
                    or (t > st[2] and not peer_seen)
                    or partial
                ):
                    out[i] = began = True
                    st = None
            if st is None:
                # Zeek makes the sender of a first SYN-ACK the responder.
                orig = 1 - di if flags & (SYN | ACK) == SYN | ACK else di
                st = timers[flow] = [t, _NEVER, _NEVER, orig, 0, 0, _NEVER, 0]
            seen, closed = int(st[4]), int(st[5])
            me, peer = 1 << di, 1 << (1 - di)
            if di == st[3] and not seen & me and flags & (SYN | ACK) == SYN:
                st[2] = t + ZEEK_ATTEMPT_DELAY
            if flags & RST or (flags & FIN and (closed & peer or not seen & peer)):
                # The close is complete: Zeek cancels the other timers.
                st[1] = min(st[1], t + ZEEK_CLOSE_DELAY)
                st[6] = _NEVER
            elif flags & FIN and not seen & me and not closed & me:
                # A side's first packet is its FIN (ConnectionClosed with the
                # endpoint's previous state INACTIVE): give the peer
                # tcp_partial_close_delay to close too.
                st[6] = t + ZEEK_PARTIAL_CLOSE_DELAY
            if flags & (FIN | RST):
                closed |= me
            if flags & RST:
                st[7] = 1
            st[0], st[4], st[5] = t, seen | me, closed
            if began or syns[i]:
                c = 0
            count[flow] = c + (1 if flags & (FIN | RST) else 0)
        for flow, c in count.items():
            self.flow_fr[flow] = c
        return out

    def _update(self, conn: I64, d: I64, p: TcpColumns, fl: I64) -> None:
        """Fold one batch (packets grouped by connection, capture order
        within) into the per-direction columns, one concern at a time."""
        b = _Batch(conn, d, p, fl, self.s)
        rel, prev_same, max_other, _retrans, newb = self._sequence(b)
        self._handshake(b)
        self._fins(b, rel, newb)
        odd_rst = self._resets(b, rel, prev_same)
        self._gaps(b, rel, prev_same, max_other)
        self._anomalies(conn, d, b.slot, b.other, p, fl, rel, max_other, odd_rst)
        # Zeek's T/t: a payload segment that ends at or below the highest end
        # its sender had sent (TCPSessionAdapter update_last_seq, DidRxmit),
        # i.e. one without any new byte; ``retrans`` (starts below it) is
        # the JSON count.
        zeek_rxmit = (p.plen > 0) & (newb == 0)
        self._history(b, zeek_rxmit)

    def _sequence(self, b: _Batch) -> tuple[I64, I64, I64, Mask, I64]:
        """Relative sequence numbers (RFC 9293 §3.4: 0 is the ISN), unwrapped
        past 4 GiB; per packet the highest end its sender and its peer had
        sent before it; retransmissions and new bytes."""
        s, p, fl, slot, n = self.s, b.p, b.fl, b.slot, b.n
        q = b.firsts(None)
        q = q[s.base[slot[q]] < 0]
        s.base[slot[q]] = (p.seq[q] - np.where(fl[q] & SYN, 0, 1)) & M32
        rel = self._unwrap(b, (p.seq - s.base[slot]) & M32)
        end = rel + p.plen + ((fl & SYN) != 0) + ((fl & FIN) != 0)
        # Highest sequence end sent so far, per direction, at every packet
        # (a running maximum per connection: each connection's values are
        # offset by its index times BIG, above any end).
        gb = b.g * _BIG
        mk = []
        d0 = b.d == 0
        for k in (0, 1):
            inc = np.maximum.accumulate(gb + np.where(d0 if k == 0 else ~d0, end, -1) + 1)
            exc = np.empty(n, dtype=np.int64)
            exc[0] = -1
            np.subtract(inc[:-1], gb[:-1] + 1, out=exc[1:])
            exc[b.cpos0] = -1
            mk.append(np.maximum(exc, s.maxend[2 * b.conn + k]))
        prev_same = np.where(d0, mk[0], mk[1])
        max_other = np.where(d0, mk[1], mk[0])
        # A segment below what its sender already sent is a retransmission;
        # only its new bytes (if any) count.
        plen = p.plen
        retrans = (plen > 0) & (rel < prev_same)
        newb = np.clip(rel + plen - np.maximum(rel, prev_same), 0, plen)
        np.add.at(s.pkts, slot, 1)
        np.add.at(s.bytes, slot, newb)
        np.add.at(s.retrans, slot, retrans.astype(np.int64))
        np.maximum.at(s.maxend, slot, end)
        return rel, prev_same, max_other, retrans, newb

    def _unwrap(self, b: _Batch, rel32: I64) -> I64:
        """64-bit relative numbers: each packet is placed within 2 GiB of
        its direction's previous packet, so a direction's stream can pass
        4 GiB (as Zeek's wraps count, TCPSessionAdapter::get_relative_seq)."""
        s = self.s
        rows = 2 * self.nconns
        if (
            (not rel32.size or int(rel32.max()) < HALF)
            and int(s.last_rel[:rows].max(initial=-1)) < HALF
            and not s.epoch[:rows].any()
        ):
            # Every number below 2 GiB, before and now, and no wrap so far:
            # no step can cross 4 GiB either way (the distance between two
            # numbers is their plain difference), so nothing moves.
            for k in (0, 1):
                q = b.dirpos[k]
                if q.size:
                    sl = b.slot[q]
                    last = q[np.flatnonzero(np.r_[sl[1:] != sl[:-1], True])]
                    s.last_rel[b.slot[last]] = rel32[last]
            return rel32
        out = rel32.copy()
        for k in (0, 1):
            q = b.dirpos[k]
            if not q.size:
                continue
            r = rel32[q]
            sl = b.slot[q]
            first = np.r_[True, sl[1:] != sl[:-1]]
            prev = np.r_[0, r[:-1]]
            prev[first] = s.last_rel[sl[first]]
            known = ~first | (s.last_rel[sl] >= 0)
            step = ((r - prev + HALF) & M32) - HALF  # signed 32-bit distance
            wrap = np.where(known & (step > 0) & (r < prev), 1, 0)
            wrap -= np.where(known & (step < 0) & (r > prev), 1, 0)
            # Wraps counted per direction of each connection, carried over batches.
            cum = np.cumsum(wrap)
            starts = np.flatnonzero(first)
            base_cum = np.repeat(cum[starts] - wrap[starts], np.diff(np.r_[starts, q.size]))
            epoch = s.epoch[sl] + cum - base_cum
            out[q] = r + (epoch << 32)
            last = np.r_[starts[1:] - 1, q.size - 1]
            s.last_rel[sl[last]] = r[last]
            s.epoch[sl[last]] = epoch[last]
        return out

    def _handshake(self, b: _Batch) -> None:
        """First SYN, SYN-ACK and the ACK of the SYN-ACK (RFC 9293 §3.5)."""
        s, p, fl, slot, other = self.s, b.p, b.fl, b.slot, b.other
        ctl = fl & (SYN | ACK | RST | FIN)
        psyn = ctl == SYN
        q = b.set_first(psyn, "syn_frame")
        s.syn_frame[slot[q]] = p.frame[q]
        s.syn_seq[slot[q]] = p.seq[q]
        np.add.at(s.syn_count, slot[psyn], 1)
        q = b.set_first(ctl == SYN | ACK, "sa_frame")
        s.sa_frame[slot[q]] = p.frame[q]
        s.sa_seq[slot[q]] = p.seq[q]
        hs = (
            ((fl & (ACK | SYN | RST)) == ACK)
            & (s.sa_frame[other] < p.frame)
            & (((p.ack - s.sa_seq[other] - 1) & M32) < HALF)
        )
        q = b.set_first(hs, "hs_frame")
        s.hs_frame[slot[q]] = p.frame[q]

    def _fins(self, b: _Batch, rel: I64, newb: I64) -> None:
        """Each side's first FIN (with ACK: a bare FIN is dropped by the
        receiver, §3.6), its copies, the peer's segment that acknowledged it,
        and the payload sent while the peer had closed (half-close)."""
        s, p, fl, slot, other, conn, d = self.s, b.p, b.fl, b.slot, b.other, b.conn, b.d
        frame, plen = p.frame, p.plen
        fm = (fl & (SYN | ACK | RST | FIN)) == FIN | ACK
        q = b.set_first(fm, "fin_frame")
        ss = slot[q]
        s.fin_frame[ss] = frame[q]
        s.fin_seq[ss] = p.seq[q]
        s.fin_ack[ss] = p.ack[q]
        s.fin_plen[ss] = plen[q]
        s.fin_pos[ss] = rel[q] + plen[q]
        s.fin_ts[ss] = p.ts[q]
        allf = np.flatnonzero(fm)
        same = rel[allf] + plen[allf] == s.fin_pos[slot[allf]]
        np.add.at(s.fin_count, slot[allf[same]], 1)
        ch = allf[~same]
        self.anomalies.add(conn[ch], frame[ch], A_FIN_SEQ, d[ch])
        # The first segment from the peer that acknowledges the FIN.
        peer_closed = s.fin_frame[other] < frame  # (the peer's FIN came before)
        am = (
            ((fl & (ACK | RST | SYN)) == ACK)
            & peer_closed
            & (((p.ack - s.fin_seq[other] - s.fin_plen[other] - 1) & M32) < HALF)
        )
        q = b.set_first(am, "fack_frame", other)
        t = other[q]
        s.fack_frame[t] = frame[q]
        s.fack_seq[t] = p.seq[q]
        s.fack_ack[t] = p.ack[q]
        s.fack_flags[t] = fl[q]
        s.fack_plen[t] = plen[q]
        s.fack_ts[t] = p.ts[q]
        np.add.at(s.hc_bytes, slot[peer_closed], newb[peer_closed])
        q = b.set_first((fl & FIN) != 0, "anyfin_frame")
        s.anyfin_frame[slot[q]] = frame[q]

    def _resets(self, b: _Batch, rel: I64, prev_same: I64) -> Mask:
        """RSTs: the first one at its sender's next number is the reset; one
        from a side that has sent before, not at its next sequence number, is
        an anomaly (stacks reset at SND.NXT, an off-path attacker guesses:
        RFC 5961 §3), returned."""
        s, p, fl, slot = self.s, b.p, b.fl, b.slot
        frame = p.frame
        rm = (fl & RST) != 0
        odd_rst: Mask = rm & (prev_same >= 0) & (rel != prev_same)
        q = b.set_first(rm & ~odd_rst, "rst_first")
        s.rst_first[slot[q]] = frame[q]
        np.maximum.at(s.rst_last, slot[rm], frame[rm])
        np.add.at(s.rst_count, slot[rm], 1)
        q = b.set_first(rm, "anyrst_frame")
        s.anyrst_frame[slot[q]] = frame[q]
        self.rsts.add(b.conn[rm], frame[rm], 0, b.d[rm])
        return odd_rst

    def _gaps(self, b: _Batch, rel: I64, prev_same: I64, max_other: I64) -> None:
        """Zeek's ``G``/``g``: content its reassembler never got.  Zeek trims a
        side's reassembly buffer to each acknowledgment from the peer (capped
        at the side's FIN); acknowledged bytes it never saw are a gap
        (TCP_Reassembler::AckReceived, Undelivered, Gap), a letter only while
        both sides are established or closed cleanly (no RST yet: Zeek updates
        the state machine before it takes the ACK).  Here a gap is an
        acknowledgment beyond everything the side had sent, or beyond the
        start of a hole in its sequence space (a segment starting past the
        highest end sent before) that no later segment has covered yet.
        Holes left open at the end of a batch are carried to the next."""
        s, p, fl, frame, n = self.s, b.p, b.fl, b.p.frame, b.n
        c2 = 2 * b.conn
        # Per connection of the batch, the frame from which it is established
        # with o as the originator (o's SYN before, or its ACK of the SYN-ACK
        # at, and the peer's SYN-ACK at or before), either way, and its first
        # RST: then one comparison per packet each.
        u2 = 2 * b.conn[b.cpos0]
        est_from = [
            np.maximum(
                s.sa_frame[u2 + 1 - o], np.minimum(s.syn_frame[u2 + o] + 1, s.hs_frame[u2 + o])
            )
            for o in (0, 1)
        ]
        rst_at = np.minimum(s.anyrst_frame[u2], s.anyrst_frame[u2 + 1])
        clean = (frame >= np.minimum(*est_from)[b.g]) & (frame < rst_at[b.g])
        gb = b.g * _BIG
        carried = np.zeros(self.hole_slot.size, dtype=bool)
        uc = first = np.zeros(0, dtype=np.int64)
        if self.hole_slot.size:  # holes from earlier batches, by batch group
            uc, first = np.unique(b.conn, return_index=True)
            hc = self.hole_slot >> 1
            at = np.minimum(np.searchsorted(uc, hc), uc.size - 1)
            carried = uc[at] == hc
        keep_slot, keep_start = [self.hole_slot[~carried]], [self.hole_start[~carried]]
        for k in (0, 1):  # the side whose data may be missing
            xs = c2 + k
            mine = b.d == k
            # The point of k's sequence space each of the peer's ACKs reaches
            # (64-bit: placed within 2 GiB of what k had sent), capped at k's FIN.
            acker = ~mine & ((fl & (ACK | RST)) == ACK) & (max_other >= 0)
            mo = np.maximum(max_other, 0)
            a = mo + ((((p.ack - s.base[xs]) & M32) - (mo & M32) + HALF) & M32) - HALF
            a = np.where(s.fin_frame[xs] < frame, np.minimum(a, s.fin_pos[xs]), a)
            av = np.where(acker, a, -1)
            ackmax = s.ackmax[xs]  # (before the batch)
            acked = np.maximum(np.maximum.accumulate(gb + av + 1) - gb - 1, ackmax)
            before = np.r_[-1, acked[:-1]]
            before[b.cpos0] = -1
            before = np.maximum(before, ackmax)
            ev = acker & (a > np.maximum(max_other, before))
            # Holes: [start, rel) where a segment starts past what was sent
            # and acknowledged before it; searched from the next packet on.
            hstart = np.maximum(prev_same, acked)
            hq = np.flatnonzero(mine & ((fl & RST) == 0) & (prev_same >= 0) & (rel > hstart))
            h_from, h_g, h_start = hq + 1, b.g[hq], hstart[hq]
            ck = carried & ((self.hole_slot & 1) == k)
            if ck.any():
                g = b.g[first[np.searchsorted(uc, self.hole_slot[ck] >> 1)]]
                h_from = np.r_[h_from, b.cpos0[g]]
                h_g = np.r_[h_g, g]
                h_start = np.r_[h_start, self.hole_start[ck]]
            if h_from.size:
                # First acknowledgment past the hole's start (acked rises
                # monotonically within a group, groups offset by BIG).
                j = np.searchsorted(gb + acked, h_g * _BIG + h_start, side="right")
                found = j < n
                found[found] = b.g[j[found]] == h_g[found]
                j = np.where(found, j, n)
                # First later segment of k covering the start (a fill is a
                # segment that starts below what was already sent).
                cq = np.flatnonzero(mine & (p.plen > 0) & ((fl & RST) == 0) & (rel < prev_same))
                fill = np.full(h_from.size, n, dtype=np.int64)
                if cq.size:
                    cg = b.g[cq]
                    lo = np.searchsorted(cg, h_g, side="left")
                    cnt = np.searchsorted(cg, h_g, side="right") - lo
                    hi = np.repeat(np.arange(h_from.size), cnt)
                    ci = cq[np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())]
                    ok = (ci >= h_from[hi]) & (rel[ci] <= h_start[hi])
                    ok &= rel[ci] + p.plen[ci] > h_start[hi]
                    np.minimum.at(fill, hi[ok], ci[ok])
                gap = found & (j < fill)
                ev[j[gap]] = True
                still = ~found & (fill == n)
                keep_slot.append(2 * b.conn[b.cpos0[h_g[still]]] + k)
                keep_start.append(h_start[still])
            s.ackmax[c2[b.cend] + k] = acked[b.cend]
            ev &= clean
            q = np.flatnonzero(ev)
            if q.size:
                none = np.zeros(0, dtype=np.int64)
                other_d = np.full(n, k, dtype=np.int64)
                self._letters(b.conn, other_d, xs, frame, {H_G: (q, none) if k == 0 else (none, q)})
        self.hole_slot = np.concatenate(keep_slot)
        self.hole_start = np.concatenate(keep_start)

    def _anomalies(
        self,
        conn: I64,
        d: I64,
        slot: I64,
        other: I64,
        p: TcpColumns,
        fl: I64,
        rel: I64,
        max_other: I64,
        odd_rst: Mask,
    ) -> None:
        s, add = self.s, self.anomalies.add
        xmas = (fl & (FIN | PSH | URG)) == FIN | PSH | URG
        masks = (
            # Every FIN without ACK, whatever else it carries (XMAS, SYN+FIN...).
            (A_FIN_NO_ACK, (fl & (FIN | ACK)) == FIN),
            (A_NULL, (fl & 0x3F) == 0),
            (A_XMAS, xmas),
            (A_SYN_FIN, (fl & (SYN | FIN)) == SYN | FIN),
            # New data beyond the sender's own FIN.
            (
                A_DATA_AFTER_FIN,
                (p.plen > 0)
                & ((fl & RST) == 0)
                & (s.fin_frame[slot] < p.frame)
                & (rel + p.plen > s.fin_pos[slot]),
            ),
        )
        for code, m in masks:
            q = np.flatnonzero(m)
            add(conn[q], p.frame[q], code, d[q])
        # An ACK for sequence numbers the peer has not sent (only checkable
        # when the peer's ISN was captured before it: a SYN later in the
        # batch must not count, as it would not in a later batch).
        known = (s.syn_frame[other] < p.frame) | (s.sa_frame[other] < p.frame)
        ahead = ((p.ack - s.base[other]) & M32) - max_other
        m = ((fl & (ACK | RST)) == ACK) & known & (max_other >= 0) & (ahead > 0) & (ahead < HALF)
        q = np.flatnonzero(m)
        add(conn[q], p.frame[q], A_ACK_UNSENT, d[q])
        q = np.flatnonzero(odd_rst)
        add(conn[q], p.frame[q], A_RST_SEQ, d[q])
        # A SYN once the handshake is done that is not the original SYN again:
        # a blind SYN, or a peer that lost its state (RFC 5961 §4: challenge ACK).
        done = (s.hs_frame[slot] < p.frame) | (s.hs_frame[other] < p.frame)
        m = (
            ((fl & (SYN | RST)) == SYN)
            & done
            & (p.seq != s.syn_seq[slot])
            & (p.seq != s.sa_seq[slot])
        )
        q = np.flatnonzero(m)
        add(conn[q], p.frame[q], A_SYN_IN_CONN, d[q])

    def _history(self, b: _Batch, retrans: Mask) -> None:
        p, fl = b.p, b.fl
        syn, fin, rst, ack = (fl & SYN) != 0, (fl & FIN) != 0, (fl & RST) != 0, (fl & ACK) != 0
        masks = {
            H_Q: syn & (fin | rst),
            H_I: fin & rst & ~syn,
            H_S: syn & ~ack,
            H_H: syn & ack,
            H_A: ack & ~syn & ~fin & ~rst & (p.plen == 0),
            H_D: p.plen > 0,
            H_T: retrans,
            H_W: (p.window == 0) & ~rst,
            H_F: fin,
            H_R: rst,
        }
        self._letters(b.conn, b.d, b.slot, p.frame, {k: b.split(m) for k, m in masks.items()})

    def _letters(
        self,
        conn: I64,
        d: I64,
        slot: I64,
        frame: I64,
        letters: dict[int, tuple[I64, I64]],
    ) -> None:
        """History events for each letter's packets (their positions per
        direction, in batch order, a connection's together): once per
        direction, or at the 1st, 10th, 100th ... occurrence for
        :data:`LOG_LETTERS`.  ``slot`` is the row each packet counts in."""
        for letter, per_dir in letters.items():
            count = self.hist_count[:, letter]
            for q in per_dir:
                if not q.size:
                    continue
                # One run of positions per connection (one row: ``slot``).
                c = conn[q]
                starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
                sizes = np.diff(np.r_[starts, q.size])
                rows = slot[q[starts]]
                if letter in LOG_LETTERS:
                    # Each packet's occurrence number: the row's count before
                    # the batch plus its rank in the run, plus one.
                    nth = np.repeat(count[rows] - starts, sizes) + np.arange(1, q.size + 1)
                    e = q[member(nth, _POW10)]
                else:
                    e = q[starts[count[rows] == 0]]
                self.history.add(conn[e], frame[e], letter, d[e])
                count[rows] += sizes  # (rows differ: a plain scatter)


_POW10 = np.array([10**k for k in range(12)], dtype=np.int64)
