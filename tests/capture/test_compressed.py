"""Compressed captures (gzip, bzip2, xz; zstd and LZ4 through their
packages), found by their first bytes, and captures read from standard
input: the same connections as the plain file; damage in the compressed
data reported with the decompressed offset, after the records before it."""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from finwait.analyze import Analysis, analyze_file
from finwait.analyze.sets import analyze_set

from .builders import pcap, pcapng, seed_exchange
from .test_reader import check_seed


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def _lz4(data: bytes) -> bytes:
    import lz4.frame

    return bytes(lz4.frame.compress(data))


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bzip2": lambda data: bz2.compress(data, 1),  # (100 kB blocks: the truncation test's data is 2)
    "xz": lzma.compress,
    "zstd": _zstd,
    "lz4": _lz4,
}
FINWAIT = [sys.executable, "-m", "finwait", "analyze"]


def _many(n: int = 300) -> bytes:
    """``n`` copies of the seed's exchange on other client ports: a capture
    of several hundred kB."""
    out = []
    for k in range(n):
        port = (40000 + k).to_bytes(2, "big")
        for t, p in seed_exchange():
            # (the client's port, 40000, as source or destination: IPv4
            # without options, so the TCP header is at byte 20)
            at = 20 if p[20:22] == b"\x9c\x40" else 22
            out.append((t + k * 0.2, p[:at] + port + p[at + 2 :]))
    out.sort(key=lambda x: x[0])
    return pcap(out, 101)


@pytest.mark.parametrize("kind", sorted(COMPRESS))
@pytest.mark.parametrize("ng", [False, True])
def test_compressed_as_plain(tmp_path: Path, kind: str, ng: bool) -> None:
    """Each format, pcap and pcapng, under a name that says nothing: the
    seed's connection as from the plain file."""
    seed = seed_exchange()
    plain = pcapng([(t, p, 0) for t, p in seed], [(101, None)]) if ng else pcap(seed, 101)
    path = tmp_path / "capture"
    path.write_bytes(COMPRESS[kind](plain))
    res = analyze_file(path)
    assert res.error is None and res.n == 1 and res.records_read == 11
    check_seed(res.record(1))


def test_tcpdump_z_gzip_and_workers(tmp_path: Path) -> None:
    """A capture gzipped by gzip itself (what ``tcpdump -z gzip`` leaves),
    several hundred kB: the same JSON Lines as the plain file, sequential,
    with --workers 2 (a compressed file is one chunk) and as a set."""
    plain = tmp_path / "c.pcap"
    plain.write_bytes(_many())
    gz = tmp_path / "c.pcap.gz"
    with gz.open("wb") as out:
        subprocess.run(["gzip", "-c", str(plain)], stdout=out, check=True)
    want = subprocess.run([*FINWAIT, "--json", str(plain)], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    assert want.count("\n") == 300
    for extra in ([], ["--workers", "2", "--chunk-mb", "0.05"]):
        got = subprocess.run([*FINWAIT, "--json", *extra, str(gz)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        assert got == want, extra

    def no_files(res: Analysis) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k != "files"} for r in res.records()]

    assert no_files(analyze_set([gz])) == no_files(analyze_set([plain]))


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
def test_truncated_compressed_file(tmp_path: Path, kind: str) -> None:
    """Compressed data that ends early: the records before it are kept and
    the error says where, in the decompressed capture."""
    data = _many()
    full = COMPRESS[kind](data)
    path = tmp_path / "c.pcap.x"
    path.write_bytes(full[: len(full) * 2 // 3])
    res = analyze_file(path)
    assert res.error is not None
    assert res.error.startswith(f"{path}: {kind}: ")
    assert res.error.endswith("of the decompressed capture")
    assert 0 < res.records_read < 3300
    whole = analyze_file_bytes(tmp_path, data)
    first = [r for r in whole.records() if r["id"] <= res.n // 2]
    assert [r for r in res.records() if r["id"] <= res.n // 2] == first


def analyze_file_bytes(tmp_path: Path, data: bytes) -> Analysis:
    p = tmp_path / "plain.pcap"
    p.write_bytes(data)
    return analyze_file(p)


def test_corrupt_gzip_in_the_cli(tmp_path: Path) -> None:
    """A flipped byte in gzip data: exit 2, the error with the file and
    the decompressed offset, and the connections before it reported."""
    data = bytearray(gzip.compress(_many()))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "c.pcap.gz"
    path.write_bytes(bytes(data))
    run = subprocess.run([*FINWAIT, "--json", str(path)], capture_output=True, text=True)
    assert run.returncode == 2
    assert f"{path}: gzip: " in run.stderr and "of the decompressed capture" in run.stderr
    assert run.stdout.count("\n") > 0


def test_standard_input(tmp_path: Path) -> None:
    """``-`` reads standard input (a pipe: ``tcpdump -w - | finwait
    analyze -``), plain or compressed; a pipe cannot be cut into chunks or
    read ahead: with --workers or --set it is refused with a clear error."""
    data = _many(50)
    plain = tmp_path / "c.pcap"
    plain.write_bytes(data)
    want = subprocess.run([*FINWAIT, "--json", str(plain)], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    for given in (data, gzip.compress(data)):
        got = subprocess.run([*FINWAIT, "--json", "-"], input=given, capture_output=True,
                             check=True).stdout  # fmt: skip
        assert got.decode() == want
    for extra in (["--workers", "2"], ["--set"]):
        run = subprocess.run([*FINWAIT, *extra, "-"], input=data, capture_output=True)
        assert run.returncode == 2
        assert b"-: standard input or a pipe is read once" in run.stderr
    # A truncated capture on standard input: what came before, and exit 2.
    run = subprocess.run([*FINWAIT, "--json", "-"], input=data[:-7], capture_output=True)
    assert run.returncode == 2 and b"-: truncated pcap record" in run.stderr
    assert run.stdout.count(b"\n") == 50
