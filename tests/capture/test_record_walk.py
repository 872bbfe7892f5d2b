"""The bulk pcap record walk (candidate chain + pointer doubling) against a
plain one-record-at-a-time walk: the same records, whatever the chunk size,
when packet bytes look like record headers, when the timestamps' top byte
changes mid-file, and on damaged files."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest

from finwait.capture.reader import CaptureError, _pcap_chain, iter_batches


def _file(records: list[tuple[int, int, bytes]], big: bool = False) -> bytes:
    e = ">" if big else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101)]
    for sec, usec, data in records:
        out.append(struct.pack(e + "IIII", sec, usec, len(data), len(data)) + data)
    return b"".join(out)


def _reference(data: bytes, big: bool = False) -> list[tuple[int, int]]:
    """(data offset, captured length) of every complete record, one at a time."""
    e = ">" if big else "<"
    off, out = 24, []
    while off + 16 <= len(data):
        caplen = struct.unpack_from(e + "I", data, off + 8)[0]
        if off + 16 + caplen > len(data):
            break
        out.append((off + 16, caplen))
        off += 16 + caplen
    return out


def _walk(path: Path, chunk: int) -> list[tuple[int, int]]:
    got = []
    for b in iter_batches(path, chunk):
        got += list(zip((b.data_off + b.file_offset).tolist(), b.caplen.tolist(), strict=True))
    return got


def _lookalike_records(rng: random.Random, n: int, sec0: int) -> list[tuple[int, int, bytes]]:
    recs = []
    for i in range(n):
        sec = sec0 + i * 600  # ten minutes apart: crosses a top-byte boundary
        # Payloads full of the timestamp's bytes and of fake record headers.
        fake = struct.pack("<IIII", sec, 0, rng.randrange(0, 40), rng.randrange(0, 90))
        body = bytes([sec >> 24 & 0xFF]) * rng.randrange(0, 30) + fake * rng.randrange(0, 3)
        recs.append((sec, rng.randrange(10**6), body + bytes(rng.randrange(0, 20))))
    return recs


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("chunk", [64, 1000, 1 << 20])
def test_bulk_walk_matches_one_at_a_time(tmp_path: Path, big: bool, chunk: int) -> None:
    rng = random.Random(chunk)
    # 0x6BFFxxxx: the timestamps' most significant byte goes 0x6B -> 0x6C.
    data = _file(_lookalike_records(rng, 600, 0x6BFFFFFF - 300 * 600), big)
    path = tmp_path / "w.pcap"
    path.write_bytes(data)
    ref = _reference(data, big)
    assert len(ref) == 600
    assert _walk(path, chunk) == ref


def test_zero_timestamps_and_empty_records(tmp_path: Path) -> None:
    # Timestamp bytes all zero, like every padding byte: many false candidates.
    recs = [(0, 0, bytes(i % 7)) for i in range(500)]
    data = _file(recs)
    path = tmp_path / "z.pcap"
    path.write_bytes(data)
    assert _walk(path, 4096) == _reference(data)


def test_corrupt_length_mid_file_keeps_records_before(tmp_path: Path) -> None:
    recs = _lookalike_records(random.Random(7), 300, 1_700_000_000)
    data = bytearray(_file(recs))
    ref = _reference(bytes(data))
    bad_at = ref[200][0] - 16
    data[bad_at + 8 : bad_at + 12] = (10**7).to_bytes(4, "little")
    path = tmp_path / "c.pcap"
    path.write_bytes(bytes(data))
    got = []
    with pytest.raises(CaptureError) as err:
        for b in iter_batches(path, 1 << 16):
            got += (b.data_off + b.file_offset).tolist()
    assert err.value.offset == bad_at
    assert got == [o for o, _ in ref[:200]]


@pytest.mark.parametrize("big", [False, True])
def test_bulk_pass_takes_every_record_of_a_plain_stretch(big: bool) -> None:
    # Within one top-byte stretch the bulk pass alone finds every record (the
    # one-at-a-time loop is only the fallback), and stops before a partial one.
    data = _file(_lookalike_records(random.Random(3), 400, 1_700_000_000), big)[:-5]
    arr = np.frombuffer(data, dtype=np.uint8)
    found = _pcap_chain(arr, 24, len(data), 262_144, big)
    assert found is not None
    ref = _reference(data, big)
    assert (found[0] + 16).tolist() == [o for o, _ in ref] and len(ref) == 399
    assert found[1] == ref[-1][0] + ref[-1][1]


@pytest.mark.parametrize("big", [False, True])
def test_pointer_doubling_still_walks_when_the_shortcut_declines(
    tmp_path: Path, big: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chain is usually found from the candidates' targets
    # (_chain_by_targets); when that check fails, pointer doubling does it.
    # Both must give the one-at-a-time walk's records.
    from finwait.capture import reader

    data = _file(_lookalike_records(random.Random(5), 600, 0x6BFFFFFF - 300 * 600), big)
    path = tmp_path / "d.pcap"
    path.write_bytes(data)
    ref = _reference(data, big)
    taken: list[bool] = []
    shortcut = reader._chain_by_targets

    def spy(step: np.ndarray, m: int, rounds: int = 3) -> np.ndarray | None:
        out = shortcut(step, m, rounds)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(reader, "_chain_by_targets", spy)
    assert _walk(path, 1 << 20) == ref
    assert any(taken)  # the shortcut serves the lookalike stretches too
    monkeypatch.setattr(reader, "_chain_by_targets", lambda step, m, rounds=3: None)
    assert _walk(path, 1 << 20) == ref
    assert _walk(path, 1000) == ref


def test_chain_by_targets_declines_a_false_chain() -> None:
    from finwait.capture.reader import _chain_by_targets

    # 0 -> 2 -> 4 (end); 1 -> 3 -> 5 -> 6 (end) is a second chain that the
    # rounds do not all remove: the check must refuse it.
    step = np.array([2, 3, 4, 5, 7, 6, 7], dtype=np.int64)
    assert _chain_by_targets(step, 7, rounds=1) is None
    assert _chain_by_targets(np.array([1, 2, 3], dtype=np.int64), 3).tolist() == [0, 1, 2]
    # A lone false candidate (1, pointing past the end) is dropped in one round.
    assert _chain_by_targets(np.array([2, 3, 3], dtype=np.int64), 3).tolist() == [0, 2]
