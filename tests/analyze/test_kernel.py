"""Captures made by the Linux kernel in namespaces of the test's own,
classified exactly as each scenario says (kernel_peer.py plays them).

The expectations are written from the scenario, not from the analyzer's
output: who closed first, how, and what Zeek would call it (Zeek's
``conn_state`` decision list applied by hand to the endpoints' states)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finwait.analyze import analyze_file

from .netlab import can_run, lab, tcpdump

PEER = str(Path(__file__).with_name("kernel_peer.py"))
pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    why = can_run()
    if why is not None:
        if os.environ.get("FINWAIT_LIVE") == "require":
            pytest.fail(f"live test required but cannot run: {why}")
        pytest.skip(why)
    out = tmp_path_factory.mktemp("kernel") / "scenarios.pcap"
    flags = tempfile.mkdtemp(prefix="fwtest-")
    with lab() as lb:
        srv = lb.run(
            lb.server_ns, sys.executable, PEER, "server", lb.saddr, flags, stdout=subprocess.PIPE
        )
        cli = None
        try:
            assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
            with tcpdump(lb, out):
                cli = lb.run(lb.client_ns, sys.executable, PEER, "client", lb.caddr, lb.saddr,
                             lb.server_ns, flags, stdout=subprocess.PIPE)  # fmt: skip
                assert cli.stdout is not None
                assert cli.stdout.readline().strip() == "done"
        finally:
            for p in (cli, srv):
                if p is not None:
                    p.kill()
                    p.wait()
    res = analyze_file(out)
    assert res.error is None
    yield list(res.records())


def by_port(records: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    return [r for r in records if r["server"]["port"] == port]


def one(records: list[dict[str, Any]], port: int) -> dict[str, Any]:
    found = by_port(records, port)
    assert len(found) == 1, found
    return found[0]


# port: (handshake, close, first_fin, reset_by, conn_state)
EXPECTED = {
    7001: ("complete", "four_way", "client", None, "SF"),
    7002: ("complete", "four_way", "server", None, "SF"),
    7003: ("complete", "three_way", "client", None, "SF"),
    7004: ("complete", "four_way", "client", None, "SF"),
    7005: ("complete", "reset", None, "client", "RSTO"),
    7006: ("complete", "reset", None, "server", "RSTR"),
    7007: ("refused", "refused", None, "server", "REJ"),
    7008: ("complete", "open", None, None, "S1"),
    7009: ("complete", "four_way", "client", None, "SF"),
    7012: ("complete", "simultaneous", "both", None, "SF"),
}


@pytest.mark.parametrize("port", sorted(EXPECTED))
def test_scenario_classes(records: list[dict[str, Any]], port: int) -> None:
    r = one(records, port)
    got = (r["handshake"], r["close"], r["first_fin"], r["reset_by"], r["conn_state"])
    assert got == EXPECTED[port]
    assert r["partial"] is False
    assert r["client"]["addr"].startswith("198.18.") and r["client"]["port"] != port


def test_bytes_and_numbers(records: list[dict[str, Any]]) -> None:
    r = one(records, 7001)
    assert r["bytes"] == {"client_to_server": 100, "server_to_client": 50}
    fc, fs = r["fins"]["client"], r["fins"]["server"]
    # The seed's arithmetic: 100 bytes sent (1..100) -> FIN at 101; the FIN
    # consumes one number, so its ACK is 102; the server's FIN is at 51.
    assert (fc["seq"], fc["ack"]) == (101, 51)
    assert fc["acked_by"]["ack"] == 102 and fc["acked_by"]["carried_on"] == "pure_ack"
    assert (fs["seq"], fs["ack"]) == (51, 102)
    assert fs["acked_by"]["ack"] == 52
    assert r["anomalies"] == []


def test_three_segment_close_fin_carries_ack(records: list[dict[str, Any]]) -> None:
    r = one(records, 7003)
    assert r["fins"]["client"]["acked_by"]["carried_on"] == "fin"
    assert r["history"] == "ShADadFf"


def test_half_close_with_data(records: list[dict[str, Any]]) -> None:
    r = one(records, 7004)
    assert r["half_close_bytes"] == 3000
    assert r["bytes"]["server_to_client"] == 3000
    assert r["fins"]["server"]["seq"] == 3001
    assert r["anomalies"] == []


def test_bare_fin_flagged_not_a_close(records: list[dict[str, Any]]) -> None:
    r = one(records, 7009)
    names = {a["name"]: a for a in r["anomalies"]}
    assert set(names) == {"fin_without_ack"}
    bare = names["fin_without_ack"]["frames"][0]
    # The real FIN came later, with ACK, at the same number (the bare one
    # consumed nothing: Linux dropped it).
    assert r["fins"]["client"]["frame"] > bare
    assert r["fins"]["client"]["seq"] == 101


def test_blind_attacks_flagged_and_survived(records: list[dict[str, Any]]) -> None:
    """A forged SYN and two forged RSTs (one in the window, one far out) on an
    established connection: all flagged with their frames; the close is still
    the ordinary four-way one, not a reset."""
    r = one(records, 7014)
    assert (r["handshake"], r["close"], r["first_fin"], r["reset_by"]) == (
        "complete",
        "four_way",
        "client",
        None,
    )
    names = {a["name"]: a for a in r["anomalies"]}
    assert set(names) == {"rst_seq_unexpected", "syn_in_connection"}
    assert names["rst_seq_unexpected"]["count"] == 2
    assert names["syn_in_connection"]["count"] == 1
    syn = names["syn_in_connection"]["frames"][0]
    assert syn < names["rst_seq_unexpected"]["frames"][0]


def test_ordinary_resets_are_not_flagged(records: list[dict[str, Any]]) -> None:
    """Stacks reset at SND.NXT: SO_LINGER-0 closes and refusals are not
    suspicious."""
    for port in (7005, 7006, 7007):
        assert one(records, port)["anomalies"] == [], port


def test_simultaneous_close_fins_cross(records: list[dict[str, Any]]) -> None:
    r = one(records, 7012)
    fc, fs = r["fins"]["client"], r["fins"]["server"]
    assert fs["ack"] == 101  # the server's FIN does not cover the client's
    assert fc["retransmissions"] >= 1  # held at the server, so resent
    assert r["half_close_bytes"] == 0


# (flags anomaly, target port, reset_by, conn_state)
PROBES = [
    ("fin_without_ack", 7010, None, "SH"),
    ("null_flags", 7010, None, "OTH"),
    ("xmas_flags", 7010, None, "SH"),
    ("fin_without_ack", 7011, "server", "RSTR"),
    ("null_flags", 7011, "server", "RSTRH"),
    ("xmas_flags", 7011, "server", "RSTR"),
]


@pytest.mark.parametrize("i", range(len(PROBES)))
def test_probes(records: list[dict[str, Any]], i: int) -> None:
    anomaly, port, reset_by, state = PROBES[i]
    r = [x for x in by_port(records, port) if x["client"]["port"] == 41000 + i]
    assert len(r) == 1
    r0 = r[0]
    assert (r0["handshake"], r0["close"], r0["first_fin"]) == ("none", "probe", None)
    assert (r0["reset_by"], r0["conn_state"]) == (reset_by, state)
    # Every FIN without ACK carries fin_without_ack, XMAS included.
    also = {"fin_without_ack"} if anomaly == "xmas_flags" else set()
    assert {a["name"] for a in r0["anomalies"]} == {anomaly, "no_handshake", *also}
    # Linux answers nothing at a listener, RST/ACK at a closed port (LX-9, LX-13).
    assert r0["packets"]["server_to_client"] == (1 if port == 7011 else 0)


def test_port_reuse_splits(records: list[dict[str, Any]]) -> None:
    r = by_port(records, 7013)
    assert len(r) == 2
    assert r[0]["client"]["port"] == r[1]["client"]["port"] == 45013
    assert r[0]["id"] < r[1]["id"] and r[0]["end"] <= r[1]["start"]
    for x in r:
        assert (x["close"], x["first_fin"], x["packets"]["client_to_server"]) == (
            "four_way",
            "server",
            6,
        )


def test_ids_in_order_of_first_packet(records: list[dict[str, Any]]) -> None:
    assert [r["id"] for r in records] == list(range(1, len(records) + 1))
    starts = [r["start"] for r in records]
    assert starts == sorted(starts)
