"""The templated JSON Lines writer against the reference path (one dict per
connection through ``json``): every line must parse, and parse to exactly the
reference record, on captures with every shape the classifier knows, IPv4
and IPv6, anomalies, port reuse and random flag soup."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from capture.builders import A4, A6, B4, B6, ip4, ip6, pcap, seed_exchange, tcp
from finwait.analyze import analyze_file
from finwait.analyze.classify import Analysis
from finwait.analyze.jsonl import iter_jsonl, write_jsonl
from finwait.cli import main

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def _conversation(rng: random.Random, t: float, cport: int) -> list[tuple[float, bytes]]:
    """One connection with a random opening, transfer and release."""
    v6 = rng.random() < 0.3
    a, b = (A6, B6) if v6 else (A4, B4)
    mk = ip6 if v6 else ip4
    ia, ib = rng.getrandbits(32), rng.getrandbits(32)
    sa, sb = ia, ib  # next sequence number each side sends
    out: list[tuple[float, bytes]] = []

    def send(
        from_a: bool, flags: int, plen: int = 0, seq: int | None = None, ack: int | None = None
    ) -> None:
        nonlocal t, sa, sb
        t += rng.choice((0.0, 0.000_001, 0.25, 1.5))
        s, d, sp, dp = (a, b, cport, 80) if from_a else (b, a, 80, cport)
        mine = sa if from_a else sb
        if ack is None:
            ack = sb if from_a else sa
        q = mine if seq is None else seq
        out.append((t, mk(s, d, tcp(sp, dp, q & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, plen))))
        used = plen + (1 if flags & (SYN | FIN) else 0)
        if seq is None:
            if from_a:
                sa += used
            else:
                sb += used

    opening = rng.choice(("full", "full", "refused", "unanswered", "no_syn", "probe"))
    if opening == "probe":
        send(True, rng.choice((FIN, 0, FIN | PSH | URG, SYN | FIN)))
        return out
    if opening != "no_syn":
        send(True, SYN)
        if opening == "refused":
            send(False, RST | ACK)
            return out
        if opening == "unanswered":
            if rng.random() < 0.5:
                send(True, SYN, seq=ia)  # retransmitted SYN
            return out
        send(False, SYN | ACK)
        send(True, ACK)
    for _ in range(rng.randrange(4)):
        from_a = rng.random() < 0.5
        send(from_a, PSH | ACK, rng.randrange(1, 1500))
        if rng.random() < 0.2:  # retransmit it
            n = rng.randrange(1, 100)
            send(from_a, PSH | ACK, n, seq=(sa if from_a else sb) - n)
        send(not from_a, ACK)
    ending = rng.choice(("four", "three", "cross", "half", "rst", "open", "bare", "soup"))
    first = rng.random() < 0.5
    if ending in ("four", "three", "cross", "half"):
        before = sa if first else sb
        send(first, FIN | ACK, rng.choice((0, 0, 10)))
        if ending == "cross":  # sent before the first FIN arrived: does not ack it
            send(not first, FIN | ACK, ack=before)
        elif ending != "three" and rng.random() < 0.7:
            send(not first, ACK)  # else the data below carries the ACK of the FIN
        if ending == "half":
            send(not first, PSH | ACK, rng.randrange(1, 50))
            return out
        if ending != "cross":
            send(not first, FIN | ACK)
        send(first, ACK)
        if rng.random() < 0.2:
            send(first, RST | ACK)  # after a completed close
    elif ending == "rst":
        send(first, RST | ACK)
    elif ending == "bare":
        send(first, FIN)  # FIN without ACK: never a close
        send(first, PSH | ACK, 5)
    elif ending == "soup":
        for _ in range(rng.randrange(1, 6)):
            send(rng.random() < 0.5, rng.getrandbits(8), rng.randrange(3))
    return out


def zoo(seed: int, conns: int = 250) -> bytes:
    rng = random.Random(seed)
    packets: list[tuple[float, bytes]] = []
    for i in range(conns):
        # A few client ports repeat, so some 4-tuples are reused.
        port = 40000 + (i % 37 if rng.random() < 0.3 else i)
        packets += _conversation(rng, 1_700_000_000 + i * 0.5, port)
    packets.sort(key=lambda p: p[0])
    return pcap(packets, 101)


def _same(res: Analysis, text: str) -> None:
    lines = text.splitlines()
    assert len(lines) == res.n
    for line, rec in zip(lines, res.records(), strict=True):
        assert json.loads(line) == rec


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_writer_matches_reference_records(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "zoo.pcap"
    path.write_bytes(zoo(seed))
    res = analyze_file(path)
    assert res.error is None and res.n >= 200
    # The capture must exercise what the writer formats specially.
    closes = {r["close"] for r in res.records()}
    assert {"four_way", "three_way", "simultaneous", "reset", "refused", "probe"} <= closes
    assert any(r["anomalies"] for r in res.records())
    carried = {
        f["acked_by"]["carried_on"]
        for r in res.records()
        for f in r["fins"].values()
        if f and f["acked_by"]
    }
    assert carried == {"pure_ack", "data", "fin"}
    assert {r["conn_state"] for r in res.records()} >= {"SF", "REJ", "OTH"}
    _same(res, "".join(iter_jsonl(res)))


def test_writer_blocks_join_seamlessly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import finwait.analyze.jsonl as jsonl

    path = tmp_path / "zoo.pcap"
    path.write_bytes(zoo(4, 60))
    res = analyze_file(path)
    monkeypatch.setattr(jsonl, "BLOCK", 7)
    assert len(list(iter_jsonl(res))) == -(-res.n // 7)
    _same(res, "".join(iter_jsonl(res)))


def test_seed_connection_line(tmp_path: Path) -> None:
    path = tmp_path / "seed.pcap"
    path.write_bytes(pcap(seed_exchange(), 101))
    res = analyze_file(path)
    _same(res, "".join(iter_jsonl(res)))
    rec = json.loads(next(iter_jsonl(res)))
    assert rec["fins"]["server"]["acked_by"]["carried_on"] == "pure_ack"


def test_several_files_name_theirs(tmp_path: Path) -> None:
    paths = []
    for k in (5, 6):
        p = tmp_path / f'z"{k}.pcap'  # a quote in the name must stay valid JSON
        p.write_bytes(zoo(k, 20))
        paths.append(str(p))
    r = CliRunner().invoke(main, ["analyze", "--json", *paths])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    for name in paths:
        mine = [x for x in recs if x["file"] == name]
        ref = list(analyze_file(name).records())
        assert [{k: v for k, v in x.items() if k != "file"} for x in mine] == ref


def test_empty_analysis_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "e.pcap"
    path.write_bytes(pcap([], 101))
    res = analyze_file(path)
    out = io.StringIO()
    assert write_jsonl(res, out) == 0 and out.getvalue() == ""


def test_times_are_the_text_of_python_round() -> None:
    """The column-wise time formatter writes exactly ``repr(round(t, 6))``,
    also at the edges: halves of a microsecond, exponent notation below
    1e-4, negative zero, values too large for the fast path."""
    import numpy as np

    from finwait.analyze.jsonl import _rows, _us

    rng = np.random.default_rng(7)
    edges = [0.0, -0.0, 1e-4, 9.99e-5, 5e-5, 5e-7, 1.5e-6, 2.5e-6, 1.25e-5, -1.5, 0.1, 2.0**33,
             2.0**33 - 1e-3, 1e17, float("inf"), 1796613947.2842145, 1700000000.0]  # fmt: skip
    times = np.concatenate([
        np.array(edges), rng.random(20000) * 2e9, np.round(rng.random(20000) * 2e15) / 1e6,
        rng.random(20000) * 1e-3, (np.arange(20000) + 0.5) / 1e6 + 1.7e9,
        (np.arange(20000) + 0.5) / 1e6,
    ])  # fmt: skip
    assert _rows(_us(times)) == [repr(round(t, 6)) for t in times.tolist()]


def test_integers_are_the_text_of_percent_d() -> None:
    """The column-wise integer formatter (groups of 4 digits from a table)
    writes exactly ``%d``: zero, group edges, negatives, the int64 limits."""
    import numpy as np

    from finwait.analyze.jsonl import _digits, _rows

    rng = np.random.default_rng(11)
    edges = [0, 1, 9, 10, 9999, 10000, 10001, 99_999_999, 100_000_000, 4_294_967_295,
             2**62, 2**63 - 1, -1, -10000, -(2**63) + 1]  # fmt: skip
    cases = [
        np.array(edges, dtype=np.int64),
        np.array([0, 7], dtype=np.int64),
        rng.integers(0, 10**6, 5000),
        rng.integers(-(2**40), 2**40, 5000),
        np.array([-(2**63), 5], dtype=np.int64),
    ]
    for v in cases:
        assert _rows(_digits(v)) == [str(x) for x in v.tolist()]
