"""atheris harness: the capture reader and the analyzer behind it.

Any byte string is a capture file (its first byte picks the chunk size and
how far to go).  ``finwait.capture.reader.iter_batches``
with ``finwait.capture.decode.decode`` (as ``finwait analyze`` runs them, and
with a small chunk size so records straddle chunk boundaries) may only yield
batches or raise ``CaptureError`` with a reason and an offset inside the file;
every batch it yields must point inside its buffer.  Run: see fuzz/README.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections import Counter

import atheris

with atheris.instrument_imports(include=["finwait"]):
    from finwait.analyze.run import analyze_file
    from finwait.capture.decode import decode
    from finwait.capture.reader import CaptureError, iter_batches

_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_FD, _PATH = tempfile.mkstemp(prefix="finwait-fuzz-", suffix=".pcap", dir=_DIR)
os.close(_FD)


# Findings already reported, each with an xfail(strict=True) regression test in
# tests/security/test_malformed_captures.py: (exception type, innermost
# finwait function).  They are counted, not fatal, so the run goes on to look
# for others; when the reader is fixed the xfail turns into a failure and the
# entry is removed from here.
KNOWN: dict[tuple[str, str], str] = {}
known_hits: dict[str, int] = {}


def _known(exc: BaseException) -> str | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/finwait/" in f.filename]
    if not frames:
        return None
    return KNOWN.get((type(exc).__name__, frames[-1].name))


def test_one_input(data: bytes) -> None:
    try:
        _one_input(data)
    except Exception as exc:
        why = _known(exc)
        if why is None:
            raise
        if why not in known_hits:
            print(f"known finding: {why}", file=sys.stderr)
        known_hits[why] = known_hits.get(why, 0) + 1


def _one_input(data: bytes) -> None:
    if not data:
        return
    mode = data[0]
    chunk = 64 << (mode & 0x0F)  # 64 B .. 2 MB: records straddle chunk boundaries
    body = data[1:]
    with open(_PATH, "wb") as fh:
        fh.write(body)
    counts: Counter[str] = Counter()
    try:
        for batch in iter_batches(_PATH, chunk_size=chunk):
            if len(batch):
                assert int(batch.data_off.min()) >= 0
                assert int((batch.data_off + batch.caplen).max()) <= batch.buf.size
            if mode & 0x30 == 0x30:  # a quarter of the inputs: header decoding too
                decode(batch, counts)
    except CaptureError as exc:
        assert exc.reason, exc
        assert 0 <= exc.offset <= len(body), (exc.offset, len(body))
    if mode & 0xF0 == 0xF0:
        # One input in sixteen: the whole analyzer (classification) on what was read.
        result = analyze_file(_PATH, chunk_size=chunk)
        assert result.records_read >= 0


def main() -> None:
    try:
        atheris.Setup(sys.argv, test_one_input)
        atheris.Fuzz()
    finally:
        os.unlink(_PATH)
        print(f"known findings hit: {known_hits}", file=sys.stderr)


if __name__ == "__main__":
    main()
