"""Compressed captures, found by their first bytes whatever the file's name:
gzip (``tcpdump -z gzip``, ``.pcap.gz``), bzip2 and xz through the standard
library; zstd and LZ4 (which Wireshark also reads) through the
``zstandard`` and ``lz4`` packages when they are installed.

The reader sees the decompressed bytes, so its offsets (in errors, in
progress) are offsets in the decompressed capture.  Compressed data that
is damaged or ends early is not an exception out of a read: the stream
ends there and keeps the reason (:attr:`Decompressed.damage`), so the
reader hands out every record before it and then reports it with its
offset, as for a damaged uncompressed file."""

from __future__ import annotations

import io
from typing import Any, BinaryIO

__all__ = ["MAGICS", "Decompressed", "kind_of"]

# (first bytes, format): RFC 1952; bzip2; the xz format; RFC 8878 §3.1.1;
# the LZ4 frame format.
MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
HEAD = max(len(m) for m, _ in MAGICS)  # bytes needed to tell


def kind_of(head: bytes) -> str | None:
    """The compression format ``head`` (a file's first bytes) starts, or
    None for an uncompressed file."""
    return next((kind for magic, kind in MAGICS if head.startswith(magic)), None)


def _open(kind: str, raw: BinaryIO) -> Any:
    """A file object reading ``raw`` decompressed (OSError naming the
    package to install when the format needs one that is missing)."""
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(raw, "rb")
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(raw, "rb")
    if kind == "zstd":
        return _Zstd(raw)
    try:
        import lz4.frame
    except ImportError:
        raise OSError("an LZ4-compressed capture: pip install lz4") from None
    return lz4.frame.LZ4FrameFile(raw, "rb")


BLOCK = 1 << 16  # compressed bytes fed at a time (zstd)


class _Zstd:
    """zstd frames, one after another, as a file object with ``read1``;
    input that ends inside a frame raises EOFError, as the standard
    library's readers do (zstandard's own reader ends quietly there)."""

    def __init__(self, raw: BinaryIO) -> None:
        try:
            import zstandard
        except ImportError:
            raise OSError("a zstd-compressed capture: pip install zstandard") from None
        self.new = zstandard.ZstdDecompressor().decompressobj
        self.raw = raw
        self.dec = self.new()
        self.started = False  # (a frame begun: input after it is another frame)
        self.left = b""  # decompressed, not yet read

    def read1(self, n: int) -> bytes:
        """At most ``n`` bytes (fewer: what one step gave; b"" at the end)."""
        if not self.left:
            self.left = self._step()
        out, self.left = self.left[:n], self.left[n:]
        return out

    def _step(self) -> bytes:
        while True:
            data = b""
            if self.dec.eof:
                data = self.dec.unused_data
                self.dec, self.started = self.new(), False
            if not data:
                data = self.raw.read(BLOCK)
            if not data:
                if self.started:
                    raise EOFError("zstd: input ended inside a frame")
                return b""
            self.started = True
            out: bytes = self.dec.decompress(data)
            if out:
                return out

    def close(self) -> None:
        pass


class Decompressed(io.RawIOBase):
    """``raw`` (a compressed capture, positioned at its start) as its
    decompressed bytes.  Read once from the start: it cannot seek back."""

    def __init__(self, raw: BinaryIO, kind: str) -> None:
        self.raw = raw
        self.kind = kind
        try:
            self.stream = _open(kind, raw)
        except BaseException:
            raw.close()
            raise
        self.pos = 0  # decompressed bytes handed out
        self.damage: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, into: Any) -> int:
        """Fill ``into`` with decompressed bytes (less at the end); at
        damaged compressed data, end the stream and keep the reason."""
        return self._into(memoryview(into).cast("B"))

    def _into(self, view: memoryview, one: bool = False) -> int:
        """Decompressed bytes into ``view``: until it is full or the data
        ends, or (``one``) one step's."""
        if self.damage is not None:
            return 0
        got = 0
        while got < len(view):
            # read1: what one step of decompression gives, so that what came
            # before damaged data has been handed out when a step fails
            # (a readinto of many steps loses them all).
            try:
                data = self.stream.read1(len(view) - got)
            except EOFError:
                self.damage = f"{self.kind}: the compressed data ends early (a truncated file)"
                break
            except Exception as exc:  # (zlib.error, lzma.LZMAError, OSError; zstd's, lz4's)
                self.damage = f"{self.kind}: corrupt compressed data ({exc})"
                break
            if not data:
                break
            view[got : got + len(data)] = data
            got += len(data)
            if one:
                break
        self.pos += got
        return got

    def read1(self, n: int = -1) -> bytes:
        """One step of decompression (what has arrived: follow mode)."""
        buf = bytearray(n if n > 0 else 1 << 16)
        got = self._into(memoryview(buf), one=True)
        return bytes(buf[:got])

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            try:
                self.stream.close()
            finally:
                self.raw.close()
        super().close()
