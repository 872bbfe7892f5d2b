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


def weave(label: U8, got: list[tuple[U8, I64]]) -> bytes:
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
