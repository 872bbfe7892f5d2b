"""Running an analysis over a capture file, and rebuilding one connection
as a :class:`~finwait.trace.Trace` for the explanation and the ladders.

A corrupt or truncated file stops the reading at the bad byte: the
connections seen before it are still classified and the error is kept on the
result (``error``, ``error_offset``), so a caller reports both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..capture.decode import NOTES, TcpColumns, Tunnels, decode, member
from ..capture.reader import CaptureError, EmptyCaptureError, iter_batches
from .classify import Analysis, addr_text, classify
from .tracker import Tracker

if TYPE_CHECKING:  # (imported on use: the engine's modules, not needed to analyse)
    from pathlib import Path

    from ..trace import Trace
    from ..wire.segment import Segment

Progress = Callable[[int], None]
Emit = Callable[[Analysis], None]
STREAM_CHUNK = 4 << 20


def analyze_file(
    path: str | Path,
    progress: Progress | None = None,
    chunk_size: int = 8 << 20,
    zeek_timeouts: bool = False,
    verify_checksums: bool = False,
    emit: Emit | None = None,
    follow: bool = False,
) -> Analysis:
    """Classify every TCP connection in ``path``.  ``progress`` is called
    with the number of bytes read so far; ``zeek_timeouts`` splits
    connections where Zeek's timers would; ``verify_checksums`` drops
    segments with a bad TCP checksum (history ``C``/``c``), as Zeek does.

    With ``emit``, the analysis streams: connections are classified and
    handed to ``emit`` in pieces as they are done with (see
    :meth:`Tracker.retire`; each piece's ``ids`` are its connection ids,
    pieces come in any order), so memory holds only the open ones; the
    result then has the counts and ``n`` (every connection) but no rows.
    With ``follow`` too (a live pipe), packets are analysed as they arrive
    and each connection is handed over as soon as it is done with."""
    tracker = Tracker(zeek_timeouts)
    if emit is not None:  # smaller batches: retired sooner, smaller temporaries
        chunk_size = min(chunk_size, STREAM_CHUNK)
    tunnels = Tunnels()
    drops: Counter[str] = Counter()
    records = tunnelled = 0
    error: CaptureError | None = None
    try:
        for batch in iter_batches(path, chunk_size, follow=follow and emit is not None):
            records += len(batch)
            tracker.add(decode(batch, drops, tunnels, verify_checksums))
            if emit is not None:
                done = tracker.retire(share=0.0 if follow else None)
                if done is not None:
                    tunnelled += _emit(emit, _piece(done, path, tunnels))
            if progress is not None:
                progress(batch.file_offset + int(batch.buf.size))
    except CaptureError as exc:
        error = exc
    if emit is None:
        res = classify(tracker, str(path))
    else:
        if tracker.nconns:
            tunnelled += _emit(emit, _piece(tracker, path, tunnels))
        res = Analysis(str(path), tcp_packets=tracker.packets, n=tracker.next_id)
        res.cols = {"tunnel": np.zeros(0, dtype=np.int64)}
        res.tunnelled = tunnelled
    res.records_read = records
    res.notes = Counter({k: drops.pop(k) for k in NOTES if k in drops})
    res.drops = drops
    res.tunnels = tunnels.stacks
    if error is not None:
        res.error = str(error)
        res.error_offset = None if isinstance(error, EmptyCaptureError) else error.offset
        res.empty = isinstance(error, EmptyCaptureError)
    return res


def _emit(emit: Emit, piece: Analysis) -> int:
    """Hand ``piece`` over; its count of tunnelled connections."""
    emit(piece)
    return piece.tunnelled_connections()


def _piece(tr: Tracker, path: str | Path, tunnels: Tunnels) -> Analysis:
    res = classify(tr, str(path))
    res.ids = tr.row_id[: tr.nconns] + 1
    res.tunnels = tunnels.stacks
    return res


def connection_trace(path: str | Path, analysis: Analysis, cid: int) -> Trace:
    """The packets of connection ``cid`` (1-based) as a Trace: endpoints
    ``client`` and ``server`` with their ISNs where the SYNs were seen.
    Times are seconds since the connection's first packet.  Payload bytes
    are not kept: segments carry zero bytes of the right length."""
    return connection_traces(path, analysis, [cid])[cid]


def connection_traces(
    path: str | Path, analysis: Analysis, cids: Iterable[int], limit: int | None = None
) -> dict[int, Trace]:
    """:func:`connection_trace` for several connections in one pass over the
    file; with ``limit``, each Trace keeps its first ``limit`` segments."""
    from ..trace import Trace

    recs: dict[int, dict[str, Any]] = {}
    for cid in cids:
        if not 1 <= cid <= analysis.n:
            raise KeyError(f"no connection {cid} (the capture has {analysis.n})")
        recs[cid] = analysis.record(cid)
    if not recs:
        return {}
    # 4-tuple (either direction) -> the connections on it (several: port reuse).
    by_tuple: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
    traces: dict[int, Trace] = {}
    for cid, rec in recs.items():
        cli, srv = rec["client"], rec["server"]
        a = (*_words(cli["addr"]), cli["port"])
        b = (*_words(srv["addr"]), srv["port"])
        by_tuple.setdefault((a, b), []).append(cid)
        by_tuple.setdefault((b, a), []).append(cid)
        tr = traces[cid] = Trace()
        tr.add_endpoint("client", cli["addr"], cli["port"])
        tr.add_endpoint("server", srv["addr"], srv["port"])
    ports = np.array(sorted({k[0][4] for k in by_tuple}), dtype=np.int64)
    first = min(r["first_frame"] for r in recs.values())
    last = max(r["last_frame"] for r in recs.values())
    isn: dict[int, dict[str, int]] = {cid: {} for cid in recs}
    tunnels = Tunnels()
    count = dict.fromkeys(recs, 0)
    try:
        for batch in iter_batches(path):
            if int(batch.frame[-1]) < first:
                continue
            if int(batch.frame[0]) > last:
                break
            cols = decode(batch, Counter(), tunnels)
            # Cheap filter first (frame range, both ports wanted), exact match after.
            m = (cols.frame >= first) & (cols.frame <= last)
            m &= member(cols.sport, ports) & member(cols.dport, ports)
            for k in np.flatnonzero(m).tolist():
                src = (*cols.src[k].tolist(), int(cols.sport[k]))
                dst = (*cols.dst[k].tolist(), int(cols.dport[k]))
                frame = int(cols.frame[k])
                for cid in by_tuple.get((src, dst), ()):
                    rec = recs[cid]
                    if not rec["first_frame"] <= frame <= rec["last_frame"] or src == dst:
                        continue
                    if limit is not None and count[cid] >= limit:
                        continue
                    seg = _segment(cols, k)
                    cli = rec["client"]
                    name = (
                        "client" if (seg.src, seg.sport) == (cli["addr"], cli["port"]) else "server"
                    )
                    if seg.flags & 0x02 and name not in isn[cid]:
                        isn[cid][name] = seg.seq
                    # (start is rounded to the µs: never let that make a time negative)
                    traces[cid].add_segment(max(0.0, float(cols.ts[k]) - rec["start"]), seg)
                    count[cid] += 1
    except CaptureError:
        pass  # the analysis already reported it; keep what was read
    for cid, found in isn.items():
        for name, value in found.items():
            traces[cid].endpoints[name].isn = value
    return traces


def _words(addr: str) -> tuple[int, int, int, int]:
    import ipaddress

    ip = ipaddress.ip_address(addr)
    v = int(ip) if ip.version == 6 else (0xFFFF << 32) | int(ip)
    return ((v >> 96) & 0xFFFFFFFF, (v >> 64) & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF, v & 0xFFFFFFFF)


def _segment(cols: TcpColumns, k: int) -> Segment:
    from ..wire.segment import Segment

    return Segment(
        src=addr_text(cols.src[k].tolist()),
        dst=addr_text(cols.dst[k].tolist()),
        sport=int(cols.sport[k]),
        dport=int(cols.dport[k]),
        seq=int(cols.seq[k]),
        ack=int(cols.ack[k]),
        flags=int(cols.flags[k]),
        window=int(cols.window[k]),
        payload=bytes(int(cols.plen[k])),
    )
