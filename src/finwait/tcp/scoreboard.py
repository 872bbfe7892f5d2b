"""The sender's SACK scoreboard (RFC 2018, RFC 6675 §3-§4).

What the peer has told us it holds above SND.UNA: disjoint, sorted ranges
of sequence space.  The connection uses it three ways:

- **DupAck** (RFC 6675 §2): with SACK in use, an ACK counts as a duplicate
  only when its SACK blocks cover bytes not SACKed before.  A bare repeated
  ACK, such as the answer to an injected out-of-window segment, carries no
  such news and sets off no fast retransmit.
- **IsLost** (§4): a byte is deemed lost once three discontiguous SACKed
  ranges, or more than two segments' worth of SACKed bytes, lie above it.
- **NextSeg** (§4, rule 1): the next hole to retransmit, at or after the
  highest sequence already retransmitted in this recovery (HighRxt), and
  never into bytes the peer holds.

SACK information is advisory (the receiver may renege, RFC 2018 §8): blocks
that do not lie inside [SND.UNA, SND.MAX] are ignored, the scoreboard is
bounded (a hostile receiver cannot grow it without limit: beyond ``limit``
ranges the highest are forgotten) and the connection drops it all on a
retransmission timeout.
"""

from __future__ import annotations

from . import seqnum

MASK = seqnum.MASK


class Scoreboard:
    __slots__ = ("_ranges", "limit")

    def __init__(self, limit: int) -> None:
        # (start, end) absolute sequence numbers, sorted from SND.UNA up,
        # disjoint and not touching.
        self._ranges: list[tuple[int, int]] = []
        self.limit = max(limit, 1)

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __len__(self) -> int:
        return len(self._ranges)

    def ranges(self) -> list[tuple[int, int]]:
        return list(self._ranges)

    def update(self, blocks: tuple[tuple[int, int], ...], una: int, snd_max: int) -> int:
        """Forget what is below ``una`` (the cumulative ACK), then add the valid
        ``blocks``.  Returns the number of bytes newly SACKed."""
        span = (snd_max - una) & MASK
        spans: list[tuple[int, int]] = []
        for s, e in self._ranges:
            lo = (s - una) & MASK
            hi = (e - una) & MASK
            if 0 < hi <= span:  # else wholly at or below SND.UNA now
                spans.append((lo if lo < hi else 0, hi))  # a start below SND.UNA wraps high
        before = sum(hi - lo for lo, hi in spans)
        for left, right in blocks:
            lo = (left - una) & MASK
            hi = (right - una) & MASK
            if 0 < lo < hi <= span:  # else below SND.UNA (D-SACK), reversed or unsent
                spans.append((lo, hi))
        spans.sort()
        merged: list[list[int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1]:
                if hi > merged[-1][1]:
                    merged[-1][1] = hi
            else:
                merged.append([lo, hi])
        del merged[self.limit :]
        self._ranges = [((una + lo) & MASK, (una + hi) & MASK) for lo, hi in merged]
        return max(sum(hi - lo for lo, hi in merged) - before, 0)

    def clear(self) -> None:
        self._ranges.clear()

    def is_lost(self, seq: int, smss: int) -> bool:
        """RFC 6675 IsLost(seq), DupThresh 3."""
        above = 0
        nblocks = 0
        for s, e in self._ranges:
            if seqnum.lt(seq, e):
                nblocks += 1
                above += (e - (s if seqnum.lt(seq, s) else seq)) & MASK
        return nblocks >= 3 or above > 2 * smss

    def next_hole(self, start: int, una: int, smss: int) -> tuple[int, int] | None:
        """The first un-SACKed range at or after ``start`` (itself at or
        after ``una``) that lies below the highest SACKed byte and is deemed
        lost: (seq, length), length at most ``smss``; None when there is none."""
        pos = (start - una) & MASK
        for s, e in self._ranges:
            lo = (s - una) & MASK
            hi = (e - una) & MASK
            if pos < lo:
                seq = (una + pos) & MASK
                if not self.is_lost(seq, smss):
                    return None  # holes further up have even less SACKed above them
                return seq, min(lo - pos, smss)
            pos = max(pos, hi)
        return None

    def sacked_from(self, seq: int, una: int) -> int | None:
        """The offset from ``seq`` to the next SACKed byte at or after it, or None."""
        pos = (seq - una) & MASK
        for s, e in self._ranges:
            lo = (s - una) & MASK
            hi = (e - una) & MASK
            if hi > pos:
                return max(lo - pos, 0)
        return None
