"""finwait against Zeek's own regression baselines: for every capture in
the shared Zeek set (traces with the conn.log Zeek's tests expect), every TCP
record Zeek logs is matched with finwait's connection on the same inner
4-tuple (in order, for port reuse) and their ``conn_state`` and ``history``
compared.  Each difference must be listed in :data:`KNOWN` with its reason
(docs/analyze.md, "Differences from Zeek"), and each listed difference must
still occur, so the table cannot go stale.

The data is not in the repository: ``$FINWAIT_SHARED``, else
``<repo>/../shared``, else ``/work/shared`` (``captures/zeek/``)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from finwait.analyze import analyze_file

REPO = Path(__file__).resolve().parents[2]


def _shared() -> Path | None:
    for cand in (os.environ.get("FINWAIT_SHARED"), REPO.parent / "shared", "/work/shared"):
        if cand and (Path(cand) / "captures" / "zeek" / "manifest.json").exists():
            return Path(cand) / "captures" / "zeek"
    return None


ZEEK = _shared()
pytestmark = pytest.mark.skipif(ZEEK is None, reason="the shared Zeek captures are not here")
MANIFEST: list[dict[str, Any]] = (
    json.loads((ZEEK / "manifest.json").read_text()) if ZEEK is not None else []
)

# Reasons (docs/analyze.md, "Differences from Zeek").
BARE = "Zeek in bare mode (-b) has fewer likely server ports: no `^` flip there"
FRAG = "outer IP fragments are not reassembled"

# (expected conn.log, orig port, resp port) -> reason.  Each entry covers
# every record of that 4-tuple in that log.
KNOWN: dict[tuple[str, str, str], str] = {
    ("expected/core.tunnels.gtp.different_dl_and_ul/conn.log", "51803", "80"): FRAG,
    ("expected/core.tunnels.gtp.outer_ip_frag/conn.log", "1923", "80"): FRAG,
    ("expected/core.vntag-in-vlan/conn.log", "443", "56960"): BARE,
    ("expected/core.tunnels.gre-aruba-amsdu/conn.log", "443", "49392"): BARE,
}
# Whole logs whose remaining differences share one reason.
KNOWN_LOGS: dict[str, str] = {}


def _zeek_tcp(path: Path) -> list[dict[str, str]]:
    """The TCP records of a conn.log (``#fields`` header, or a ``.cut``
    file's first line)."""
    fields: list[str] | None = None
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line.startswith("#") or not line.strip():
            continue
        elif fields is None:
            fields = line.split("\t")
        else:
            row = dict(zip(fields, line.split("\t"), strict=False))
            if row.get("proto") == "tcp":
                out.append(row)
    return out


@cache
def _records(trace: str) -> list[dict[str, Any]]:
    assert ZEEK is not None
    res = analyze_file(ZEEK / trace, zeek_timeouts=True)
    assert res.error is None or "truncated" in res.error, res.error
    return list(res.records())


def _compare(entry: dict[str, Any]) -> list[tuple[tuple[str, str, str], str]]:
    """(key, what differs) for each Zeek TCP record finwait does not match."""
    assert ZEEK is not None
    by_tuple: dict[frozenset[tuple[str, int]], list[dict[str, Any]]] = defaultdict(list)
    for r in _records(entry["trace"]):
        ends = (
            (r["client"]["addr"], r["client"]["port"]),
            (r["server"]["addr"], r["server"]["port"]),
        )
        by_tuple[frozenset(ends)].append(r)
    diffs = []
    for z in _zeek_tcp(ZEEK / entry["expected"]):
        key = (entry["expected"], z["id.orig_p"], z["id.resp_p"])
        ends = frozenset(
            ((z["id.orig_h"], int(z["id.orig_p"])), (z["id.resp_h"], int(z["id.resp_p"])))
        )
        mine = by_tuple[ends]
        if not mine:
            diffs.append((key, f"missing: Zeek {z.get('conn_state')} {z.get('history')}"))
            continue
        r = mine.pop(0)
        want = (
            z.get("conn_state", r["conn_state"]),
            z.get("history", r["history"]).replace("-", ""),
        )
        got = (r["conn_state"], r["history"])
        if got != want:
            diffs.append((key, f"Zeek {want}, finwait {got}"))
        if z.get("tunnel_parents", "-") != "-":
            assert r["tunnel"], (key, "Zeek saw a tunnel, finwait none")
    return diffs


@pytest.mark.parametrize(
    "entry", MANIFEST, ids=[e["expected"].removeprefix("expected/") for e in MANIFEST]
)
def test_conn_state_and_history_as_zeek(entry: dict[str, Any]) -> None:
    unexplained = [(k, d) for k, d in _compare(entry) if k not in KNOWN and k[0] not in KNOWN_LOGS]
    assert not unexplained, unexplained


def test_known_differences_still_occur() -> None:
    """Every entry of the table is a real, current difference."""
    seen = set()
    for entry in MANIFEST:
        for key, _ in _compare(entry):
            seen.add(key)
            seen.add((key[0], "*", "*"))
    stale = [k for k in KNOWN if k not in seen]
    stale += [log for log in KNOWN_LOGS if (log, "*", "*") not in seen]
    assert not stale, stale


def test_agreement_figure() -> None:
    """The share of Zeek's TCP records finwait matches exactly (conn_state
    and history), printed for the docs; it may only go up."""
    total = agree = 0
    for entry in MANIFEST:
        assert ZEEK is not None
        n = len(_zeek_tcp(ZEEK / entry["expected"]))
        total += n
        agree += n - len(_compare(entry))
    print(f"finwait matches {agree} of {total} Zeek TCP records")
    assert total > 1000 and agree >= 1377


@pytest.mark.parametrize("name", ["vxlan", "geneve"])
def test_bad_inner_checksum_is_zeeks_c(name: str) -> None:
    """These baselines cut conn.log to uid, service and history (no 4-tuple):
    the tunnelled TCP segment has a bad checksum, and Zeek logs its
    connection with history ``C`` only.  With --verify-checksums finwait
    does the same; without, the segment is analysed (a SYN: ``S``)."""
    assert ZEEK is not None
    log = ZEEK / f"expected/core.tunnels.{name}-inner-tcp-bad-checksum/conn.log"
    rows = [ln.split("\t") for ln in log.read_text().splitlines()[2:]]
    assert [r[2] for r in rows if r[1] == "-"] == ["C"]
    trace = ZEEK / f"traces/tunnels/{name}-inner-tcp-bad-checksum.pcap"
    res = analyze_file(trace, verify_checksums=True)
    assert [r["history"] for r in res.records()] == ["C"]
    assert res.skipped() == {"bad checksum": {"tcp": 1}} and res.tcp_packets == 0
    plain = analyze_file(trace)
    assert [r["history"] for r in plain.records()] == ["S"]
