"""Port reuse: a SYN without ACK on a 4-tuple starts a new connection when
the current one has seen a FIN or RST since it began: at its last SYN, or at
its first packet when something else began it (a packet past the close or
idle horizon, or one of Zeek's timers with ``zeek_timeouts``).  The FIN or
RST of an earlier connection on the 4-tuple does not count, whatever the
batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from tests.capture.builders import A4, ACK, B4, FIN, PSH, RST, SYN, ip4, pcap, tcp

from finwait.analyze import analyze_file
from finwait.capture.reader import RawBatch, iter_batches


def _packets(close: str) -> list[tuple[float, bytes]]:
    """A connection closed by ``close`` (both FINs, or a RST) from client
    port 40000; 10 s later (past the 5 s close horizon) an ACK on the same
    4-tuple, which begins a second connection; then a SYN on it."""

    def c(t: float, seq: int, ack: int, fl: int, n: int = 0) -> tuple[float, bytes]:
        return t, ip4(A4, B4, tcp(40000, 80, 100 + seq, 900 + ack, fl, n))

    def s(t: float, seq: int, ack: int, fl: int, n: int = 0) -> tuple[float, bytes]:
        return t, ip4(B4, A4, tcp(80, 40000, 900 + seq, 100 + ack, fl, n))

    pk = [c(0, 0, 0, SYN), s(0.01, 0, 1, SYN | ACK), c(0.02, 1, 1, ACK),
          c(0.03, 1, 1, PSH | ACK, 20), s(0.04, 1, 21, PSH | ACK, 30)]  # fmt: skip
    if close == "fin":
        pk += [c(0.05, 21, 31, FIN | ACK), s(0.06, 31, 22, FIN | ACK), c(0.07, 22, 32, ACK)]
    else:
        pk += [s(0.05, 31, 21, RST | ACK)]
    pk += [c(10.0, 22, 32, ACK), c(10.5, 5000, 0, SYN)]
    return pk


@pytest.mark.parametrize("batch", [None, 1, 3])
@pytest.mark.parametrize("zeek", [False, True])
@pytest.mark.parametrize("close", ["fin", "rst"])
def test_syn_after_a_connection_begun_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, close: str, zeek: bool, batch: int | None
) -> None:
    """The SYN belongs to the connection the late ACK began: that one has
    seen no FIN or RST (the FIN/RST before it were the first connection's).
    In one batch, or in batches of ``batch`` records."""
    if batch is not None:
        from finwait.analyze import run

        def sliced(
            path: str | Path, chunk_size: int = 8 << 20, follow: bool = False
        ) -> Iterator[RawBatch]:
            for b in iter_batches(path, chunk_size):
                for lo in range(0, len(b), batch):
                    sl = slice(lo, lo + batch)
                    yield replace(
                        b, data_off=b.data_off[sl], caplen=b.caplen[sl], wirelen=b.wirelen[sl],
                        ts=b.ts[sl], linktype=b.linktype[sl], frame=b.frame[sl],
                    )  # fmt: skip

        monkeypatch.setattr(run, "iter_batches", sliced)
    pk = _packets(close)
    path = tmp_path / "reuse.pcap"
    path.write_bytes(pcap(pk, 101))
    res = analyze_file(path, zeek_timeouts=zeek)
    recs = list(res.records())
    n_first = len(pk) - 2
    assert [(r["first_frame"], r["last_frame"]) for r in recs] == [
        (1, n_first), (n_first + 1, n_first + 2),
    ]  # fmt: skip


@pytest.mark.parametrize("zeek", [False, True])
def test_syn_after_a_close_in_the_same_connection(tmp_path: Path, zeek: bool) -> None:
    """The rule itself: once the connection the late ACK began sees a FIN
    of its own, a SYN after it starts a third connection."""
    pk = _packets("fin")
    syn = pk.pop()
    pk += [(10.2, ip4(A4, B4, tcp(40000, 80, 122, 932, FIN | ACK, 0))), syn]
    path = tmp_path / "reuse.pcap"
    path.write_bytes(pcap(pk, 101))
    recs = list(analyze_file(path, zeek_timeouts=zeek).records())
    n_first = len(pk) - 3
    assert [(r["first_frame"], r["last_frame"]) for r in recs] == [
        (1, n_first), (n_first + 1, n_first + 2), (n_first + 3, n_first + 3),
    ]  # fmt: skip
