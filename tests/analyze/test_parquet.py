"""``--parquet``: the connection table read back by DuckDB gives the same
counts as the JSON Lines (close types by first closer, resets per server
port), and pyarrow reads back every JSON Lines record exactly."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from finwait.cli import main

from .test_jsonl import zoo

duckdb = pytest.importorskip("duckdb")
pq = pytest.importorskip("pyarrow.parquet")


def _jsonl(*args: str) -> list[dict[str, Any]]:
    r = CliRunner().invoke(main, ["analyze", "--json", *args])
    assert r.exit_code == 0, r.output
    return [json.loads(x) for x in r.output.splitlines()]


@pytest.mark.parametrize("seed", [4, 5])
def test_duckdb_counts_match_jsonl(tmp_path: Path, seed: int) -> None:
    cap = tmp_path / "zoo.pcap"
    cap.write_bytes(zoo(seed, 400))
    out = tmp_path / "zoo.parquet"
    r = CliRunner().invoke(main, ["analyze", "--parquet", str(out), "--stats", str(cap)])
    assert r.exit_code == 0, r.output
    recs = _jsonl(str(cap))
    assert len(recs) > 300
    con = duckdb.connect()
    closes = dict(
        ((c, f), n)
        for c, f, n in con.execute(
            "SELECT close, first_fin, count(*) FROM read_parquet(?) GROUP BY ALL", [str(out)]
        ).fetchall()
    )
    assert closes == Counter((x["close"], x["first_fin"]) for x in recs)
    assert len(closes) >= 5  # the zoo has many close types: the comparison means something
    resets = dict(
        con.execute(
            "SELECT server.port, count(*) FROM read_parquet(?) WHERE reset_by IS NOT NULL "
            "GROUP BY ALL",
            [str(out)],
        ).fetchall()
    )
    assert resets == Counter(x["server"]["port"] for x in recs if x["reset_by"] is not None)
    assert resets
    # Nested fields: FINs acknowledged by a pure ACK, anomalies by name.
    acked = con.execute(
        "SELECT count(*) FROM read_parquet(?) WHERE fins.client.acked_by.carried_on = 'pure_ack'",
        [str(out)],
    ).fetchone()[0]
    assert acked == sum(
        1 for x in recs if x["fins"]["client"] and (x["fins"]["client"]["acked_by"] or {}).get(
            "carried_on") == "pure_ack"
    )  # fmt: skip
    names = dict(
        con.execute(
            "SELECT a.name, sum(a.count) FROM (SELECT unnest(anomalies) AS a "
            "FROM read_parquet(?)) GROUP BY ALL",
            [str(out)],
        ).fetchall()
    )
    want: Counter[str] = Counter()
    for x in recs:
        for a in x["anomalies"]:
            want[a["name"]] += a["count"]
    assert names == want and want
    # Every record, field for field.
    assert pq.read_table(out).to_pylist() == recs


def test_several_files_and_row_groups(tmp_path: Path) -> None:
    from finwait.analyze import analyze_file
    from finwait.analyze.parquet import write_parquet

    caps = []
    for seed in (6, 7):
        cap = tmp_path / f"z{seed}.pcap"
        cap.write_bytes(zoo(seed, 150))
        caps.append(str(cap))
    out = tmp_path / "two.parquet"
    n = write_parquet([analyze_file(c) for c in caps], out, row_group=100)
    recs = _jsonl(*caps)
    assert n == len(recs) > 200
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == -(-n // 100)
    assert pq.read_table(out).to_pylist() == recs  # each row names its file


def test_empty_capture_writes_an_empty_table(tmp_path: Path) -> None:
    from capture.builders import pcap

    cap = tmp_path / "none.pcap"
    cap.write_bytes(pcap([], 101))
    out = tmp_path / "none.parquet"
    r = CliRunner().invoke(main, ["analyze", "--parquet", str(out), str(cap)])
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).num_rows == 0
    assert "close" in pq.read_schema(out).names


def test_dataset_per_run_and_per_set(tmp_path: Path) -> None:
    """--parquet-dataset: a directory of part files (row groups and rows per
    file as asked), read back by DuckDB as one table with the JSON Lines'
    counts; a set is one dataset (with ``files``); several files analysed
    apart are Hive partitions ``file_index=K``."""
    from finwait.analyze import analyze_file
    from finwait.analyze.parquet import write_dataset
    from finwait.analyze.sets import analyze_set

    from .test_chunks import rotate_at

    data = zoo(8, 300)
    cap = tmp_path / "z.pcap"
    cap.write_bytes(data)
    res = analyze_file(cap)
    recs = _jsonl(str(cap))
    out = tmp_path / "ds"
    files = write_dataset([res], out, row_group=64, rows_per_file=128)
    assert len(files) == -(-len(recs) // 128) >= 2
    assert all(pq.ParquetFile(f).metadata.num_row_groups <= 2 for f in files)
    con = duckdb.connect()
    glob = str(out / "*.parquet")
    got = con.execute(
        "SELECT close, first_fin, count(*) FROM read_parquet(?) GROUP BY ALL", [glob]
    ).fetchall()
    assert dict(((c, f), n) for c, f, n in got) == Counter(
        (x["close"], x["first_fin"]) for x in recs
    )
    rows = con.execute("SELECT id FROM read_parquet(?) ORDER BY id", [glob]).fetchall()
    assert [r[0] for r in rows] == [x["id"] for x in recs]
    # A set: one dataset, each row with its files.
    parts = rotate_at(data, [0.5], tmp_path)
    r = CliRunner().invoke(
        main, ["analyze", "--set", "--parquet-dataset", str(out), *map(str, parts)]
    )
    assert r.exit_code == 0, r.output
    n_multi = con.execute(
        "SELECT count(*) FROM read_parquet(?) WHERE len(files) = 2", [glob]
    ).fetchone()[0]
    want = analyze_set(parts)
    assert n_multi == sum(len(f) == 2 for f in want.conn_files) > 0
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchone()[0] == want.n
    # Files apart: one partition each.
    r = CliRunner().invoke(main, ["analyze", "--parquet-dataset", str(out), *map(str, parts)])
    assert r.exit_code == 0, r.output
    per = dict(
        con.execute(
            "SELECT file_index, count(*) FROM read_parquet(?, hive_partitioning = true) "
            "GROUP BY ALL",
            [str(out / "*" / "*.parquet")],
        ).fetchall()
    )
    assert per == {k: analyze_file(p).n for k, p in enumerate(parts)}
    assert not list(out.glob("*.parquet"))  # the set's files were replaced
