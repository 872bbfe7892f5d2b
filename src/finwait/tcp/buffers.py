"""Receive-side reassembly (RFC 9293 §3.10.7.4 seventh, SHLD-31).

Segments that arrive beyond RCV.NXT but inside the window are held here
until the gap fills.  The queue is bounded twice: by the receive window (the
caller trims every segment to it) and by a segment count, so that a peer
sending tiny segments far ahead cannot pin memory.  Overlaps are resolved
first-come: bytes already held are kept (RFC 9293 leaves the choice; Linux
keeps the earlier copy too).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from . import seqnum

MASK = seqnum.MASK


class Reassembly:
    __slots__ = ("blocks", "last", "limit")

    def __init__(self, limit: int) -> None:
        # Disjoint, non-adjacent-merged [start, data] blocks sorted by start
        # (relative order is stable: every block is within one window ahead).
        self.blocks: list[tuple[int, bytes]] = []
        self.limit = limit
        self.last: tuple[int, int] | None = None  # the most recent block's edges, for SACK

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def held_bytes(self) -> int:
        return sum(len(d) for _, d in self.blocks)

    def add(self, seq: int, data: bytes, rcv_nxt: int) -> bool:
        """Hold ``data`` at ``seq`` (beyond ``rcv_nxt``).  False when the
        count bound refused it.  O(log n) to place, so a peer that keeps the
        queue full cannot make each refused segment cost a walk of it."""
        blocks = self.blocks
        off = (seq - rcv_nxt) & MASK
        end = off + len(data)

        def start_of(b: tuple[int, bytes]) -> int:
            return (b[0] - rcv_nxt) & MASK

        def end_of(b: tuple[int, bytes]) -> int:
            return ((b[0] - rcv_nxt) & MASK) + len(b[1])

        # Blocks [i, j) overlap or touch [off, end): the first that ends at or
        # after ``off`` up to the first that starts after ``end``.
        i = bisect_left(blocks, off, key=end_of)
        j = bisect_right(blocks, end, lo=i, key=start_of)
        if i == j:
            if len(blocks) >= self.limit:
                return False
            blocks.insert(i, (seq & MASK, data))
            self.last = (seq & MASK, (seq + len(data)) & MASK)
            return True
        lo = min(off, start_of(blocks[i]))
        hi = max(end, end_of(blocks[j - 1]))
        buf = bytearray(hi - lo)
        buf[off - lo : end - lo] = data
        for b in blocks[i:j]:  # the bytes already held win
            bo = start_of(b) - lo
            buf[bo : bo + len(b[1])] = b[1]
        start = (rcv_nxt + lo) & MASK
        blocks[i:j] = [(start, bytes(buf))]
        self.last = (start, (start + len(buf)) & MASK)
        return True

    def pop_ready(self, rcv_nxt: int) -> bytes | None:
        """Remove and return the bytes that now continue ``rcv_nxt`` (trimming
        any prefix already received), or None."""
        chunks: list[bytes] = []
        nxt = rcv_nxt
        while self.blocks:
            bseq, bdata = self.blocks[0]
            off = seqnum.sub(bseq, nxt)
            if off > 0:
                break
            self.blocks.pop(0)
            if -off < len(bdata):
                piece = bdata[-off:]
                chunks.append(piece)
                nxt = (nxt + len(piece)) & MASK
        if not chunks:
            return None
        return b"".join(chunks)

    def sack_blocks(self, limit: int) -> tuple[tuple[int, int], ...]:
        """Up to ``limit`` SACK blocks, the most recent first (RFC 2018 §4)."""
        edges = [(s, (s + len(d)) & MASK) for s, d in self.blocks]
        if self.last is not None:
            for i, (s, e) in enumerate(edges):
                if seqnum.between(s, self.last[0], e):
                    edges.insert(0, edges.pop(i))
                    break
        return tuple(edges[:limit])

    def clear(self) -> None:
        self.blocks.clear()
        self.last = None


class SendBuffer:
    """The send buffer: the bytes from SND.UNA on (sent or not), with the
    slice of a ``bytearray`` the sender uses — ``len``, ``buf += data``,
    ``buf[i:j]`` (as ``bytes``), ``del buf[:n]``, ``clear`` — but kept as
    the chunks the user handed over, so that neither a send nor an ACK
    copies the bytes behind it.  (A ``bytearray`` cut at the front and grown
    at the back reallocates and copies all of itself every few rounds: with
    64 KB sends and ACKs over a 4 MB buffer, a 4 MB copy per ACK.)  A
    segment's bytes are copied once, when it is cut.  Small sends are
    gathered in a growing last chunk, so a chunk is at least ``CHUNK``
    bytes but the last, and finding an offset walks few chunks."""

    __slots__ = ("_chunks", "_cpos", "_cur", "_head", "size")
    CHUNK = 1 << 16

    def __init__(self) -> None:
        self._chunks: list[bytes | bytearray] = []
        self._head = 0  # bytes of _chunks[0] already cut away
        self.size = 0  # len(): the sender reads it on every segment, without a call
        # The chunk the last cut ended in (an index into _chunks) and where it
        # starts (counted from _chunks[0]'s first byte, cut or not): a sender
        # cuts segment after segment from one chunk, often while the oldest
        # chunk still holds bytes in flight.
        self._cur = 0
        self._cpos = 0

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __iadd__(self, data: bytes | bytearray | memoryview) -> SendBuffer:
        n = len(data)
        if not n:
            return self
        chunks = self._chunks
        last = chunks[-1] if chunks else None
        if type(last) is bytearray and len(last) < self.CHUNK:
            last += data  # gather small sends
        elif n < self.CHUNK:
            chunks.append(bytearray(data))
        else:
            chunks.append(data if type(data) is bytes else bytes(data))
        self.size += n
        return self

    def __getitem__(self, s: slice) -> bytes:
        """``buf[i:j]`` with 0 <= i <= j: the bytes, a copy (the one copy a
        segment costs; a whole chunk is returned as it is)."""
        start = s.start or 0
        if not self.size:
            return b""
        return self.cut(start, s.stop - start)

    def cut(self, off: int, n: int) -> bytes:
        """``buf[off : off + n]`` of a buffer that is not empty (what
        ``_push`` puts in a segment)."""
        start = self._head + off  # counted from _chunks[0]'s first byte
        stop = start + n
        pos = self._cpos
        if pos <= start:
            chunk = self._chunks[self._cur]
            if stop - pos <= len(chunk):  # the common case: within the last chunk cut
                piece = chunk[start - pos : stop - pos]
                return piece if type(piece) is bytes else bytes(piece)
        return self._cut_across(start, stop)

    def _cut_across(self, start: int, stop: int) -> bytes:
        """A cut not within the chunk of the last one: walk the chunks from
        the first, and remember the one where it ends."""
        stop = min(stop, self.size + self._head)
        if stop <= start:
            return b""
        pieces: list[bytes | bytearray] = []
        pos = 0  # where the chunk in hand starts
        for i, chunk in enumerate(self._chunks):
            end = pos + len(chunk)
            if end > start:
                lo = start - pos if start > pos else 0
                if stop <= end:
                    self._cur, self._cpos = i, pos
                    whole = lo == 0 and stop == end and type(chunk) is bytes
                    piece = chunk if whole else chunk[lo : stop - pos]
                    if not pieces:
                        return piece if type(piece) is bytes else bytes(piece)
                    pieces.append(piece)
                    break
                pieces.append(chunk[lo:])
            pos = end
        return b"".join(pieces)

    def __delitem__(self, s: slice) -> None:
        """``del buf[:n]``: the first ``n`` bytes were acknowledged."""
        n = s.stop
        size = self.size
        if n >= size:
            self.clear()  # all of it (or more: our FIN too)
            return
        if n <= 0:
            return
        self.size = size - n
        chunks = self._chunks
        head = self._head + n
        if head < len(chunks[0]):  # within the oldest chunk
            self._head = head
            return
        i = gone = 0
        while head >= len(chunks[i]):  # (the last chunk is not all cut)
            size = len(chunks[i])
            head -= size
            gone += size
            i += 1
        del chunks[:i]
        self._cur -= i
        self._cpos -= gone
        if self._cur < 0:
            self._cur = self._cpos = 0
        self._head = head

    def clear(self) -> None:
        self._chunks.clear()
        self._head = self.size = self._cur = self._cpos = 0
