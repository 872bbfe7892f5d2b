"""The output of a partitioned run made in the partitions, woven by id.

A partitioned run (analyze/partition.py) ends with each partition's
tracker holding its connections.  Merging the trackers into one and
classifying and writing every connection in the main process made that
process the bottleneck on captures of many connections (for 492 k
connections, 7 of its 11 CPU seconds on the critical path).  Instead:

- each partition sends the first frames of its connections (8 bytes a
  connection); the main process ranks them (:func:`ranks`): a connection's
  id is its rank by first frame over all partitions, what the sequential
  tracker numbers and :func:`~finwait.analyze.partition.merge` gives (ties
  to the lower partition, as its stable sort), and sends each partition
  its connections' ids;
- each partition classifies its connections with those ids
  (:func:`classified`) and renders them, a block of :data:`WEAVE` ids at a
  time, as the sequential run writes them (JSON Lines or CSV rows:
  :func:`render`), or gathers its text summary's counts;
- the main process takes block ``k`` from every partition and interleaves
  the lines by id (:func:`weave`: each run of consecutive ids of one
  partition is one slice of that partition's text), so it only copies
  text.  Memory: a block of lines per partition.

The output is byte for byte the sequential run's (tests/analyze/test_weave.py).
A partition's connections are in first-frame order (the tracker makes them
as their first packets come); if they ever were not, the ids would not
ascend within a partition and :func:`ranks` says so: the run then merges
the trackers as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import numpy.typing as npt

from .classify import Analysis, classify
from .jsonl import BLOCK, ByteText, _text

if TYPE_CHECKING:
    from .partition import Folder
    from .summary import Summary
    from .tracker import Tracker

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Lines = Callable[[Analysis, int, int], list[str]]
Stacks = list[tuple[tuple[str, str, str], ...]]
WEAVE = 1 << 14  # connection ids a block (the text of a block under 32 MB: from the heap)


class WeaveError(RuntimeError):
    """A worker ended while the output was being written (what was written
    is incomplete)."""


@dataclass(frozen=True)
class Spec:
    """What each partition makes (it travels to the workers): ``mode``
    ``json``, ``csv`` (rows from ``lines``, encoded as the output would),
    ``summary`` or ``stats``; the result's name (``path``: CSV rows name
    it); a set's files."""

    mode: str
    name: str = ""
    files: list[str] | None = None
    lines: Lines | None = None
    encoding: str = "utf-8"
    errors: str = "strict"


class Output(ByteText):
    """Where a partitioned run's connections go, in the main process: the
    text stream ``out`` (``head`` first: the CSV header), written as bytes
    to its binary buffer when it has one; after a run that wove its
    output, ``done`` is set and ``summary`` holds the text summary's counts
    (mode ``summary``)."""

    def __init__(self, mode: str, out: TextIO, head: str = "",
                 lines: Lines | None = None) -> None:  # fmt: skip
        super().__init__(out)
        self.mode, self.head, self.lines = mode, head, lines
        self.name = ""
        self.files: list[str] | None = None
        self.done = False
        self.summary: Summary | None = None
        self.written = 0  # connections written (a run that fell back goes on from there)

    def rest(self, res: Analysis) -> None:
        """The lines of ``res``'s connections after the first ``written``
        (the run that wrote those fell back to a sequential read, whose
        result is ``res``)."""
        spec = self.spec()
        for lo in range(self.written, res.n, WEAVE):
            self.write(_lines(res, lo, min(res.n, lo + WEAVE), spec)[0].tobytes())

    def spec(self) -> Spec:
        return Spec(self.mode, self.name, self.files, self.lines, self.encoding, self.errors)


@dataclass
class Tail:
    """A partition's last message: its counts (and summary)."""

    n: int
    packets: int
    tunnelled: int
    summary: Summary | None = None


@dataclass
class Woven:
    """The result of a run whose output was woven: the counts the text
    summary and ``--stats`` print."""

    n: int
    packets: int
    tunnelled: int
    records: int
    drops: Counter[str]
    stacks: Stacks
    summary: Summary | None = None


# -- in the main process --------------------------------------------------------


def ranks(firsts: list[I64]) -> tuple[list[I64], U8] | None:
    """Each partition's connections' ids (0-based: the rank of their first
    frame over all partitions, ties to the lower partition) and, for each
    id, its partition; None when a partition's connections are not in
    first-frame order."""
    for f in firsts:
        if f.size > 1 and bool((f[1:] < f[:-1]).any()):
            return None
    sizes = [f.size for f in firsts]
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    order = np.argsort(first, kind="stable")
    new = np.empty(first.size, dtype=np.int64)
    new[order] = np.arange(first.size)
    label = np.repeat(np.arange(len(firsts), dtype=np.uint8), sizes)[order]
    return np.split(new, np.cumsum(sizes)[:-1]), label


def weave(label: npt.NDArray[Any], got: list[tuple[U8, I64]]) -> bytes:
    """The lines of ``got`` (per partition: its text and each line's end)
    in id order; ``label``: the partition of each id of the block."""
    if not label.size:
        return b""
    cut = np.flatnonzero(label[1:] != label[:-1]) + 1
    heads = np.r_[0, cut]
    size = np.diff(np.r_[heads, label.size])
    who = label[heads]
    a = np.empty(heads.size, dtype=np.int64)
    z = np.empty(heads.size, dtype=np.int64)
    for p, (_, ends) in enumerate(got):
        mine = np.flatnonzero(who == p)
        if not mine.size:
            continue
        last = np.cumsum(size[mine]) - 1  # each run's last line in p's text
        z[mine] = ends[last]
        a[mine] = np.r_[0, ends[last[:-1]]]
    views = [memoryview(buf.data) for buf, _ in got]
    runs = zip(who.tolist(), a.tolist(), z.tolist(), strict=True)
    return b"".join([views[p][i:j] for p, i, j in runs])


def weave_all(output: Output, label: U8, nparts: int, receive: Callable[[int], Any],
              records: int, drops: Counter[str], stacks: Stacks) -> Woven:  # fmt: skip
    """Write the partitions' blocks, block by block, interleaved by id
    (``receive(p)``: partition ``p``'s next message); their tails last."""
    total = label.size
    if output.mode in ("json", "csv"):
        output.write(output.head.encode(output.encoding, output.errors))
        for k in range(0, total, WEAVE):
            got = [receive(p) for p in range(nparts)]
            output.write(weave(label[k : k + WEAVE], got))
    tails: list[Tail] = [receive(p) for p in range(nparts)]
    summary = None
    if output.mode == "summary":
        from .summary import Summary

        summary = Summary()
        for t in tails:
            if t.summary is not None:
                summary.merge(t.summary)
    output.done = True
    output.summary = summary
    return Woven(sum(t.n for t in tails), sum(t.packets for t in tails),
                 sum(t.tunnelled for t in tails), records, drops, stacks, summary)  # fmt: skip


# -- in a partition's worker ----------------------------------------------------


def classified(folder: Folder, ids: I64, spec: Spec) -> Analysis:
    """A partition's connections classified, with their ids (0-based in
    ``ids``) and, for a set, their files."""
    res = classify(folder.tracker, spec.name)
    res.ids = ids + 1
    res.tunnels = folder.tunnels.stacks
    if spec.files is not None:
        from .sets import _by_conn

        res.files = spec.files
        res.conn_files = _by_conn(folder.seen, res.n)
    return res


class Rendering:
    """A partition's connections classified with their ids, rendered a
    block of :data:`WEAVE` ids at a time, in any order (a Dask task may run
    twice)."""

    def __init__(self, folder: Folder, ids: I64, spec: Spec) -> None:
        self.res = classified(folder, ids, spec)
        self.ids, self.spec = ids, spec

    def block(self, k: int) -> tuple[U8, I64]:
        """The text of its connections among ids ``k * WEAVE`` ..
        ``(k + 1) * WEAVE - 1``, and each line's end."""
        res, spec = self.res, self.spec
        lo, hi = np.searchsorted(self.ids, [k * WEAVE, (k + 1) * WEAVE]).tolist()
        if spec.mode == "json":
            text = b"".join(_text(res, a, min(hi, a + BLOCK), "") for a in range(lo, hi, BLOCK))
            buf = np.frombuffer(text, dtype=np.uint8)
            return buf, np.flatnonzero(buf == 10) + 1
        assert spec.lines is not None
        rows = [x.encode(spec.encoding, spec.errors) for a in range(lo, hi, BLOCK)
                for x in spec.lines(res, a, min(hi, a + BLOCK))]  # fmt: skip
        buf = np.frombuffer(b"".join(rows), dtype=np.uint8)
        return buf, np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)))

    def tail(self) -> Tail:
        res = self.res
        summary = None
        if self.spec.mode == "summary":
            from .summary import Summary

            summary = Summary()
            summary.add(res)
        return Tail(res.n, res.tcp_packets, res.tunnelled_connections(), summary)


def spooled(path: str) -> U8:
    """A block's text that a worker wrote to ``path`` (``--dask local:N``),
    read back; the file removed."""
    import os

    text: U8 = np.fromfile(path, dtype=np.uint8)
    os.unlink(path)
    return text


def blocks(total: int) -> int:
    """How many blocks of :data:`WEAVE` ids ``total`` connections make."""
    return -(-total // WEAVE)


def render(folder: Folder, ids: I64, total: int, spec: Spec) -> Iterator[Any]:
    """What partition ``folder`` sends: for each block of :data:`WEAVE`
    ids out of ``total``, the text of its connections among them and each
    line's end (modes ``json``, ``csv``); then its :class:`Tail`."""
    r = Rendering(folder, ids, spec)
    if spec.mode in ("json", "csv"):
        for k in range(blocks(total)):
            yield r.block(k)
    yield r.tail()


# -- streaming: connections out of the partitions as they are done -------------
#
# A partition's tracker would otherwise hold every connection of its
# 4-tuples to the end of the run (946 MB a worker for 492 k connections).
# The sequential run streams: :meth:`Tracker.retire` takes out the
# connections no later packet can belong to.  A partition can do the same
# (a later packet on a 4-tuple is in the same partition), once it knows
# the retired connections' ids, their ranks by first frame over all
# partitions.  Ids are prefix-stable: once every partition has folded
# chunk ``i``, every connection that began up to chunk ``i`` is known.  So:
#
# - after folding chunk ``i``, each partition sends the first frames of its
#   connections new in it (:meth:`Stream.fold`: they are the tracker's last
#   rows, in first-frame order);
# - the main process ranks chunk ``i``'s once it has every partition's
#   (:meth:`Weaver.first`: their ids follow the ids of chunk ``i - 1``'s)
#   and sends each partition its connections' ids, which it sets on its
#   rows (:meth:`Stream.ids`); rows whose ids have not come back yet are a
#   suffix of its rows (retired rows are all before it);
# - each partition retires what it can among the rows with ids, classifies
#   and renders them (:meth:`Stream.retire`) and sends their lines with
#   their ids; at the end, the rest (:meth:`Stream.finish`);
# - the main process writes the lines in id order (:meth:`Weaver.lines`),
#   a block of :data:`WEAVE` ids once all of its lines have come; the
#   lines of blocks not yet complete (behind a long connection) wait, in
#   memory up to :data:`HELD` bytes, beyond that in the run's spool file.
#
# A partition holds its open connections and those of the last few chunks
# whose ids have not come back (the chunks in flight), not every connection.


HELD = 16 << 20  # bytes of lines the main process holds before it spools them


class Stream:
    """A partition's side: its :class:`Folder` (with ``keys``), whose
    connections leave as soon as they are retired and their ids known."""

    def __init__(self, folder: Folder, spec: Spec) -> None:
        self.folder, self.spec = folder, spec
        self.known = 0  # rows 0 .. known - 1 have their ids
        self.mark = 0  # rows mark .. are new since the last fold
        self.n = self.tunnelled = 0
        self.summary: Summary | None = None
        if spec.mode == "summary":
            from .summary import Summary

            self.summary = Summary()

    def fold(self, piece: Any) -> I64 | None:
        """Fold ``piece``; the first frames of the connections it began
        (None: the chunk did not read cleanly)."""
        f = self.folder
        f.fold(piece)
        if f.error is not None:
            return None
        tr = f.tracker
        new = tr.c.first_frame[self.mark : tr.nconns].copy()
        self.mark = tr.nconns
        return new

    def ids(self, ids: I64) -> None:
        """The ids (0-based) of the next rows without one."""
        tr = self.folder.tracker
        tr.row_id[self.known : self.known + ids.size] = ids
        self.known += ids.size
        assert self.known <= self.mark, "ids for connections not reported"

    def retire(self) -> Iterator[tuple[I64, U8, I64]]:
        """The lines (ids, text, each line's end) of the connections with
        ids that :meth:`Tracker.retire` takes out now."""
        done = self.folder.tracker.retire(self.known)
        if done is None:
            return
        self.known -= done.nconns
        self.mark -= done.nconns
        yield from self._out(done)

    def finish(self) -> Iterator[tuple[I64, U8, I64] | Tail]:
        """The lines of every connection left (all ids known), then the
        partition's :class:`Tail`."""
        tr = self.folder.tracker
        assert self.known == tr.nconns, "finished before every id came"
        if tr.nconns:
            yield from self._out(tr)
        yield Tail(self.n, tr.packets, self.tunnelled, self.summary)

    def _out(self, tr: Tracker) -> Iterator[tuple[I64, U8, I64]]:
        spec, folder = self.spec, self.folder
        res = classify(tr, spec.name)
        ids = tr.row_id[: tr.nconns].copy()
        res.ids = ids + 1
        res.tunnels = folder.tunnels.stacks
        if spec.files is not None:
            res.files = spec.files
            res.conn_files = self._files(tr)
        self.n += res.n
        self.tunnelled += res.tunnelled_connections()
        if self.summary is not None:
            self.summary.add(res)
        if spec.mode in ("json", "csv"):
            for lo in range(0, res.n, WEAVE):
                hi = min(res.n, lo + WEAVE)
                yield (ids[lo:hi], *_lines(res, lo, hi, spec))

    def _files(self, tr: Tracker) -> list[list[int]]:
        """The files each of ``tr``'s connections appears in (as
        analyze_set's sequential read: the files in which it had a packet
        at their end, and the file being read if its last packet is in
        it); they are forgotten in the files' lists."""
        folder, n = self.folder, tr.nconns
        keys = tr.c.first_frame[:n]
        out: list[list[int]] = [[] for _ in range(n)]
        for k, seen in enumerate(folder.seen):
            if not seen.size:
                continue
            for row in np.flatnonzero(np.isin(keys, seen)).tolist():
                out[row].append(k)
            folder.seen[k] = seen[~np.isin(seen, keys)]
        if folder.next and len(folder.seen) <= folder.file_of[folder.next - 1]:
            cur = folder.file_of[folder.next - 1]
            for row in np.flatnonzero(tr.c.last_frame[:n] > folder.file_first).tolist():
                out[row].append(cur)
        return out


def _lines(res: Analysis, lo: int, hi: int, spec: Spec) -> tuple[U8, I64]:
    """The text of connections ``lo`` .. ``hi`` - 1 of ``res`` and each
    line's end."""
    if spec.mode == "json":
        text = b"".join(_text(res, a, min(hi, a + BLOCK), "") for a in range(lo, hi, BLOCK))
        buf = np.frombuffer(text, dtype=np.uint8)
        return buf, np.flatnonzero(buf == 10) + 1
    assert spec.lines is not None
    rows = [x.encode(spec.encoding, spec.errors) for a in range(lo, hi, BLOCK)
            for x in spec.lines(res, a, min(hi, a + BLOCK))]  # fmt: skip
    buf = np.frombuffer(b"".join(rows), dtype=np.uint8)
    return buf, np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)))


class Weaver:
    """The main process's side: ranks each chunk's new connections over
    the ``n`` partitions and writes the lines that come back in id order
    (to ``output``; modes ``summary`` and ``stats`` only count).  Lines
    of blocks still waiting for some of theirs are held here up to
    :data:`HELD` bytes, beyond that appended to a file in ``spool``."""

    def __init__(self, output: Output, n: int, spool: str | None = None) -> None:
        self.output, self.n, self.spool = output, n, spool
        self.lines_out = output.mode in ("json", "csv")
        self.total = 0  # ids given
        self.last = np.full(n, -1, dtype=np.int64)  # each partition's last first frame
        self.firsts: dict[int, list[I64 | None]] = {}  # chunk -> per partition
        self.ranked = 0  # chunks ranked
        # block k: its pieces [ids, text or None (spooled), ends, offset]; lines come
        self.blocks: dict[int, list[list[Any]]] = {}
        self.count: dict[int, int] = {}
        self.next = 0  # the next block to write
        self.held = 0  # bytes of lines in memory
        self.spooled = 0  # bytes of lines in the spool file
        self.fd: int | None = None
        self.headed = False  # (the CSV header: written with the first lines, so a
        # run that falls back before any has nothing to take back)

    def first(self, p: int, i: int, frames: I64) -> list[tuple[int, list[I64]]]:
        """Partition ``p``'s connections begun in chunk ``i`` (their first
        frames); for each chunk it completes, in order, each partition's
        ids of them (0-based)."""
        got = self.firsts.setdefault(i, [None] * self.n)
        got[p] = frames
        out = []
        while self.ranked in self.firsts:
            cur = self.firsts[self.ranked]
            if any(x is None for x in cur):
                break
            del self.firsts[self.ranked]
            parts = [x for x in cur if x is not None]
            for q, f in enumerate(parts):
                if f.size and (f[0] <= self.last[q] or bool((f[1:] <= f[:-1]).any())):
                    raise AssertionError(f"partition {q}: connections out of first-frame order")
                if f.size:
                    self.last[q] = f[-1]
            sizes = [f.size for f in parts]
            allf = np.concatenate(parts)
            order = np.argsort(allf, kind="stable")
            ids = np.empty(allf.size, dtype=np.int64)
            ids[order] = np.arange(self.total, self.total + allf.size)
            self.total += allf.size
            out.append((self.ranked, np.split(ids, np.cumsum(sizes)[:-1])))
            self.ranked += 1
        return out

    def lines(self, ids: I64, text: U8, ends: I64) -> None:
        """Lines that came (ids ascending, 0-based): each block's share
        kept until the block is complete, then written."""
        if not self.lines_out or not ids.size:
            return
        cut = np.searchsorted(ids, np.arange(ids[0] // WEAVE + 1, ids[-1] // WEAVE + 1) * WEAVE)
        for a, b in zip([0, *cut.tolist()], [*cut.tolist(), ids.size], strict=True):
            if a == b:
                continue
            k = int(ids[a]) // WEAVE
            start = int(ends[a - 1]) if a else 0
            piece = text[start : int(ends[b - 1])]
            if piece.nbytes != text.nbytes:  # (a copy: the message's buffer can go)
                piece = piece.copy()
            self.blocks.setdefault(k, []).append([ids[a:b], piece, ends[a:b] - start, -1])
            self.count[k] = self.count.get(k, 0) + (b - a)
            self.held += piece.nbytes
        self._write(False)
        if self.held > HELD:
            self._spool()

    def _write(self, final: bool) -> None:
        """Write the complete blocks, in order (``final``: every block)."""
        while self.next in self.count:
            k = self.next
            size = min(WEAVE, self.total - k * WEAVE)
            if self.count[k] < WEAVE and not (final and self.count[k] == size):
                return
            pieces = self.blocks.pop(k)
            del self.count[k]
            got = []
            label = np.empty(size, dtype=np.int64)
            for j, (ids, text, ends, off) in enumerate(pieces):
                if text is None:  # (spooled)
                    text = np.empty(int(ends[-1]), dtype=np.uint8)
                    _pread(self.fd, text, off)
                else:
                    self.held -= text.nbytes
                label[ids - k * WEAVE] = j
                got.append((text, ends))
            self._head()
            self.output.write(weave(label, got))
            self.output.written = min(self.total, (k + 1) * WEAVE)
            self.next += 1

    def _head(self) -> None:
        if not self.headed:
            out = self.output
            out.write(out.head.encode(out.encoding, out.errors))
            self.headed = True

    def _spool(self) -> None:
        """Lines held beyond :data:`HELD` bytes appended to the spool file,
        the blocks written last first."""
        import os
        import tempfile

        if self.fd is None:
            fd, path = tempfile.mkstemp(prefix="finwait-lines-", dir=self.spool)
            os.unlink(path)  # (gone with the descriptor whatever happens)
            self.fd = fd
        for k in sorted(self.blocks, reverse=True):
            for piece in self.blocks[k]:
                text = piece[1]
                if text is None:
                    continue
                piece[3] = self.spooled
                _pwrite(self.fd, text, self.spooled)
                self.spooled += text.nbytes
                self.held -= text.nbytes
                piece[1] = None
            if self.held <= HELD // 2:
                break

    def close(self) -> None:
        """Every block left written (all lines came), the spool file closed."""
        try:
            if self.lines_out:
                self._head()
                self._write(True)
                if self.next * WEAVE < self.total:
                    raise AssertionError("lines missing at the end of the run")
        finally:
            self.discard()

    def result(self, tails: list[Tail], records: int, drops: Counter[str],
               stacks: Stacks) -> Woven:  # fmt: skip
        """What the run gives back (``output`` done), from the partitions'
        tails."""
        summary = None
        if self.output.mode == "summary":
            from .summary import Summary

            summary = Summary()
            for t in tails:
                if t.summary is not None:
                    summary.merge(t.summary)
        self.output.done = True
        self.output.summary = summary
        return Woven(sum(t.n for t in tails), sum(t.packets for t in tails),
                     sum(t.tunnelled for t in tails), records, drops, stacks, summary)  # fmt: skip

    def discard(self) -> None:
        import os

        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _pwrite(fd: int, data: U8, at: int) -> None:
    import os

    view = data.data.cast("B")
    while view.nbytes:
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


def _pread(fd: int | None, into: U8, at: int) -> None:
    import os

    assert fd is not None
    view = into.data.cast("B")
    while view.nbytes:
        got = os.preadv(fd, [view], at)
        if not got:
            raise EOFError("the spool file is short")
        view, at = view[got:], at + got
