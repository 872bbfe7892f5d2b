"""Zeek's ``G``/``g`` history letters: content the capture never held
although the peer acknowledged it (Zeek's reassembler reports a gap when an
ACK passes a hole it has not filled, TCP_Reassembler::AckReceived), only
while both sides are established and neither has reset."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.capture.builders import A4, ACK, B4, FIN, PSH, RST, SYN, ip4, pcap, tcp

from finwait.analyze import analyze_file

IA, IB = 1000, 5000  # client and server ISNs


def _capture(tmp_path: Path, segs: list[tuple[str, int, int, int, int]], name: str) -> Path:
    """``segs``: (sender 'c' or 's', relative seq, relative ack, flags, payload length)."""
    pkts = []
    for i, (who, seq, ack, fl, n) in enumerate(segs):
        if who == "c":
            pkt = ip4(A4, B4, tcp(40000, 8081, IA + seq, IB + ack if fl & ACK else 0, fl, n))
        else:
            pkt = ip4(B4, A4, tcp(8081, 40000, IB + seq, IA + ack, fl, n))
        pkts.append((1.0 + i * 0.01, pkt))
    path = tmp_path / name
    path.write_bytes(pcap(pkts, 101))
    return path


OPEN = [("c", 0, 0, SYN, 0), ("s", 0, 1, SYN | ACK, 0), ("c", 1, 1, ACK, 0)]
CLOSE = [("c", 301, 1, FIN | ACK, 0), ("s", 1, 302, FIN | ACK, 0), ("c", 302, 2, ACK, 0)]


def _history(tmp_path: Path, segs: list[tuple[str, int, int, int, int]], **kw: int) -> str:
    path = _capture(tmp_path, segs, "g.pcap")
    h: str = analyze_file(path, **kw).record(1)["history"]
    return h


def test_acknowledged_hole_is_a_gap(tmp_path: Path) -> None:
    """The client's second segment is missing; the server acknowledges all
    three: G, on the server's ACK (after its own letters)."""
    segs = [
        *OPEN,
        ("c", 1, 1, PSH | ACK, 100),
        ("c", 201, 1, PSH | ACK, 100),
        ("s", 1, 301, ACK, 0),
        *CLOSE,
    ]
    assert _history(tmp_path, segs) == "ShADaGFf"


def test_filled_hole_is_no_gap(tmp_path: Path) -> None:
    """The missing segment arrives (late) before the ACK passes it: no gap,
    and one without any ACK at all is no gap either."""
    segs = [
        *OPEN,
        ("c", 1, 1, PSH | ACK, 100),
        ("c", 201, 1, PSH | ACK, 100),
        ("c", 101, 1, PSH | ACK, 100),
        ("s", 1, 301, ACK, 0),
        *CLOSE,
    ]
    assert _history(tmp_path, segs) == "ShADTaFf"
    unacked = [*OPEN, ("c", 1, 1, PSH | ACK, 100), ("c", 201, 1, PSH | ACK, 100)]
    assert _history(tmp_path, unacked) == "ShAD"


def test_ack_beyond_everything_sent(tmp_path: Path) -> None:
    """The server's data is never captured but the client acknowledges it
    (and its FIN): g; the FIN itself is no gap."""
    segs = [*OPEN, ("c", 1, 1, PSH | ACK, 300), ("s", 1, 301, ACK, 0),
            ("s", 1, 301, ACK, 0), ("c", 301, 51, ACK, 0),
            ("s", 51, 301, FIN | ACK, 0), ("c", 301, 52, FIN | ACK, 0), ("s", 52, 302, ACK, 0)]  # fmt: skip
    assert _history(tmp_path, segs) == "ShADagfF"
    # Without the missing data the same close has no gap.
    segs[5] = ("c", 301, 1, ACK, 0)
    segs[6:] = [("s", 1, 301, FIN | ACK, 0), ("c", 301, 2, FIN | ACK, 0), ("s", 2, 302, ACK, 0)]
    assert _history(tmp_path, segs) == "ShADafF"


def test_no_gap_without_clean_state(tmp_path: Path) -> None:
    """A hole acknowledged by a RST, or in a connection whose handshake
    was not captured (Zeek's PARTIAL endpoints), is not reported."""
    hole = [("c", 1, 1, PSH | ACK, 100), ("c", 201, 1, PSH | ACK, 100)]
    assert _history(tmp_path, [*OPEN, *hole, ("s", 1, 301, RST | ACK, 0)]) == "ShADr"
    partial = [*hole, ("s", 1, 301, ACK, 0), ("s", 1, 301, PSH | ACK, 10)]
    assert "G" not in _history(tmp_path, partial).upper()


def test_gap_letter_is_scaled(tmp_path: Path) -> None:
    """Like T and W, G is written again at the 10th, 100th ... gap."""
    segs = list(OPEN)
    for k in range(12):  # every other 100-byte segment missing, each acknowledged
        segs += [("c", 1 + 200 * k + 100, 1, PSH | ACK, 100), ("s", 1, 201 + 200 * k, ACK, 0)]
    h = _history(tmp_path, segs)
    assert h.count("G") == 2 and h.startswith("ShADaG")


@pytest.mark.parametrize("chunk", [256, 600])
def test_gaps_across_batches(tmp_path: Path, chunk: int) -> None:
    """A hole found in one batch and acknowledged (or filled) in a later
    one gives the same history as one batch."""
    gap = [*OPEN, ("c", 1, 1, PSH | ACK, 100), ("c", 201, 1, PSH | ACK, 100)]
    gap += [("c", 301, 1, ACK, 0)] * 6 + [("s", 1, 301, ACK, 0), *CLOSE]
    fill = [*gap[:5], ("c", 101, 1, PSH | ACK, 100), *gap[5:]]
    for segs in (gap, fill):
        whole = _history(tmp_path, segs)
        assert _history(tmp_path, segs, chunk_size=chunk) == whole
    assert "G" in _history(tmp_path, gap, chunk_size=chunk)
    assert "G" not in _history(tmp_path, fill, chunk_size=chunk)
