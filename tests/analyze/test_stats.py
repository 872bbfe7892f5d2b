"""Nothing silent: the summary always says how many packets were read,
analysed and skipped (by reason); ``--stats`` says it as JSON; a file with
packets but no TCP connection warns on stderr.  The samples in
docs/analyze.md ("Nothing silent") are checked here against the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from finwait.cli import main

from .test_zeek_baselines import ZEEK

DOC = Path(__file__).resolve().parents[2] / "docs" / "analyze.md"
pytestmark = pytest.mark.skipif(ZEEK is None, reason="the shared Zeek captures are not here")


def _run(*args: str) -> tuple[str, str, int]:
    r = CliRunner().invoke(main, ["analyze", *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.stdout, r.stderr, r.exit_code


def _doc_block(after: str) -> str:
    text = DOC.read_text()
    i = text.index(after)
    m = re.search(r"```\n(.*?)```", text[i:], re.S)
    assert m is not None
    return m.group(1)


def test_no_tcp_summary_warning_and_doc_samples() -> None:
    assert ZEEK is not None
    path = str(ZEEK / "traces/tunnels/gre-within-gre.pcap")
    out, err, code = _run(path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{path}: 628 packets read, 0 TCP analysed, 628 skipped, 0 connections"
    sample = _doc_block("The text summary always starts with").replace("FILE", path)
    assert "".join(f"{ln}\n" for ln in lines[1:3]) == "".join(sample.splitlines(True)[1:])
    warning = _doc_block("output format:").replace("FILE", path)
    assert err == warning
    # Whatever the output format, the warning is there.
    for fmt in ("--json", "--csv", "--stats"):
        assert _run(path, fmt)[1] == warning


def test_stats_json() -> None:
    assert ZEEK is not None
    path = str(ZEEK / "traces/pbb.pcap")
    out, err, code = _run(path, "--stats")
    assert code == 0 and err == ""
    st = json.loads(out)
    assert st["file"] == path and st["connections"] == 1
    assert st["packets_read"] == st["tcp_packets"] + st["skipped"]
    sk = st["skipped_by_reason"]
    assert sk["not ip"] == {"arp": 1}
    assert sum(sum(d.values()) for d in sk.values()) == st["skipped"]
    # The text summary shows the same counts.
    text, _, _ = _run(path)
    assert f"{st['packets_read']} packets read, {st['tcp_packets']} TCP analysed" in text
    assert f"{st['skipped']} skipped" in text and "not ip 1 (arp 1)" in text


def test_tunnel_field_and_notes() -> None:
    assert ZEEK is not None
    path = str(ZEEK / "traces/tunnels/gre-aruba-amsdu.pcap")
    st = json.loads(_run(path, "--stats")[0])
    # One A-MSDU frame inside GRE carries two TCP segments.
    assert (st["packets_read"], st["tcp_packets"], st["notes"]) == (1, 2, {"decapsulated": 2})
    rec = json.loads(_run(path, "--json")[0])
    assert rec["tunnel"] == [{"type": "gre", "src": "10.226.22.9", "dst": "10.102.16.187"}]
    plain = json.loads(_run(str(ZEEK / "traces/q-in-q.pcap"), "--stats")[0])
    assert plain["notes"] == {} and plain["tunnelled_connections"] == 0


def test_every_skip_has_a_documented_reason() -> None:
    """Over every shared Zeek trace (checksums verified too), each skipped
    packet is counted under one of decode.REASONS, and the counts add up:
    packets read = TCP analysed + skipped (+ extra inner packets of A-MSDU
    frames)."""
    from finwait.analyze import analyze_file
    from finwait.capture.decode import REASONS

    assert ZEEK is not None
    traces = sorted({e["trace"] for e in json.loads((ZEEK / "manifest.json").read_text())})
    seen: set[str] = set()
    for trace in traces:
        res = analyze_file(ZEEK / trace, verify_checksums=True)
        st = res.stats()
        seen |= set(st["skipped_by_reason"])
        assert set(st["skipped_by_reason"]) <= set(REASONS), trace
        if "amsdu" not in trace and res.error is None:
            assert st["packets_read"] == st["tcp_packets"] + st["skipped"], (trace, st)
    assert {"not ip", "not tcp", "fragment", "bad checksum", "unsupported encapsulation"} <= seen
