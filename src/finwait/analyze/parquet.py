"""The ``--parquet`` writer: the connection table as one Parquet file, with
the same fields as the JSON Lines (docs/analyze.md), nested ones as structs
and lists, so an analyst queries it with DuckDB, Spark or pandas directly.

Rows are written a block at a time (memory stays flat however many
connections there are) into row groups of :data:`ROW_GROUP` rows: large
enough for columnar scans of captures with millions of connections, small
enough that a reader can skip most of a file by the row-group statistics
(``start``, ``id``).  Needs pyarrow (``pip install 'finwait[parquet]'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .classify import Analysis

ROW_GROUP = 128 * 1024
ROWS_PER_FILE = 8 * ROW_GROUP  # a dataset's files: about 1 M connections each
BLOCK = 16 * 1024
BOOLS = ("partial", "flipped", "reset_after_fin")


def schema(with_file: bool = False, with_files: bool = False) -> Any:
    """The Arrow schema of the connection table."""
    import pyarrow as pa

    i64, f64, s, b = pa.int64(), pa.float64(), pa.string(), pa.bool_()
    endpoint = pa.struct([("addr", s), ("port", i64)])
    pair = pa.struct([("client_to_server", i64), ("server_to_client", i64)])
    acked = pa.struct(
        [("frame", i64), ("time", f64), ("seq", i64), ("ack", i64), ("carried_on", s)]
    )
    fin = pa.struct(
        [("frame", i64), ("time", f64), ("seq", i64), ("ack", i64), ("len", i64),
         ("retransmissions", i64), ("acked_by", acked)]
    )  # fmt: skip
    fields = [
        ("id", i64), ("client", endpoint), ("server", endpoint), ("start", f64), ("end", f64),
        ("duration", f64), ("first_frame", i64), ("last_frame", i64), ("partial", b),
        ("flipped", b), ("packets", pair), ("bytes", pair), ("retransmissions", pair),
        ("handshake", s), ("close", s), ("first_fin", s), ("reset_by", s),
        ("reset_after_fin", b), ("half_close_bytes", i64),
        ("fins", pa.struct([("client", fin), ("server", fin)])),
        ("anomalies", pa.list_(pa.struct([("name", s), ("count", i64), ("frames", pa.list_(i64))]))),
        ("conn_state", s), ("history", s),
        ("tunnel", pa.list_(pa.struct([("type", s), ("src", s), ("dst", s)]))),
    ]  # fmt: skip
    if with_files:
        fields.append(("files", pa.list_(s)))
    if with_file:
        fields.append(("file", s))
    return pa.schema(fields)


def write_parquet(results: Iterable[Analysis], out: str | Path, row_group: int = ROW_GROUP) -> int:
    """Write the connections of ``results`` (one capture, one set, or several
    files: then each row has ``file``) to ``out``; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    res = list(results)
    multi = len(res) > 1
    sch = schema(with_file=multi, with_files=any(r.files is not None for r in res))
    rows = 0
    with pq.ParquetWriter(str(out), sch, compression="zstd") as w:
        pending: list[dict[str, Any]] = []
        for r in res:
            for block in _blocks(r, multi):
                pending += block
                while len(pending) >= row_group:
                    w.write_table(pa.Table.from_pylist(pending[:row_group], schema=sch),
                                  row_group_size=row_group)  # fmt: skip
                    rows += row_group
                    pending = pending[row_group:]
        if pending or not rows:
            w.write_table(pa.Table.from_pylist(pending, schema=sch), row_group_size=row_group)
            rows += len(pending)
    return rows


def write_dataset(
    results: Iterable[Analysis],
    out: str | Path,
    row_group: int = ROW_GROUP,
    rows_per_file: int = ROWS_PER_FILE,
) -> list[Path]:
    """Write the connections of ``results`` as a Parquet dataset: the
    directory ``out`` (made if missing; its ``*.parquet`` files replaced)
    holds ``part-00000.parquet`` ... of at most ``rows_per_file`` rows each
    in row groups of ``row_group``.  One dataset per run (one capture or
    one set); several files analysed apart go to Hive partitions
    ``file_index=K/`` (K: the file's position on the command line), and
    each row also has ``file``.  Returns the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    res = list(results)
    multi = len(res) > 1
    sch = schema(with_file=multi, with_files=any(r.files is not None for r in res))
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for old in sorted(root.rglob("*.parquet")):
        old.unlink()
    written: list[Path] = []
    per_file = max(1, rows_per_file // row_group)  # row groups in a file
    for k, r in enumerate(res):
        d = root / f"file_index={k}" if multi else root
        d.mkdir(exist_ok=True)
        w: Any = None
        for g, rows in enumerate(_groups(r, multi, row_group)):
            if g % per_file == 0:
                if w is not None:
                    w.close()
                written.append(d / f"part-{g // per_file:05d}.parquet")
                w = pq.ParquetWriter(str(written[-1]), sch, compression="zstd")
            w.write_table(pa.Table.from_pylist(rows, schema=sch), row_group_size=row_group)
        if w is None:  # no connection: one empty file keeps the schema
            written.append(d / "part-00000.parquet")
            w = pq.ParquetWriter(str(written[-1]), sch, compression="zstd")
            w.write_table(pa.Table.from_pylist([], schema=sch))
        w.close()
    return written


def _groups(res: Analysis, multi: bool, size: int) -> Iterator[list[dict[str, Any]]]:
    pending: list[dict[str, Any]] = []
    for block in _blocks(res, multi):
        pending += block
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def _blocks(res: Analysis, multi: bool) -> Iterator[list[dict[str, Any]]]:
    for lo in range(0, res.n, BLOCK):
        block = list(res.records(lo, min(res.n, lo + BLOCK)))
        for rec in block:
            # true/false in the JSON Lines; the columns hold them as 0/1.
            for key in BOOLS:
                rec[key] = bool(rec[key])
            if multi:
                rec["file"] = res.path
        yield block
