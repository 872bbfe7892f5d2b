"""Streamed pcap/pcapng reader: locates records in big chunks and hands them
out as columnar batches (numpy) for bulk header decoding.

Formats: pcap (libpcap, micro- and nanosecond magic, either byte order) and
pcapng (draft-ietf-opsawg-pcapng: each Section Header Block sets the byte
order; several Interface Description Blocks, each with its own link type,
``if_tsresol`` and ``if_tsoffset``; Enhanced, Simple and the obsolete Packet
Blocks; every other block type is skipped).  Memory is one chunk plus the
record offsets of that chunk, never the file.

Locating records is inherently sequential (each record's length says where
the next starts), so that is one tight loop over record headers; everything
after it (timestamps, lengths, link and IP/TCP headers) is vectorised over the
record offsets (see :mod:`finwait.capture.decode`).

A truncated or corrupt file raises :class:`CaptureError` naming the file and
the byte offset, *after* every complete batch before that point has been
yielded, so callers keep what was read.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pathlib import Path  # (in annotations only: pathlib costs 3 ms of start-up)

__all__ = [
    "CaptureError",
    "EmptyCaptureError",
    "RawBatch",
    "iter_batches",
]

# The largest record we accept: libpcap's MAXIMUM_SNAPLEN (262144), or the
# file's own snaplen when that is larger (some writers use 65535 * n).
MAX_SNAPLEN = 262_144
CHUNK = 8 << 20

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
BT_IDB = 1
BT_OPB = 2
BT_SPB = 3
BT_EPB = 6


class CaptureError(Exception):
    """The capture file cannot be read past ``offset``: ``reason`` says why."""

    def __init__(self, path: str, offset: int, reason: str, decompressed: bool = False) -> None:
        # (in a compressed capture, offsets count the decompressed bytes)
        of = " of the decompressed capture" if decompressed else ""
        super().__init__(f"{path}: {reason} at byte offset {offset}{of}")
        self.path = path
        self.offset = offset
        self.reason = reason


class EmptyCaptureError(CaptureError):
    """The file has no bytes at all (an interrupted capture, a wrong path)."""

    def __init__(self, path: str, what: str = "empty file (0 bytes)") -> None:
        Exception.__init__(self, f"{path}: {what}, not a pcap or pcapng capture")
        self.path = path
        self.offset = 0
        self.reason = "empty file"


@dataclass(slots=True, eq=False, repr=False)
class RawBatch:
    """Complete records located in one chunk.

    ``buf`` is the chunk; ``data_off``/``caplen`` locate each record's packet
    bytes in it; ``wirelen`` is each packet's length on the wire (the
    record's original length, at least ``caplen``); ``frame`` numbers records
    1-based over the whole file (as Wireshark does, counting every record,
    TCP or not); ``linktype`` is per record because pcapng interfaces may
    differ.
    """

    buf: npt.NDArray[np.uint8]
    data_off: npt.NDArray[np.int64]
    caplen: npt.NDArray[np.int64]
    ts: npt.NDArray[np.float64]
    linktype: npt.NDArray[np.int64]
    frame: npt.NDArray[np.int64]
    file_offset: int  # file offset of buf[0]
    wirelen: npt.NDArray[np.int64] | None = None  # None: same as caplen
    # ``buf`` and 64 zero bytes after it (the reader's), or None
    padded: npt.NDArray[np.uint8] | None = None

    def __len__(self) -> int:
        return int(self.data_off.size)


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    div: int = 1_000_000  # timestamp units per second (if_tsresol)
    offset: float = 0.0


PAD = 64  # zero bytes kept after a chunk's last byte (decode's bounds-safe gathers)


@dataclass(slots=True, eq=False, repr=False)
class _Chunker:
    """Sliding window over the file: ``buf`` holds bytes from ``base``.

    Each :meth:`refill` reads into a fresh buffer (``store``) after the
    unconsumed tail, with :data:`PAD` zero bytes after the data
    (:attr:`padded`: decode gathers from it without a padded copy).  Fresh,
    not reused: a batch yielded earlier keeps its bytes whatever its caller
    does next (reusing one buffer saved nothing measurable and made
    collected batches' bytes change under them)."""

    fh: BinaryIO
    base: int = 0
    buf: memoryview = field(default_factory=lambda: memoryview(b""))
    eof: bool = False
    size: int = CHUNK
    consumed: int = 0  # bytes of buf already turned into records
    store: bytearray = field(default_factory=lambda: bytearray(PAD))
    follow: bool = False  # take what has arrived (a live pipe), not a full read

    def refill(self, need: int = 0, least: int = 1) -> bool:
        """Drop consumed bytes and read more (up to ``need``, and in follow
        mode at least ``least`` unless the input ends); False when nothing
        was added."""
        if self.eof:
            return False
        keep = len(self.buf) - self.consumed
        want = max(self.size, need)
        store = bytearray(keep + want + PAD)  # (zeros: the pad after any length read)
        store[:keep] = self.buf[self.consumed :]
        self.base += self.consumed
        self.consumed = 0
        into = memoryview(store)[keep : keep + want]
        got = self._arrived(into, least) if self.follow else self._read(into)
        self.store = store
        self.buf = memoryview(store)[: keep + got]
        if not got:
            self.eof = True
            return False
        return True

    def _read(self, into: memoryview) -> int:
        """Fill ``into`` from the file (less at its end): the byte count."""
        if isinstance(self.fh, io.BufferedReader | io.FileIO | io.RawIOBase):
            # (a RawIOBase: a chunk's slice, whose readinto fills)
            return self.fh.readinto(into) or 0
        data = self.fh.read(len(into))  # (other file objects: fsspec's, a chunk's slice)
        into[: len(data)] = data
        return len(data)

    def _arrived(self, into: memoryview, least: int) -> int:
        """What has arrived of a live input (at least ``least`` bytes,
        waiting for them, unless it ends), up to ``len(into)``."""
        got = 0
        take = getattr(self.fh, "read1", None) or self.fh.read  # (fsspec's files: read)
        while got < least:
            data = take(len(into) - got)
            if not data:
                break
            into[got : got + len(data)] = data
            got += len(data)
        return got

    @property
    def padded(self) -> npt.NDArray[np.uint8]:
        """``buf`` and the :data:`PAD` zero bytes after it (a view)."""
        return np.frombuffer(self.store, dtype=np.uint8, count=len(self.buf) + PAD)


def _u32_rows(
    buf: npt.NDArray[np.uint8], off: npt.NDArray[np.int64], count: int, big: bool
) -> npt.NDArray[np.int64]:
    """``count`` consecutive 32-bit words at each offset, as an (n, count)
    array: one gather of ``4 * count`` bytes a row instead of one per byte."""
    width = 4 * count
    if buf.size < width or not off.size:
        return np.zeros((off.size, count), dtype=np.int64)
    rows = np.lib.stride_tricks.sliding_window_view(buf, width)[off]
    out: npt.NDArray[np.int64] = rows.view(">u4" if big else "<u4").astype(np.int64)
    return out


def at_every_byte(buf: npt.NDArray[np.uint8], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """A view of ``buf`` in which element k is the (unaligned) ``dtype``
    value whose first byte is byte k: one gather reads a whole field or
    header at each of many offsets (numpy copies each element as one unit:
    several times faster than a byte at a time or rows of a 2-D sliding
    window)."""
    dt = np.dtype(dtype)
    return np.ndarray((max(buf.size - dt.itemsize + 1, 0),), dt, buf, strides=(1,))


def _u32(
    buf: npt.NDArray[np.uint8], off: npt.NDArray[np.int64], big: bool
) -> npt.NDArray[np.int64]:
    """The 32-bit word at each offset."""
    out: npt.NDArray[np.int64] = at_every_byte(buf, ">u4" if big else "<u4")[off].astype(np.int64)
    return out


def is_url(path: str | Path) -> bool:
    """Whether ``path`` is a URL (``file://``, ``s3://`` ...) for fsspec."""
    return "://" in str(path)


STDIN = "-"  # the file name that reads standard input


def open_capture(path: str | Path) -> BinaryIO:
    """``path`` opened for reading from its first byte: a local path
    directly, a URL through fsspec (capture/remote.py), ``-`` standard
    input; a compressed capture (capture/compressed.py) decompressed."""
    name = str(path)
    if name == STDIN:
        import sys

        raw: BinaryIO = open(sys.stdin.fileno(), "rb", closefd=False)  # noqa: SIM115 (the caller's)
    elif is_url(name):
        from .remote import open_url

        raw = open_url(name)
    else:
        raw = open(name, "rb")  # noqa: SIM115 (the caller closes it)
    from . import compressed

    head, raw = _head(raw, compressed.HEAD)
    kind = compressed.kind_of(head)
    return raw if kind is None else cast("BinaryIO", compressed.Decompressed(raw, kind))


def compression_of(path: str | Path) -> str | None:
    """The compression format of the file at ``path`` (None: not
    compressed, or not readable: its reader says why)."""
    from . import compressed

    try:
        with open_capture(path) as fh:
            return fh.kind if isinstance(fh, compressed.Decompressed) else None
    except OSError:
        return None


def read_once(path: str | Path) -> bool:
    """Whether ``path`` can only be read once, from its start to its end:
    standard input, a pipe, a device.  Such input cannot be cut into
    chunks, read ahead or read again."""
    name = str(path)
    if name == STDIN:
        return True
    if is_url(name):
        return False
    try:
        return not stat.S_ISREG(os.stat(name).st_mode)
    except OSError:
        return False


def _head(fh: BinaryIO, n: int) -> tuple[bytes, BinaryIO]:
    """The first ``n`` bytes of ``fh`` (fewer in a shorter file) and a
    stream that reads ``fh`` from its first byte again: ``fh`` itself,
    sought back, or (a pipe) those bytes followed by the rest."""
    if fh.seekable():
        head = fh.read(n)
        fh.seek(0)
        return head, fh
    head = b""
    while len(head) < n:
        more = fh.read(n - len(head))
        if not more:
            break
        head += more
    return head, cast("BinaryIO", _Prefixed(head, fh))


class _Prefixed(io.RawIOBase):
    """``head`` followed by what is left of ``fh``, for a stream that
    cannot seek back (a pipe) once its first bytes were read."""

    def __init__(self, head: bytes, fh: BinaryIO) -> None:
        self.head = head
        self.fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, into: Any) -> int:
        """Fill ``into`` (less only at the end): the byte count."""
        view = memoryview(into).cast("B")
        got = min(len(self.head), len(view))
        view[:got] = self.head[:got]
        self.head = self.head[got:]
        while got < len(view):
            n = self.fh.readinto(view[got:])  # type: ignore[attr-defined]  # (every stream here has it)
            if not n:
                break
            got += n
        return got

    def read1(self, n: int = -1) -> bytes:
        """The first bytes if any are left, else what ``fh`` has ready."""
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return bytes(self.fh.read1(n))  # type: ignore[attr-defined]  # (follow's streams have it)

    def close(self) -> None:
        if not self.closed:
            self.fh.close()
        super().close()


FOLLOW_CHUNK = 1 << 16  # follow mode's reads: what has arrived, up to this (or a record)


def iter_batches(
    path: str | Path, chunk_size: int = CHUNK, follow: bool = False
) -> Iterator[RawBatch]:
    """Yield :class:`RawBatch` es for the file; raise :class:`CaptureError`
    at the first unreadable byte, after yielding everything before it.
    With ``follow`` (a live pipe), each batch is what has arrived, not a
    full chunk."""
    name = str(path)
    with open_capture(name) as opened:
        kind: str | None = getattr(opened, "kind", None)  # (compressed: its format)
        head, fh = _head(opened, 4)
        if not head:
            _damaged(name, opened, 0)
            raise EmptyCaptureError(name, f"{kind}: decompresses to 0 bytes" if kind else
                                    "empty file (0 bytes)")  # fmt: skip
        if len(head) < 4:
            _damaged(name, opened, len(head))
            raise CaptureError(name, 0, f"truncated file header ({len(head)} bytes)")
        size = FOLLOW_CHUNK if follow else _read_size(fh, chunk_size)
        ch = _Chunker(fh, size=size, follow=follow)
        magic_le = struct.unpack("<I", head)[0]
        magic_be = struct.unpack(">I", head)[0]
        try:
            if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or magic_be in (
                PCAP_MAGIC_US,
                PCAP_MAGIC_NS,
            ):
                yield from _pcap(name, ch)
            elif magic_le == PCAPNG_SHB:
                yield from _pcapng(name, ch)
            else:
                raise CaptureError(name, 0, f"not a pcap or pcapng file (magic 0x{magic_be:08x})")
        except CaptureError as err:
            _damaged(name, opened, err.offset)
            if kind is None:
                raise
            raise CaptureError(name, err.offset, err.reason, decompressed=True) from None
        _damaged(name, opened, ch.base + len(ch.buf))


def _damaged(name: str, fh: BinaryIO, offset: int) -> None:
    """Raise the damage a compressed capture's data ended at, if any (the
    records before it were handed out): at ``offset``, the decompressed
    bytes read."""
    damage = getattr(fh, "damage", None)
    if damage is not None:
        raise CaptureError(name, min(offset, fh.tell()), damage, decompressed=True)


def _read_size(fh: BinaryIO, chunk_size: int) -> int:
    """The size of each read: ``chunk_size``, or less for a file smaller
    than that (every read allocates and zeroes its buffer first: 8 MB for a
    one-packet file cost as much as the rest of its analysis)."""
    try:
        st = os.fstat(fh.fileno())
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return chunk_size  # (not a file of this machine: fsspec's)
    if not stat.S_ISREG(st.st_mode):
        return chunk_size  # (a pipe, a device: its size says nothing)
    return min(chunk_size, max(st.st_size, 1 << 16))


# -- pcap --------------------------------------------------------------------


def _pcap(name: str, ch: _Chunker) -> Iterator[RawBatch]:
    ch.refill(24, least=24)
    if len(ch.buf) < 24:
        raise CaptureError(name, len(ch.buf), "truncated pcap file header (24 bytes expected)")
    big = struct.unpack(">I", ch.buf[:4])[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS)
    e = ">" if big else "<"
    magic, vmaj, _vmin, _tz, _sig, snaplen, linktype = struct.unpack(e + "IHHiIII", ch.buf[:24])
    if vmaj != 2:
        raise CaptureError(name, 4, f"unsupported pcap version {vmaj}")
    scale = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
    # The upper bits of the link-type field carry FCS information (pcap spec §5).
    linktype &= 0xFFFF
    maxcap = max(MAX_SNAPLEN, min(snaplen, 1 << 24))
    ch.consumed = 24
    frame = 1
    unpack = struct.Struct(e + "I").unpack_from
    while True:
        buf = ch.buf
        n = len(buf)
        off = ch.consumed
        arr = np.frombuffer(buf, dtype=np.uint8)
        parts: list[npt.NDArray[np.int64]] = []
        offs: list[int] = []
        ap = offs.append
        bad: str | None = None
        chain = _pcap_chain(arr, off, n, maxcap, big)
        if chain is not None:
            parts.append(chain[0])
            off = chain[1]
        # Whatever the bulk pass did not take, one record at a time: the
        # record straddling the chunk's end, a corrupt one, or a stretch
        # the bulk pass could not follow.
        while off + 16 <= n:
            caplen = unpack(buf, off + 8)[0]
            if caplen > maxcap:
                bad = f"corrupt pcap record header: captured length {caplen} exceeds {maxcap}"
                break
            end = off + 16 + caplen
            if end > n:
                break
            ap(off)
            off = end
        if offs:
            parts.append(np.array(offs, dtype=np.int64))
        if parts:
            o = np.concatenate(parts) if len(parts) > 1 else parts[0]
            # The four header words of every record in one gather.
            words = _u32_rows(arr, o, 4, big)
            sec, frac, cap = words[:, 0], words[:, 1], words[:, 2]
            yield RawBatch(
                buf=arr,
                data_off=o + 16,
                caplen=cap,
                wirelen=np.maximum(words[:, 3], cap),
                ts=sec + frac * scale,
                linktype=np.full(o.size, linktype, dtype=np.int64),
                frame=np.arange(frame, frame + o.size, dtype=np.int64),
                file_offset=ch.base,
                padded=ch.padded,
            )
            frame += o.size
        ch.consumed = off
        if bad is not None:
            raise CaptureError(name, ch.base + off, bad)
        if not ch.refill(16 + maxcap):
            left = len(ch.buf) - ch.consumed
            if left == 0:
                return
            at = ch.base + ch.consumed
            if left < 16:
                raise CaptureError(name, at, f"truncated pcap record header ({left} of 16 bytes)")
            caplen = unpack(ch.buf, ch.consumed + 8)[0]
            raise CaptureError(
                name, at, f"truncated pcap record: {caplen} bytes announced, {left - 16} present"
            )


def _pcap_chain(
    arr: npt.NDArray[np.uint8], start: int, n: int, maxcap: int, big: bool
) -> tuple[npt.NDArray[np.int64], int] | None:
    """Offsets of the complete records that follow each other from ``start``,
    found in bulk, and the offset after the last; None when there are none.

    Each record's captured length says where the next starts, so the walk
    is sequential; here it is done on a candidate set instead.  Candidates
    are the positions whose timestamp's most significant byte equals the
    first record's (true for every record of a capture spanning less than
    194 days; a few packet bytes match too) and whose record fits in the
    chunk; each candidate points at the position its length announces, and
    the records are the chain of those pointers from ``start``, followed by
    pointer doubling (log2 of the chain's length vectorised steps).  A false
    candidate is harmless: the chain only ever visits positions announced by
    true records.  The chain stops early at a record that is not a
    candidate; the caller carries on from there one record at a time."""
    if start + 16 > n:
        return None
    msb = 0 if big else 3  # the most significant byte of ts_sec
    top = arr[start + msb]
    cand = np.flatnonzero(arr[start + msb : n - 16 + msb + 1] == top) + start
    caplen = _u32(arr, cand + 8, big)
    nxt = cand + 16 + caplen
    keep = (caplen <= maxcap) & (nxt <= n)
    cand, nxt = cand[keep], nxt[keep]
    m = cand.size
    if not m or cand[0] != start:
        return None
    at = _next_at(cand, nxt)
    step = np.where(cand[np.minimum(at, m - 1)] == nxt, at, m)
    chain = _chain_by_targets(step, m)
    if chain is not None:
        return cand[chain], int(nxt[chain[-1]])
    step = np.append(step, m)  # m: past the chain's end, and stays there
    # After k rounds ``chain`` holds the nodes at distances 0 .. 2**k - 1 from
    # ``start``, in order, and ``step`` jumps 2**k nodes.
    chain = np.zeros(1, dtype=np.int64)
    while True:
        more = step[chain]
        more = more[more < m]
        if not more.size:
            break
        chain = np.concatenate([chain, more])
        step = step[step]
    return cand[chain], int(nxt[chain[-1]])


# Candidates after its own that :func:`_next_at` steps over one round at a
# time before it searches.
NEXT_ROUNDS = 4


def _next_at(cand: npt.NDArray[np.int64], nxt: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``np.searchsorted(cand, nxt)`` for candidates ``cand`` (sorted) and
    the positions ``nxt`` their records announce (each past its own
    candidate): the next record is nearly always the next candidate or one
    of the few after it (a payload byte seldom passes for a timestamp's top
    byte), so each target steps forward from its own candidate, a round
    (one gather) at a time, and only those still short after
    ``NEXT_ROUNDS`` rounds (the false candidates' random lengths) are
    searched.  A binary search of every target cost 0.75 ms a 4 MB chunk
    (its branches are unpredictable), the rounds about 0.12."""
    m = cand.size
    at = np.arange(1, m + 1)
    ends = np.append(cand, np.iinfo(np.int64).max)  # (at == m: past every candidate)
    short = np.flatnonzero(ends[at] < nxt)
    for _ in range(NEXT_ROUNDS):
        if not short.size:
            return at
        at[short] += 1
        short = short[ends[at[short]] < nxt[short]]
    at[short] = np.searchsorted(cand, nxt[short])
    return at


def _chain_by_targets(
    step: npt.NDArray[np.int64], m: int, rounds: int = 3
) -> npt.NDArray[np.int64] | None:
    """The chain of candidates from candidate 0 when few candidates are off
    it (the usual case: a payload byte seldom passes for a timestamp's top
    byte), in a few vectorised passes instead of pointer doubling's log2.

    Every candidate but 0 on the chain is some candidate's target, and every
    pointer goes forward; so the candidates that are targets of targets ...
    (a few rounds) of the others, with 0, are the chain plus at most a few
    stragglers, and the answer is accepted only if it checks out: each node
    points at the next and the last past the chain's end.  None otherwise
    (the caller doubles pointers)."""
    on = np.ones(m, dtype=bool)
    for _ in range(rounds):
        hit = np.zeros(m + 1, dtype=bool)
        hit[step[on]] = True
        hit[0] = True
        if np.array_equal(hit[:m], on):
            break
        on = hit[:m]
    nodes = np.flatnonzero(on)
    if step[nodes[-1]] != m or not np.array_equal(step[nodes[:-1]], nodes[1:]):
        return None
    return nodes


# -- pcapng ------------------------------------------------------------------


@dataclass(slots=True)
class _Section:
    big: bool = False
    ifaces: list[_Interface] = field(default_factory=list)


def _idb(name: str, at: int, body: bytes, big: bool) -> _Interface:
    e = ">" if big else "<"
    if len(body) < 8:
        raise CaptureError(name, at, "corrupt pcapng interface description block")
    linktype, _res, snaplen = struct.unpack_from(e + "HHI", body, 0)
    iface = _Interface(linktype, snaplen)
    pos = 8
    while pos + 4 <= len(body):
        code, olen = struct.unpack_from(e + "HH", body, pos)
        val = body[pos + 4 : pos + 4 + olen]
        if code == 0:
            break
        if code == 9 and olen >= 1:  # if_tsresol: 10^-v, or 2^-v when the MSB is set
            v = val[0]
            # Timestamps are 64-bit counts; a finer unit than 10^-18 / 2^-62
            # would overflow the int64 arithmetic of the bulk decoder.
            if (v & 0x7F) > (62 if v & 0x80 else 18):
                raise CaptureError(
                    name, at + pos, f"unsupported timestamp resolution (if_tsresol {v:#x})"
                )
            iface.div = 1 << (v & 0x7F) if v & 0x80 else 10**v
        elif code == 14 and olen >= 8:  # if_tsoffset, seconds
            iface.offset = float(struct.unpack(e + "q", val[:8])[0])
        pos += 4 + ((olen + 3) & ~3)
    return iface


def _pcapng(name: str, ch: _Chunker, one_section: bool = False) -> Iterator[RawBatch]:
    """The records of a pcapng stream, section after section; with
    ``one_section`` (a chunk of a cut file: its file's first section
    header, then the chunk's blocks), a second Section Header Block is a
    :class:`CaptureError`: the interfaces and byte order of the sections
    before it, in earlier chunks, are not known here."""
    sec = _Section()
    frame = 1
    ch.refill(12, least=12)
    while True:
        buf = ch.buf
        n = len(buf)
        off = ch.consumed
        epb: list[int] = []
        # Packet blocks other than EPB (SPB/OPB) are rare; decode them here.
        other: list[
            tuple[int, int, int, float, int, int]
        ] = []  # frame order: (pos, data_off, caplen, ts, linktype, wirelen)
        order: list[int] = []  # 0 = next EPB, 1 = next "other"
        bad: str | None = None
        flush = False
        u2 = struct.Struct((">" if sec.big else "<") + "II").unpack_from
        while off + 12 <= n:
            btype, blen = u2(buf, off)
            if btype == PCAPNG_SHB:
                if epb or other:
                    flush = True  # the byte order may change: yield what we have
                    break
                if one_section and ch.base + off:
                    bad = "a pcapng section header inside the chunk"
                    break
                if off + 12 > n:
                    break
                bom_le = struct.unpack_from("<I", buf, off + 8)[0]
                if bom_le == PCAPNG_BOM:
                    sec = _Section(big=False)
                elif struct.unpack_from(">I", buf, off + 8)[0] == PCAPNG_BOM:
                    sec = _Section(big=True)
                else:
                    bad = "corrupt pcapng section header: bad byte-order magic"
                    break
                u2 = struct.Struct((">" if sec.big else "<") + "II").unpack_from
                blen = u2(buf, off)[1]
            if blen < 12 or blen % 4:
                bad = f"corrupt pcapng block: length {blen} (type 0x{btype:x})"
                break
            if blen > MAX_SNAPLEN * 4 + 64:
                bad = f"corrupt pcapng block: length {blen} exceeds {MAX_SNAPLEN * 4 + 64}"
                break
            end = off + blen
            if end > n:
                break
            if u2(buf, end - 8)[1] != blen:
                bad = f"corrupt pcapng block: trailing length differs from {blen}"
                break
            if btype == BT_EPB:
                if blen < 32:
                    bad = "corrupt pcapng enhanced packet block: too short"
                    break
                epb.append(off)
                order.append(0)
            elif btype == BT_IDB:
                sec.ifaces.append(_idb(name, ch.base + off, bytes(buf[off + 8 : end - 4]), sec.big))
            elif btype in (BT_SPB, BT_OPB):
                try:
                    rec = _other_packet(name, ch.base + off, buf, off, blen, btype, sec)
                except CaptureError as exc:
                    bad = exc.reason
                    break
                other.append(rec)
                order.append(1)
            off = end
        if epb or other:
            batch, bad_at = _ng_batch(buf, epb, other, order, sec, frame, ch.base)
            batch.padded = ch.padded
            if len(batch):
                yield batch
            frame += len(batch)
            if bad_at is not None:
                raise CaptureError(name, ch.base + bad_at[0], bad_at[1])
        ch.consumed = off
        if bad is not None:
            raise CaptureError(name, ch.base + off, bad)
        if flush:
            continue
        if not ch.refill(MAX_SNAPLEN * 4 + 64):
            left = len(ch.buf) - ch.consumed
            if left == 0:
                return
            at = ch.base + ch.consumed
            if left < 12:
                raise CaptureError(name, at, f"truncated pcapng block header ({left} of 12 bytes)")
            blen = u2(ch.buf, ch.consumed)[1]
            raise CaptureError(
                name, at, f"truncated pcapng block: {blen} bytes announced, {left} present"
            )


def _other_packet(
    name: str, at: int, buf: memoryview, off: int, blen: int, btype: int, sec: _Section
) -> tuple[int, int, int, float, int, int]:
    e = ">" if sec.big else "<"
    if btype == BT_SPB:
        # SPB: interface 0, no timestamp; captured length from snaplen and block length.
        if not sec.ifaces:
            raise CaptureError(name, at, "pcapng simple packet block before any interface")
        iface = sec.ifaces[0]
        origlen = struct.unpack_from(e + "I", buf, off + 8)[0]
        cap = min(origlen, blen - 16, iface.snaplen or origlen)
        return (off, off + 12, cap, float("nan"), iface.linktype, max(origlen, cap))
    if blen < 32:
        raise CaptureError(name, at, "corrupt pcapng packet block: too short")
    ifid, _drops, hi, lo, cap, olen = struct.unpack_from(e + "HHIIII", buf, off + 8)
    if ifid >= len(sec.ifaces):
        raise CaptureError(name, at, f"pcapng packet block names unknown interface {ifid}")
    if cap > blen - 32:
        raise CaptureError(name, at, f"corrupt pcapng packet block: captured length {cap}")
    iface = sec.ifaces[ifid]
    units = (hi << 32) | lo
    ts = units // iface.div + (units % iface.div) / iface.div + iface.offset
    return (off, off + 28, cap, ts, iface.linktype, max(olen, cap))


def _ng_batch(
    buf: memoryview,
    epb: list[int],
    other: list[tuple[int, int, int, float, int, int]],
    order: list[int],
    sec: _Section,
    frame: int,
    base: int,
) -> tuple[RawBatch, tuple[int, str] | None]:
    """Decode the located packet blocks in bulk; a bad block truncates the
    batch there and is returned as ``(block offset, reason)``."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    o = np.array(epb, dtype=np.int64)
    big = sec.big
    # Block length, interface, timestamp (2 words), captured and original
    # length: one gather.
    w = _u32_rows(arr, o + 4, 6, big)
    blen, ifid, cap = w[:, 0], w[:, 1], w[:, 4]
    units = (w[:, 2] << 32) | w[:, 3]
    olen = np.maximum(w[:, 5], cap)
    nif = len(sec.ifaces)
    known = ifid < nif
    safe = np.where(known, ifid, 0)
    if nif:
        div = np.array([i.div for i in sec.ifaces], dtype=np.int64)[safe]
        tsoff = np.array([i.offset for i in sec.ifaces])[safe]
        lt = np.array([i.linktype for i in sec.ifaces], dtype=np.int64)[safe]
    else:
        div = np.ones(o.size, dtype=np.int64)
        tsoff = np.zeros(o.size)
        lt = np.zeros(o.size, dtype=np.int64)
    # Integer split first: nanosecond units since 1970 exceed a double's 53 bits.
    ts = units // div + (units % div) / div + tsoff
    n = len(order)
    kinds = np.array(order, dtype=np.int8)
    is_epb = kinds == 0
    d_off = np.empty(n, dtype=np.int64)
    d_cap = np.empty(n, dtype=np.int64)
    d_ts = np.empty(n, dtype=np.float64)
    d_lt = np.empty(n, dtype=np.int64)
    d_wire = np.empty(n, dtype=np.int64)
    blk = np.empty(n, dtype=np.int64)
    d_off[is_epb], d_cap[is_epb], d_ts[is_epb], d_lt[is_epb] = o + 28, cap, ts, lt
    d_wire[is_epb] = olen
    blk[is_epb] = o
    ok = np.ones(n, dtype=bool)
    reasons = np.zeros(n, dtype=np.int8)
    ok[is_epb] = known & (cap <= blen - 32)
    reasons[is_epb] = np.where(known, 2, 1)
    if other:
        ot = np.array([r[1:] for r in other], dtype=np.float64).reshape(-1, 5)
        d_off[~is_epb] = ot[:, 0].astype(np.int64)
        d_cap[~is_epb] = ot[:, 1].astype(np.int64)
        d_ts[~is_epb] = ot[:, 2]
        d_lt[~is_epb] = ot[:, 3].astype(np.int64)
        d_wire[~is_epb] = ot[:, 4].astype(np.int64)
        blk[~is_epb] = np.array([r[0] for r in other], dtype=np.int64)
        # Simple Packet Blocks carry no timestamp: take the previous packet's.
        nan = np.isnan(d_ts)
        if nan.any():
            idx = np.where(nan, 0, np.arange(n))
            np.maximum.accumulate(idx, out=idx)
            d_ts = np.where(nan, d_ts[idx], d_ts)
            d_ts = np.nan_to_num(d_ts, nan=0.0)
    bad_at: tuple[int, str] | None = None
    if not ok.all():
        i = int(np.argmax(~ok))
        why = (
            f"pcapng packet block names unknown interface {int(ifid[np.cumsum(is_epb)[i] - 1])}"
            if reasons[i] == 1
            else f"corrupt pcapng packet block: captured length {int(d_cap[i])}"
        )
        bad_at = (int(blk[i]), why)
        n = i
    batch = RawBatch(
        arr,
        d_off[:n],
        d_cap[:n],
        d_ts[:n],
        d_lt[:n],
        np.arange(frame, frame + n, dtype=np.int64),
        base,
        d_wire[:n],
    )
    return batch, bad_at
