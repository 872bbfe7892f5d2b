"""receive() says what became of each segment (tcp/verdict.py), and the
counter of a discarded segment is the verdict's own name."""

from __future__ import annotations

from finwait.tcp.verdict import Verdict
from finwait.wire.segment import ACK, FIN, PSH, RST, SYN

from .harness import E_PORT, Exchange


def verdict_of(x: Exchange, **kw: object) -> Verdict:
    v = x.host.receive(x.seg(**kw), x.now)  # type: ignore[arg-type]
    x._collect()
    return v


def test_verdicts_in_a_synchronized_state() -> None:
    x = Exchange()
    x.established(snd_nxt=1, rcv_nxt=1)
    cases = [
        (dict(seq=1, ack=1, flags=PSH | ACK, payload=b"abc"), Verdict.ACCEPTED),
        (dict(seq=1, ack=1, flags=PSH | ACK, payload=b"abc"), Verdict.UNACCEPTABLE_SEGMENT),
        (dict(seq=4, flags=FIN), Verdict.FIN_WITHOUT_ACK),  # the seed's bare FIN
        (dict(seq=4, flags=0, payload=b"x"), Verdict.NO_ACK),
        (dict(seq=4, ack=1000, flags=ACK), Verdict.ACK_OF_UNSENT_DATA),
        (dict(seq=5, flags=RST), Verdict.CHALLENGE_ACK_RST),  # in window, not RCV.NXT
        (dict(seq=1 << 30, flags=RST), Verdict.RST_OUT_OF_WINDOW),
        (dict(seq=4, flags=RST), Verdict.RESET),
        (dict(seq=4, ack=1, flags=ACK), Verdict.ACK_TO_LISTENER),  # TCB gone: the listener RSTs
    ]
    for kw, want in cases:
        before = x.counters.get(want.value, 0)
        assert verdict_of(x, **kw) is want, kw
        if want is not Verdict.ACCEPTED:
            assert x.counters[want.value] == before + 1, want
        assert want.dropped == (want not in (Verdict.ACCEPTED, Verdict.RESET))


def test_verdicts_at_a_listener_and_a_closed_port() -> None:
    x = Exchange()
    x.listen()
    assert verdict_of(x, seq=0, flags=SYN) is Verdict.ACCEPTED
    assert verdict_of(x, seq=0, flags=RST, sport=1) is Verdict.RST_TO_LISTENER
    assert verdict_of(x, seq=0, ack=5, flags=ACK, sport=2) is Verdict.ACK_TO_LISTENER
    assert verdict_of(x, seq=0, flags=FIN, sport=3) is Verdict.FIN_WITHOUT_ACK
    assert verdict_of(x, seq=0, flags=SYN, dport=E_PORT + 1) is Verdict.NO_MATCHING_CONNECTION
    assert verdict_of(x, seq=0, flags=RST, dport=E_PORT + 1) is Verdict.RST_FOR_NO_CONNECTION
    assert x.host.receive_packet(b"\x45garbage", x.now) is Verdict.PARSE_ERROR
    assert Verdict.RST_IN_TIME_WAIT_IGNORED.reason == "rst in time-wait"
    assert Verdict.FIN_WITHOUT_ACK.reason == "fin without ack"
