"""Capture sets (``finwait analyze --set``): a kernel capture cut into a
rotated set by ``tcpdump -C 1`` gives, taken as a set, record for record what
the original file gives; without ``--set`` the files stay independent; a
damaged file inside the set is reported with its name and offset while the
rest of the set is still analysed."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from finwait.analyze import analyze_file
from finwait.analyze.sets import analyze_set
from finwait.capture.reader import iter_batches
from finwait.cli import main

from .rotated import PORT, kernel_capture, rotate

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    d = tmp_path_factory.mktemp("rotated")
    orig = kernel_capture(d / "orig.pcap")
    parts = rotate(orig, d / "set")
    assert len(parts) >= 3, [p.stat().st_size for p in parts]
    # One piece as pcapng: a set may mix the formats.
    to_pcapng(parts[1], parts[1].with_name("part1.pcapng"))
    parts[1].unlink()
    parts[1] = parts[1].with_name("part1.pcapng")
    return orig, parts


def to_pcapng(src: Path, dst: Path) -> None:
    """The records of a pcap file as a pcapng file (SHB, one IDB, EPBs)."""
    head = src.read_bytes()[:24]
    linktype = struct.unpack("<I", head[20:24])[0] & 0xFFFF
    out = [struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)]
    out.append(struct.pack("<IIHHII", 1, 20, linktype, 0, 262144, 20))
    for b in iter_batches(src):
        buf = b.buf.tobytes()
        wire = b.caplen if b.wirelen is None else b.wirelen
        for off, cap, ts, wl in zip(b.data_off.tolist(), b.caplen.tolist(), b.ts.tolist(),
                                    wire.tolist(), strict=True):  # fmt: skip
            us = round(ts * 1e6)
            pad = (-cap) % 4
            blen = 32 + cap + pad
            out.append(
                struct.pack("<IIIIIII", 6, blen, 0, us >> 32, us & 0xFFFFFFFF, cap, wl)
                + buf[off : off + cap] + bytes(pad) + struct.pack("<I", blen)
            )  # fmt: skip
    dst.write_bytes(b"".join(out))


def _strip(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "files"} for r in recs]


def test_set_equals_original(rotated: tuple[Path, list[Path]]) -> None:
    orig, parts = rotated
    want = list(analyze_file(orig).records())
    # Given in the wrong order: the set is ordered by first timestamps.
    res = analyze_set(parts[::-1])
    assert res.error is None
    assert res.files == [str(p) for p in parts]
    got = list(res.records())
    assert _strip(got) == want
    crossing = [r for r in got if len(r["files"]) > 1]
    assert len(crossing) >= 2, "no connection crosses a file boundary: the test proves nothing"
    # Each record's files: those holding its first and last frames, and in
    # between exactly those where its 4-tuple has packets (each connection
    # here has its own client port).
    sizes = [sum(len(b) for b in iter_batches(p)) for p in parts]
    bounds = [sum(sizes[:k]) for k in range(len(sizes) + 1)]

    def file_of(frame: int) -> int:
        return next(k for k in range(len(sizes)) if bounds[k] < frame <= bounds[k + 1])

    ports_in = [
        {x["client"]["port"] for x in analyze_file(p).records()}
        | {x["server"]["port"] for x in analyze_file(p).records()}
        for p in parts
    ]
    for r in got:
        lo, hi = file_of(r["first_frame"]), file_of(r["last_frame"])
        want_files = [
            str(parts[k]) for k in range(lo, hi + 1) if r["client"]["port"] in ports_in[k]
        ]
        assert r["files"] == want_files
        assert r["files"][0] == str(parts[lo]) and r["files"][-1] == str(parts[hi])


def test_without_set_files_are_independent(rotated: tuple[Path, list[Path]]) -> None:
    orig, parts = rotated
    n = analyze_file(orig).n
    apart = sum(analyze_file(p).n for p in parts)
    assert apart > n  # each crossing connection counted once per file


def test_cli_set_dir_json(rotated: tuple[Path, list[Path]]) -> None:
    orig, parts = rotated
    r1 = CliRunner().invoke(main, ["analyze", "--json", str(orig)])
    r2 = CliRunner().invoke(main, ["analyze", "--set", "--json", str(parts[0].parent)])
    assert r1.exit_code == 0 and r2.exit_code == 0, r2.output
    a = [json.loads(x) for x in r1.output.splitlines()]
    b = [json.loads(x) for x in r2.output.splitlines()]
    assert _strip(b) == a
    assert all(x["files"] for x in b)
    # A directory without --set is refused in one line.
    r3 = CliRunner().invoke(main, ["analyze", str(parts[0].parent)])
    assert r3.exit_code == 2 and "is a directory" in r3.output and "Traceback" not in r3.output
    r4 = CliRunner().invoke(main, ["analyze", "--json", str(parts[0].parent), "--set"])
    assert r4.exit_code == 0 and r4.output == r2.output


def test_damaged_file_in_set(rotated: tuple[Path, list[Path]], tmp_path: Path) -> None:
    _, parts = rotated
    d = tmp_path / "damaged"
    d.mkdir()
    copies = [Path(shutil.copy(p, d / p.name)) for p in parts]
    # Corrupt a record header in the middle of the first (pcap) file.
    first = next(iter_batches(copies[0]))
    at = int(first.data_off[len(first) // 2]) - 16
    raw = bytearray(copies[0].read_bytes())
    raw[at + 8 : at + 12] = struct.pack("<I", 0x7FFFFFFF)
    copies[0].write_bytes(bytes(raw))
    r = CliRunner().invoke(main, ["analyze", "--set", "--json", str(d)])
    assert r.exit_code == 2
    err = [x for x in r.output.splitlines() if x.startswith("finwait analyze:")]
    assert err == [f"finwait analyze: {copies[0]}: corrupt pcap record header: captured "
                   f"length {0x7FFFFFFF} exceeds 262144 at byte offset {at}"]  # fmt: skip
    # (the count under it says what was kept: the other files too, not only
    # what came before the damage)
    assert "the set's other files, and each damaged one up to its damage" in r.output
    got = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    # Every connection with packets in the later files is still reported
    # (by its ephemeral port: a connection whose start was in the damaged
    # part may lose its client/server roles), and every packet of those files read.
    later = {p.name for p in parts[1:]}
    clean = analyze_set(parts)

    def ports(recs: list[dict[str, Any]]) -> set[int]:
        out = set()
        for x in recs:
            if {Path(f).name for f in x["files"]} & later:
                out |= {x["client"]["port"], x["server"]["port"]} - {PORT}
        return out

    want = ports(list(clean.records()))
    assert want and ports(got) == want
    read_later = sum(len(b) for p in parts[1:] for b in iter_batches(p))
    assert read_later < sum(len(b) for p in parts for b in iter_batches(p))
    out = CliRunner().invoke(main, ["analyze", "--set", "--stats", str(d)]).output
    stats = json.loads(next(x for x in out.splitlines() if x.startswith("{")))
    assert stats["packets_read"] == read_later + len(first) // 2


@pytest.mark.parametrize(
    "args",
    [
        ["--workers", "2", "--chunk-mb", "0.25", "ORIG"],
        ["--set", "--workers", "2", "--chunk-mb", "0.25", "DIR"],
        ["--dask", "local:2", "--chunk-mb", "0.25", "ORIG"],
        ["--set", "--dask", "local:2", "--chunk-mb", "0.25", "DIR"],
    ],
    ids=["workers", "set-workers", "dask", "set-dask"],
)
def test_parallel_runs_equal_sequential(rotated: tuple[Path, list[Path]], args: list[str]) -> None:
    if "--dask" in args:
        pytest.importorskip("distributed")
    orig, parts = rotated
    argv = [str(orig) if a == "ORIG" else str(parts[0].parent) if a == "DIR" else a for a in args]
    want = CliRunner().invoke(main, ["analyze", "--json", str(orig)])
    got = CliRunner().invoke(main, ["analyze", "--json", *argv])
    assert got.exit_code == 0, got.output
    a = [json.loads(x) for x in want.output.splitlines()]
    b = [json.loads(x) for x in got.output.splitlines() if x.startswith("{")]
    assert _strip(b) == a and len(a) >= 20
    if "--set" in args:
        assert all(x["files"] for x in b)


def test_set_files_are_chunked(rotated: tuple[Path, list[Path]]) -> None:
    from finwait.analyze.chunks import plan

    _, parts = rotated
    assert all(len(plan(p, 1 << 18)) >= 2 for p in parts)
