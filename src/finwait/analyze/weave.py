"""The output of a partitioned run made in the partitions, streamed as the
connections are done with, written in id order.

A partitioned run (analyze/partition.py) folds each partition's 4-tuples
into a tracker of its own.  Kept to the end of the run, those trackers
held every connection (946 MB a worker for 492 k connections), and the
main process merging them, classifying and writing every connection was
the bottleneck.  The sequential run streams instead: :meth:`Tracker.retire`
takes out the connections no later packet can belong to (closed and quiet
for 5 s, or idle for 300 s: a later packet on their 4-tuple starts a new
connection, Zeek's timers or not).  A partition can do the same, since a
4-tuple always lands in the same partition, once it knows the retired
connections' ids: their ranks by first frame over all partitions (what the
sequential tracker numbers).  Ids are prefix-stable: once every partition
has folded chunk ``i``, every connection that began up to chunk ``i`` is
known.  So:

- after folding chunk ``i``, each partition sends the first frames of the
  connections it began (:meth:`Stream.fold`: the tracker's last rows, in
  first-frame order; 8 bytes a connection);
- the main process ranks chunk ``i``'s once it has every partition's
  (:meth:`Weaver.first`: their ids follow chunk ``i - 1``'s) and sends each
  partition its connections' ids, which it sets on its rows
  (:meth:`Stream.ids`); the rows whose ids have not come back yet are the
  last rows (a retired row is always before them);
- each partition retires what it can among the rows with ids, classifies
  and renders them as the sequential run writes them (JSON Lines, CSV rows)
  or counts them (the text summary, --stats), and sends the lines with
  their ids (:meth:`Stream.retire`); at the end, the rest
  (:meth:`Stream.finish`);
- the main process writes the lines in id order (:meth:`Weaver.lines`), a
  block of :data:`WEAVE` ids once all of its lines have come (:func:`weave`:
  each run of consecutive ids from one message is one slice of its text),
  so it only copies text.  Lines of blocks not yet complete (behind a long
  connection: a connection open from the start holds back every later id)
  wait in memory up to :data:`HELD` bytes, beyond that in an unlinked
  temporary file.

A partition holds its open connections and those of the few chunks in
flight whose ids have not come back, not every connection.  The output is
byte for byte the sequential run's (tests/analyze/test_weave.py,
test_stream.py).  A run that falls back to the sequential read after lines
were written (a chunk that did not read cleanly, a worker lost) goes on
from ``Output.written``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import numpy.typing as npt

from .classify import Analysis, classify
from .jsonl import BLOCK, ByteText, _text, read_at, write_at

if TYPE_CHECKING:
    from .partition import Folder
    from .summary import Summary
    from .tracker import Tracker

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Lines = Callable[[Analysis, int, int], list[str]]
Stacks = list[tuple[tuple[str, str, str], ...]]
WEAVE = 1 << 14  # connection ids a block (the text of a block under 32 MB: from the heap)


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
    """A partition's last message: its counts (and summary), and what its
    folder counted of the capture: records read and tunnel stacks (the
    same in every partition: each reads every chunk's records), packets
    dropped (each partition's own)."""

    n: int
    packets: int
    tunnelled: int
    summary: Summary | None
    records: int
    drops: Counter[str]
    stacks: Stacks


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


# -- in a partition's worker ----------------------------------------------------


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
        f = self.folder
        yield Tail(self.n, tr.packets, self.tunnelled, self.summary, f.records, f.drops,
                   f.tunnels.stacks)  # fmt: skip

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


# -- in the main process --------------------------------------------------------

HELD = 16 << 20  # bytes of lines the main process holds before it spools them
HERE, MAPPED = -1, -2  # a held piece's text: in this process's memory, a file's mapping
MAPS = 256  # pieces mapped at most at once (a mapping holds a file descriptor)


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


def spooled(path: str, mapped: bool = False) -> U8:
    """A block's text that a worker wrote to ``path`` (``--dask local:N``),
    read back, or with ``mapped`` mapped: the weaver then copies each line
    once, straight from the page cache to the output, and a block held
    back costs this process no memory of its own (nor a write to its
    spool file and a read back).  The file is removed (a mapping lives as
    long as a view of it)."""
    import mmap
    import os

    if mapped:
        with open(path, "rb") as f:
            text: U8 = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ),
                                     dtype=np.uint8)  # fmt: skip
    else:
        text = np.fromfile(path, dtype=np.uint8)
    os.unlink(path)
    return text


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
        # block k: its pieces [ids, text or None (spooled), ends, where]; lines come
        # (where: the offset in the spool file, HERE or MAPPED)
        self.blocks: dict[int, list[list[Any]]] = {}
        self.count: dict[int, int] = {}
        self.next = 0  # the next block to write
        self.held = 0  # bytes of lines in memory
        self.spooled = 0  # bytes of lines in the spool file
        self.maps = 0  # pieces held as mappings
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

    def lines(self, ids: I64, text: U8, ends: I64, mapped: bool = False) -> None:
        """Lines that came (ids ascending, 0-based): each block's share
        kept until the block is complete, then written.  ``mapped``: the
        text is a file's mapping (:func:`spooled`), kept as it is (not
        copied, not counted in :data:`HELD`, never spooled again)."""
        if not self.lines_out or not ids.size:
            return
        cut = np.searchsorted(ids, np.arange(ids[0] // WEAVE + 1, ids[-1] // WEAVE + 1) * WEAVE)
        for a, b in zip([0, *cut.tolist()], [*cut.tolist(), ids.size], strict=True):
            if a == b:
                continue
            k = int(ids[a]) // WEAVE
            start = int(ends[a - 1]) if a else 0
            piece = text[start : int(ends[b - 1])]
            if not mapped and piece.nbytes != text.nbytes:  # (a copy: the message's
                piece = piece.copy()  # buffer can go)
            where = MAPPED if mapped else HERE
            self.blocks.setdefault(k, []).append([ids[a:b], piece, ends[a:b] - start, where])
            self.count[k] = self.count.get(k, 0) + (b - a)
            if mapped:
                self.maps += 1
            else:
                self.held += piece.nbytes
        self._write(False)
        if self.held > HELD:
            self._spool()

    def file_lines(self, ids: I64, path: str, ends: I64) -> None:
        """Lines whose text a worker wrote to the file ``path`` (``--dask
        local:N``): mapped while fewer than :data:`MAPS` pieces are, else
        read back (:func:`spooled`); the file removed."""
        mapped = self.maps < MAPS
        self.lines(ids, spooled(path, mapped), ends, mapped)

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
            for j, (ids, text, ends, where) in enumerate(pieces):
                if text is None:  # (spooled)
                    text = np.empty(int(ends[-1]), dtype=np.uint8)
                    assert self.fd is not None
                    read_at(self.fd, text, where)
                elif where == HERE:
                    self.held -= text.nbytes
                else:
                    self.maps -= 1
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
                if text is None or piece[3] == MAPPED:
                    continue
                piece[3] = self.spooled
                write_at(self.fd, [text], self.spooled)
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

    def result(self, tails: list[Tail]) -> Woven:
        """What the run gives back (``output`` done), from the partitions'
        tails (in partition order)."""
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
                     sum(t.tunnelled for t in tails), tails[0].records,
                     sum((t.drops for t in tails), Counter()), tails[0].stacks, summary)  # fmt: skip

    def discard(self) -> None:
        import os

        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
