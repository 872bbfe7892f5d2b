"""Reassembly against a model: a dict of byte positions, first copy kept.

Segments land anywhere in a window ahead of RCV.NXT (across the 2**32 wrap
too), overlapping, touching or apart; then the gap fills.  The queue must
hold exactly the model's bytes as disjoint, sorted, non-touching blocks,
refuse only a segment that would add a block to a full queue, and hand
back the stream in order."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from finwait.tcp import seqnum
from finwait.tcp.buffers import Reassembly

WINDOW = 2000

segments = st.lists(st.tuples(st.integers(1, WINDOW), st.integers(1, 300)), min_size=1, max_size=60)


def _blocks(q: Reassembly, rcv_nxt: int) -> list[tuple[int, int]]:
    return [(seqnum.sub(s, rcv_nxt), seqnum.sub(s, rcv_nxt) + len(d)) for s, d in q.blocks]


@settings(max_examples=300, deadline=None)
@given(
    segs=segments,
    rcv_nxt=st.sampled_from([0, 1000, seqnum.MASK - 700, seqnum.MASK]),
    limit=st.integers(1, 8),
    fill=st.integers(1, WINDOW + 300),
)
def test_reassembly_matches_a_byte_model(
    segs: list[tuple[int, int]], rcv_nxt: int, limit: int, fill: int
) -> None:
    q = Reassembly(limit)
    model: dict[int, int] = {}  # offset from RCV.NXT -> byte
    for n, (off, length) in enumerate(segs):
        data = bytes((n * 7 + k) & 0xFF for k in range(length))
        before = _blocks(q, rcv_nxt)
        touches = any(s <= off + length and off <= e for s, e in before)
        ok = q.add(seqnum.add(rcv_nxt, off), data, rcv_nxt)
        assert ok == (touches or len(before) < limit)
        if ok:
            for k, b in enumerate(data):
                model.setdefault(off + k, b)
        blocks = _blocks(q, rcv_nxt)
        assert len(blocks) <= limit
        assert all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(blocks))
        held = {
            s + k: b
            for (s, _), (_, d) in zip(blocks, q.blocks, strict=True)
            for k, b in enumerate(d)
        }
        assert held == model
        assert q.held_bytes == len(model)
        if ok:  # the block just added or grown, for the first SACK block
            assert q.last is not None
            lo, hi = seqnum.sub(q.last[0], rcv_nxt), seqnum.sub(q.last[1], rcv_nxt)
            assert (lo, hi) in blocks and lo <= off and off + length <= hi
    # The gap fills up to ``fill``: what continues it comes back in order,
    # any prefix already received trimmed, and the rest stays held.
    assert q.pop_ready(rcv_nxt) is None  # nothing held at offset 0
    nxt = seqnum.add(rcv_nxt, fill)
    got = q.pop_ready(nxt)
    run = fill
    while run in model:
        run += 1
    assert (got or b"") == bytes(model[k] for k in range(fill, run))
    left = _blocks(q, rcv_nxt)
    assert all(s > run for s, _ in left)
    assert sum(e - s for s, e in left) == sum(1 for k in model if k > run)
