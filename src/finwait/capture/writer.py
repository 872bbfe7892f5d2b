"""Writing classic pcap files, and a Trace as one a Wireshark user can open.

Read the pcap format (draft-ietf-opsawg-pcap: the 24-byte file header, the
16-byte record header, the microsecond magic 0xA1B2C3D4 and nanosecond magic
0xA1B23C4D) and the link-type registry (LINKTYPE_RAW = 101: each record is
one IPv4 or IPv6 packet, told apart by its version nibble).  Files are written
in little-endian order, as libpcap does on the machines finwait runs on;
readers take either order from the magic.

:func:`write_trace` puts every segment of a Trace on the "wire" at its send
time, encoded by :mod:`finwait.wire.ip`: also those lost on the link (the
sender did transmit them; ``include_lost=False`` leaves them out, as a capture
at the receiver would), and those a receiver dropped.  A segment dropped for
a bad checksum is written with a deliberately wrong TCP checksum, so Wireshark
flags it as the receiver saw it.
"""

from __future__ import annotations

import math
import os
import struct
from types import TracebackType
from typing import BinaryIO

from ..trace import LOST, SegmentEvent, Trace
from ..wire.ip import encode_packet

LINKTYPE_RAW = 101
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_VERSION = (2, 4)
DEFAULT_SNAPLEN = 262_144  # libpcap's MAXIMUM_SNAPLEN

# magic, version major, minor, thiszone, sigfigs, snaplen, link type
_FILE_HEADER = struct.Struct("<IHHiIII")
# seconds, micro- or nanoseconds, captured length, original length
_RECORD_HEADER = struct.Struct("<IIII")

_BAD_CHECKSUM = "bad checksum"
_FLUSH_AT = 1 << 16  # bytes of whole records gathered before a write


class PcapWriter:
    """A pcap file being written: ``write(packet, t)`` per record.

    ``dest`` is a path (opened, and closed by :meth:`close`) or a binary file
    object (left open).  Times are seconds since the epoch or since the start
    of a simulation, as floats; they are rounded to the file's resolution.
    """

    def __init__(
        self,
        dest: str | os.PathLike[str] | BinaryIO,
        linktype: int = LINKTYPE_RAW,
        nanosecond: bool = False,
        snaplen: int = DEFAULT_SNAPLEN,
    ) -> None:
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be in 1..2**32-1, not {snaplen}")
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"link type must be in 0..65535, not {linktype}")
        self.linktype = linktype
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.packets = 0
        self._units = 1_000_000_000 if nanosecond else 1_000_000
        self._owns: bool
        self._file: BinaryIO | None
        # Whole records only: records are gathered here and written out in
        # whole numbers of records, so the file never ends inside one,
        # whenever the process stops (Ctrl-C, SIGTERM, an exception: close()
        # on the way out writes the rest; even SIGKILL leaves a file that ends
        # on a record boundary).  A file object passed in gets each record in
        # one write() call, and is flushed by flush()/close().
        self._buf = bytearray()
        if isinstance(dest, str | os.PathLike):
            # Unbuffered: our own buffer decides where the file may end.
            self._file = open(dest, "wb", buffering=0)  # noqa: SIM115 - closed by close()
            self._owns = True
        else:
            self._file = dest
            self._owns = False
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self._put(_FILE_HEADER.pack(magic, *PCAP_VERSION, 0, 0, snaplen, linktype))
        if self._owns:
            self._drain()  # a valid (empty) capture from the start

    def write(self, packet: bytes | bytearray | memoryview, t: float) -> None:
        """Append one record captured at time ``t`` (seconds, >= 0); a packet
        longer than the snaplen is truncated, its original length kept."""
        if self._file is None:
            raise ValueError("write to a closed PcapWriter")
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"capture time must be a finite number >= 0, not {t}")
        sec, frac = divmod(round(t * self._units), self._units)
        if sec > 0xFFFFFFFF:
            raise ValueError(f"capture time {t} does not fit pcap's 32-bit seconds")
        size = len(packet)
        kept = min(size, self.snaplen)
        # One call: nothing can stop it between the header and the data.
        self._put(_RECORD_HEADER.pack(sec, frac, kept, size) + bytes(packet[:kept]))
        self.packets += 1

    def _put(self, record: bytes) -> None:
        if not self._owns:
            assert self._file is not None
            self._file.write(record)
            return
        self._buf += record
        if len(self._buf) >= _FLUSH_AT:
            self._drain()

    def _drain(self) -> None:
        """Write out every gathered record (an unbuffered file may take a
        write in parts)."""
        if self._file is None or not self._buf:
            return
        view = memoryview(bytes(self._buf))
        self._buf.clear()
        while view:
            n = self._file.write(view)
            view = view[n if n is not None else len(view) :]

    def flush(self) -> None:
        """Everything written so far is in the file, as whole records."""
        if self._file is not None:
            self._drain()
            self._file.flush()

    def close(self) -> None:
        """Flush; close the file if this writer opened it.  Idempotent."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            if self._owns:
                self._file.close()
            self._file = None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def segment_packet(ev: SegmentEvent) -> bytes:
    """The IP packet for one trace event, with a broken TCP checksum when the
    receiver dropped it for a bad checksum."""
    pkt = encode_packet(ev.segment)
    if ev.reason != _BAD_CHECKSUM:
        return pkt
    broken = bytearray(pkt)
    # We emit IPv4 without options (IHL 5) and IPv6 without extension headers.
    at = (20 if pkt[0] >> 4 == 4 else 40) + 16
    # Any change but 0x0000 <-> 0xFFFF (the two one's complement zeros) breaks it.
    broken[at] ^= 0x5A
    return bytes(broken)


def write_trace(
    trace: Trace,
    dest: str | os.PathLike[str] | BinaryIO,
    *,
    include_lost: bool = True,
    nanosecond: bool = False,
) -> int:
    """Write ``trace``'s segments as raw IP packets at their send times, in
    time order; returns the number of packets written.

    Raises ``ValueError`` if a segment cannot be encoded (an address that is
    not one, a field out of range) or a time is negative.
    """
    events = sorted(trace.segments(), key=lambda ev: ev.t)  # stable: ties keep order
    with PcapWriter(dest, LINKTYPE_RAW, nanosecond) as out:
        for ev in events:
            if ev.fate == LOST and not include_lost:
                continue
            out.write(segment_packet(ev), ev.t)
        return out.packets
