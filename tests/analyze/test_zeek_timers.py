"""``--zeek-timeouts``: a 4-tuple's packets split into connections where
Zeek's TCP timers would have removed the connection (TCPSessionAdapter:
ConnDeleteTimer, AttemptTimer, PartialCloseTimer, the inactivity timeout)."""

from __future__ import annotations

from pathlib import Path

from tests.capture.builders import A4, ACK, B4, FIN, PSH, RST, SYN, ip4, pcap, tcp

from finwait.analyze import analyze_file

Seg = tuple[float, str, int, int, int, int]  # time, sender, seq, ack, flags, payload


def _conns(tmp_path: Path, segs: list[Seg], zeek: bool = True) -> list[tuple[int, str, str]]:
    pkts = []
    for t, who, seq, ack, fl, n in segs:
        if who == "c":
            pkts.append((t, ip4(A4, B4, tcp(40000, 8081, 1000 + seq, 5000 + ack, fl, n))))
        else:
            pkts.append((t, ip4(B4, A4, tcp(8081, 40000, 5000 + seq, 1000 + ack, fl, n))))
    path = tmp_path / "t.pcap"
    path.write_bytes(pcap(pkts, 101))
    res = analyze_file(path, zeek_timeouts=zeek)
    return [(r["first_frame"], r["conn_state"], r["history"]) for r in res.records()]


# Mid-stream: the client's data, then the server's first packet is its FIN.
MID = [(1.0, "c", 1, 1, PSH | ACK, 10), (1.1, "s", 1, 11, FIN | ACK, 0)]


def test_partial_close_timer(tmp_path: Path) -> None:
    """A side whose first packet is its FIN gives the peer 3 s
    (tcp_partial_close_delay) to close too; a packet after that starts a
    new connection, as Zeek removes the first."""
    late = [*MID, (2.0, "c", 11, 2, PSH | ACK, 10), (4.5, "c", 21, 2, PSH | ACK, 10)]
    assert _conns(tmp_path, late) == [(1, "SHR", "Df"), (4, "OTH", "D")]
    assert len(_conns(tmp_path, late, zeek=False)) == 1
    # Within the delay: one connection.
    early = [*MID, (2.0, "c", 11, 2, PSH | ACK, 10), (3.9, "c", 21, 2, PSH | ACK, 10)]
    assert len(_conns(tmp_path, early)) == 1


def test_partial_close_cancelled(tmp_path: Path) -> None:
    """The peer's FIN completes the close (Zeek cancels the partial-close
    timer; the 5 s close delay applies), and a RST keeps it from firing."""
    closed = [*MID, (2.0, "c", 11, 2, FIN | ACK, 0), (4.5, "s", 2, 12, ACK, 0)]
    assert len(_conns(tmp_path, closed)) == 1
    reset = [*MID, (2.0, "c", 11, 2, RST, 0), (4.5, "c", 11, 2, PSH | ACK, 10)]
    assert len(_conns(tmp_path, reset)) == 1
    # A FIN that is not the side's first packet sets no partial-close timer.
    est = [(1.0, "c", 1, 1, PSH | ACK, 10), (1.05, "s", 1, 11, ACK, 0),
           (1.1, "s", 1, 11, FIN | ACK, 0), (4.5, "c", 11, 2, PSH | ACK, 10)]  # fmt: skip
    assert len(_conns(tmp_path, est)) == 1


def test_close_attempt_and_inactivity_timers(tmp_path: Path) -> None:
    """5 s after a complete close, 5 s after an unanswered SYN, 300 s idle."""
    fin = [(1.0, "c", 0, 0, SYN, 0), (1.1, "s", 0, 1, SYN | ACK, 0), (1.2, "c", 1, 1, ACK, 0),
           (1.3, "c", 1, 1, FIN | ACK, 0), (1.4, "s", 1, 2, FIN | ACK, 0)]  # fmt: skip
    assert len(_conns(tmp_path, [*fin, (6.3, "c", 2, 2, ACK, 0)])) == 1
    assert len(_conns(tmp_path, [*fin, (6.5, "c", 2, 2, ACK, 0)])) == 2
    syn = [(1.0, "c", 0, 0, SYN, 0), (6.5, "c", 0, 0, SYN, 0)]
    assert [c[1] for c in _conns(tmp_path, syn)] == ["S0", "S0"]
    idle = [*fin[:3], (400.0, "c", 1, 1, PSH | ACK, 5)]
    assert len(_conns(tmp_path, idle)) == 2
    assert len(_conns(tmp_path, idle, zeek=False)) == 2  # (also the tracker's own horizon)
