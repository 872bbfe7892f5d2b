"""What every ladder shows, decided once: sides, labels, retransmissions, elision.

The text ladder (``ladder.py``) and the SVG ladder (``svg.py``) draw the same
rows: a ``Trace``'s events in order, with long runs of ordinary segments
replaced by one ``Gap``.  The elision rule is shared so both views agree on
what a user may never miss: the handshake (RFC 9293 §3.5), the release
(§3.6) with the segments that acknowledge each FIN, anything carrying SYN,
FIN or RST, and anything lost or dropped outside the data transfer (inside
it, a folded run counts its lost, dropped and retransmitted segments).  Retransmissions are recognised by
sequence arithmetic (RFC 9293 §3.4; comparisons modulo 2**32).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tcp import seqnum
from ..trace import DELIVERED, LOST, SegmentEvent, StateEvent, Trace
from ..wire.segment import ACK, FIN, RST, SYN, format_flags

# Below this many segment rows nothing is elided.
DEFAULT_MAX_ROWS = 60
# Ordinary segments kept on each side of a gap, tried from most to fewest.
_CONTEXTS = (3, 2, 1, 0)


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of ordinary segments left out of the drawing."""

    count: int
    payload_bytes: int
    t_first: float
    t_last: float
    # (src, dst, segments) for each direction present in the run.
    directions: tuple[tuple[str, str, int], ...]
    lost: int = 0  # on the link
    dropped: int = 0  # by the receiver
    retransmitted: int = 0

    def describe(self, *, ascii: bool = False) -> str:
        """``… 1,234 segments (A→B 1,200, B→A 34; 1,638,400 bytes) …``, with
        ``; 12 lost, 13 retransmitted`` when some were."""
        dots, arrow = ("...", "->") if ascii else ("…", "→")
        noun = "segment" if self.count == 1 else "segments"
        dirs = ", ".join(f"{s}{arrow}{d} {n:,}" for s, d, n in self.directions)
        fates = ", ".join(
            f"{n:,} {what}"
            for n, what in (
                (self.lost, "lost"),
                (self.dropped, "dropped"),
                (self.retransmitted, "retransmitted"),
            )
            if n
        )
        extra = f"; {fates}" if fates else ""
        return f"{dots} {self.count:,} {noun} ({dirs}; {self.payload_bytes:,} bytes{extra}) {dots}"


Row = SegmentEvent | StateEvent | Gap


def sides(trace: Trace) -> tuple[str, str]:
    """(left, right) endpoint names: A on the left when there is an A."""
    names = list(trace.endpoints)
    for ev in trace.segments():
        for n in (ev.src, ev.dst):
            if n not in names:
                names.append(n)
    if "A" in names:
        names.remove("A")
        names.insert(0, "A")
    while len(names) < 2:
        names.append("?" if not names else f"{names[0]}'")
    return names[0], names[1]


def hostport(addr: str, port: int) -> str:
    """``192.168.1.100:51234``, ``[2001:db8::1]:51234`` (RFC 3986 brackets)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def count(n: int, word: str, plural: str | None = None) -> str:
    """``1 connection``, ``12,345 connections``: thousands separated, the
    noun agreeing."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def endpoint_text(trace: Trace, name: str) -> str:
    """``A 192.168.1.100:51234`` (IPv6 addresses in brackets)."""
    ep = trace.endpoints.get(name)
    if ep is None:
        return name
    return f"{name} {hostport(ep.addr, ep.port)}"


def numbers(trace: Trace, ev: SegmentEvent, relative: bool) -> tuple[int, int]:
    """(seq, ack) as shown: relative to the ISNs, or raw; ack 0 without ACK."""
    if relative:
        return trace.relative(ev)
    seg = ev.segment
    return seg.seq, (seg.ack if seg.flags & ACK else 0)


def segment_label(
    trace: Trace, ev: SegmentEvent, relative: bool, retransmission: bool = False
) -> str:
    """``FIN,ACK seq=50 ack=248 len=0``; the ack is left out when ACK is off."""
    seq, ack = numbers(trace, ev, relative)
    seg = ev.segment
    parts = [format_flags(seg.flags), f"seq={seq}"]
    if seg.flags & ACK:
        parts.append(f"ack={ack}")
    parts.append(f"len={len(seg.payload)}")
    if retransmission:
        parts.append("(retx)")
    return " ".join(parts)


def retransmissions(trace: Trace) -> set[int]:
    """Indices (into ``trace.events``) of segments that resend sequence space
    their sender had already sent: a SYN or FIN at the same number, or data
    ending at or before the highest end sent so far.  Keep-alive probes
    (one old byte) count too, which is what they are on the wire."""
    sent_end: dict[str, int] = {}
    out: set[int] = set()
    for i, ev in enumerate(trace.events):
        if not isinstance(ev, SegmentEvent):
            continue
        seg = ev.segment
        if seg.flags & RST or seg.seg_len == 0:
            continue
        end = seqnum.add(seg.seq, seg.seg_len)
        prev = sent_end.get(ev.src)
        if prev is not None and seqnum.le(end, prev):
            out.add(i)
        else:
            sent_end[ev.src] = end
    return out


def protected(trace: Trace) -> set[int]:
    """Indices of segments no ladder may elide.

    SYN, FIN, RST; the first segment each side sends after the SYNs (the
    handshake's third ACK); the first segment that acknowledges each FIN,
    including each retransmitted one; and lost or dropped segments except in
    the data transfer (after both sides have sent past the handshake, before
    the first FIN or RST), where a long lossy run folds into one row that
    counts them.
    """
    keep: set[int] = set()
    saw_syn = False
    after_syn: set[str] = set()
    releasing = False
    # Receiver -> the ack number that acknowledges the FIN it is waiting on.
    fin_ack_due: dict[str, int] = {}
    for i, ev in enumerate(trace.events):
        if not isinstance(ev, SegmentEvent):
            continue
        seg = ev.segment
        if seg.flags & (FIN | RST):
            releasing = True
        in_transfer = len(after_syn) == 2 and not releasing
        if seg.flags & (SYN | FIN | RST) or (ev.fate != DELIVERED and not in_transfer):
            keep.add(i)
        if seg.flags & SYN:
            saw_syn = True
        elif saw_syn and ev.src not in after_syn:
            after_syn.add(ev.src)
            keep.add(i)
        if seg.flags & ACK and fin_ack_due.get(ev.src) == seg.ack:
            keep.add(i)
            del fin_ack_due[ev.src]
        if seg.flags & FIN and ev.fate == DELIVERED:
            fin_ack_due[ev.dst] = seqnum.add(seg.seq, seg.seg_len)
    return keep


def layout_rows(trace: Trace, *, elide: bool = True, max_rows: int = DEFAULT_MAX_ROWS) -> list[Row]:
    """The trace's events in order, with long ordinary runs folded into Gaps.

    Nothing is folded while the trace has at most ``max_rows`` segments.
    Otherwise each run of unprotected segments keeps a few on either side of
    its gap, as many as still fit in ``max_rows``; protected segments and
    state changes are always kept, even if that exceeds ``max_rows``.
    """
    events = trace.events
    n_segments = sum(1 for e in events if isinstance(e, SegmentEvent))
    if not elide or n_segments <= max_rows:
        return list(events)
    keep = protected(trace)
    retx = retransmissions(trace)
    runs = _ordinary_runs(events, keep)
    context = 0
    for ctx in _CONTEXTS:
        shown = n_segments - sum(len(r) - 2 * ctx for r in runs if len(r) > 2 * ctx + 1)
        if shown <= max_rows:
            context = ctx
            break
    folded: dict[int, tuple[int, Gap]] = {}
    for run in runs:
        if len(run) <= 2 * context + 1:
            continue
        hidden = run[context : len(run) - context]
        folded[hidden[0]] = (hidden[-1], _gap(trace, hidden, retx))
    rows: list[Row] = []
    i = 0
    while i < len(events):
        if i in folded:
            last, gap = folded[i]
            rows.append(gap)
            i = last + 1
            continue
        rows.append(events[i])
        i += 1
    return rows


def _ordinary_runs(events: list[SegmentEvent | StateEvent], keep: set[int]) -> list[list[int]]:
    """Maximal runs of consecutive unprotected segments (state events and
    protected segments end a run)."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, ev in enumerate(events):
        if isinstance(ev, SegmentEvent) and i not in keep:
            current.append(i)
            continue
        if current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _gap(trace: Trace, indices: list[int], retx: set[int]) -> Gap:
    segs = [trace.events[i] for i in indices]
    counts: dict[tuple[str, str], int] = {}
    payload = lost = dropped = 0
    for ev in segs:
        assert isinstance(ev, SegmentEvent)
        counts[(ev.src, ev.dst)] = counts.get((ev.src, ev.dst), 0) + 1
        payload += len(ev.segment.payload)
        if ev.fate == LOST:
            lost += 1
        elif ev.fate != DELIVERED:
            dropped += 1
    return Gap(
        count=len(segs),
        payload_bytes=payload,
        t_first=segs[0].t,
        t_last=segs[-1].t,
        directions=tuple((s, d, n) for (s, d), n in counts.items()),
        lost=lost,
        dropped=dropped,
        retransmitted=sum(1 for i in indices if i in retx),
    )


def format_ms(t: float) -> str:
    """Seconds -> ``1,234.567`` milliseconds."""
    return f"{t * 1000:,.3f}"
