"""Hostile input, property-based: arbitrary segments (flags, numbers,
options, payloads) and user calls in every state.  No exception escapes the
Host, the send-side invariant SND.UNA <= SND.NXT <= SND.MAX holds, every
buffer stays within its bound, and every state change is a row of the RFC
diagram."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finwait.tcp import seqnum
from finwait.tcp.config import Config
from finwait.tcp.connection import Connection, TcpError
from finwait.tcp.state import ALLOWED
from finwait.wire.segment import ACK, FIN, TcpOptions

from . import harness
from .harness import Exchange

CFG = Config(recv_buffer=4096, send_buffer=4096, max_ooo_segments=8, delayed_ack=True)


def _est(x: Exchange) -> None:
    x.established(snd_nxt=100, rcv_nxt=300)


def _fw1(x: Exchange) -> None:
    _est(x)
    x.close_first()


def _fw2(x: Exchange) -> None:
    _fw1(x)
    x.deliver(seq=300, ack=101)


def _cw(x: Exchange) -> None:
    _est(x)
    x.deliver(seq=300, ack=100, flags=FIN | ACK)


def _la(x: Exchange) -> None:
    _cw(x)
    assert x.conn is not None
    x.conn.close(x.now)


def _tw(x: Exchange) -> None:
    _fw2(x)
    x.deliver(seq=300, ack=101, flags=FIN | ACK)


def _syn_rcvd(x: Exchange) -> None:
    from finwait.wire.segment import SYN

    x.listen()
    x.deliver(seq=0, flags=SYN)
    x.conn = next(iter(x.host.conns.values()))


def _syn_sent(x: Exchange) -> None:
    from .harness import E_ADDR, E_PORT, P_ADDR, P_PORT

    x.conn = x.host.connect(P_ADDR, P_PORT, x.now, src=E_ADDR, sport=E_PORT)


SETUPS: list[Callable[[Exchange], None]] = [_est, _fw1, _fw2, _cw, _la, _tw, _syn_rcvd, _syn_sent]

near = st.integers(min_value=-70000, max_value=70000)
numbers = st.one_of(
    near.map(lambda d: ("rel", d)), st.integers(0, 2**32 - 1).map(lambda v: ("abs", v))
)
options = st.builds(
    TcpOptions,
    mss=st.one_of(st.none(), st.integers(0, 65535)),
    wscale=st.one_of(st.none(), st.integers(0, 255)),
    sack_permitted=st.booleans(),
    timestamps=st.one_of(
        st.none(), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    ),
    sack_blocks=st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=4
    ).map(tuple),
)
segment = st.fixed_dictionaries(
    {
        "seq": numbers,
        "ack": numbers,
        "flags": st.integers(0, 255),
        "payload": st.binary(max_size=200),
        "window": st.integers(0, 65535),
        "options": options,
    }
)
action = st.one_of(
    segment.map(lambda s: ("segment", s)),
    st.floats(0.0, 200.0).map(lambda t: ("advance", t)),
    st.sampled_from(["send", "recv", "close", "close_discard", "abort"]).map(lambda u: ("user", u)),
)


def resolve(spec: tuple[str, int], base: int) -> int:
    kind, v = spec
    return seqnum.add(base, v) if kind == "rel" else v


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SETUPS))), st.lists(action, max_size=25))
def test_no_input_breaks_the_engine(setup: int, actions: list[tuple[str, object]]) -> None:
    x = Exchange(config=CFG, engine_iss=0, peer_iss=0)
    SETUPS[setup](x)
    conn = x.conn
    assert conn is not None
    harness.RECORDER = transitions = []
    try:
        run(x, conn, actions)
    finally:
        harness.RECORDER = None
    for t in transitions:
        assert t in ALLOWED, t


def run(x: Exchange, conn: Connection, actions: list[tuple[str, object]]) -> None:
    for kind, arg in actions:
        if kind == "segment":
            s = arg
            assert isinstance(s, dict)
            x.deliver(
                seq=resolve(s["seq"], conn.rcv_nxt),
                ack=resolve(s["ack"], conn.snd_una),
                flags=s["flags"],
                payload=s["payload"],
                window=s["window"],
                options=s["options"],
            )
        elif kind == "advance":
            assert isinstance(arg, float)
            x.advance(arg)
        else:
            try:
                if arg == "send":
                    conn.send(b"d" * 1500, x.now)
                elif arg == "recv":
                    conn.recv()
                elif arg == "close":
                    conn.close(x.now)
                elif arg == "close_discard":
                    conn.close(x.now, discard=True)
                else:
                    conn.abort(x.now)
            except TcpError:
                pass  # a user error raises and changes nothing
        x.take_segments_sent()
        assert seqnum.le(conn.snd_una, conn.snd_nxt), (conn.snd_una, conn.snd_nxt)
        assert seqnum.le(conn.snd_nxt, conn.snd_max), (conn.snd_nxt, conn.snd_max)
        assert len(conn._sndbuf) <= CFG.send_buffer
        assert len(conn._rcvbuf) <= CFG.recv_buffer
        assert len(conn._ooo) <= CFG.max_ooo_segments
        assert conn._ooo.held_bytes <= CFG.recv_buffer
