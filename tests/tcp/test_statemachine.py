"""The engine against RFC 9293's state diagram (``state.TRANSITIONS``).

Every packet-exchange scenario of this folder is run with a recorder on:
each transition the engine makes must be a row of the table, and each row of
the table must be made by some scenario.
"""

from __future__ import annotations

import inspect

import pytest

from finwait.tcp.config import Config
from finwait.tcp.state import ALLOWED, TRANSITIONS, State
from finwait.wire.segment import ACK, FIN, RST, SYN

from . import harness, test_data, test_open, test_release
from .harness import E_ADDR, E_PORT, P_ADDR, P_PORT, Exchange


def extra_scenarios() -> None:
    """Rows the release/open scenarios do not reach."""
    # SYN-RECEIVED (active, simultaneous open) -> CLOSED on RST.
    x = Exchange(engine_iss=100, peer_iss=300)
    x.conn = x.host.connect(P_ADDR, P_PORT, x.now, src=E_ADDR, sport=E_PORT)
    x.deliver(seq=300, flags=SYN)
    x.deliver(seq=301, flags=RST)
    assert x.state is State.CLOSED
    # CLOSING -> CLOSED on RST; CLOSE-WAIT -> CLOSED on ABORT.
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, ack=100, flags=FIN | ACK)
    assert x.state is State.CLOSING
    x.deliver(seq=301, flags=RST)
    assert x.state is State.CLOSED
    x = Exchange()
    x.established(snd_nxt=100, rcv_nxt=300)
    x.deliver(seq=300, ack=100, flags=FIN | ACK)
    assert x.conn is not None
    x.conn.abort(x.now)
    assert x.state is State.CLOSED
    # FIN-WAIT-1 -> CLOSED on a RST at RCV.NXT.
    x = Exchange(config=Config(delayed_ack=False))
    x.established(snd_nxt=100, rcv_nxt=300)
    x.close_first()
    x.deliver(seq=300, flags=RST)
    assert x.state is State.CLOSED


def run_all_scenarios() -> list[tuple[State, State]]:
    harness.RECORDER = []
    try:
        for module in (test_release, test_open, test_data):
            for name, fn in inspect.getmembers(module, inspect.isfunction):
                if not name.startswith("test_"):
                    continue
                params = getattr(fn, "pytestmark", [])
                if inspect.signature(fn).parameters:
                    for mark in params:
                        if mark.name == "parametrize":
                            names = mark.args[0]
                            argnames = (
                                list(names)
                                if isinstance(names, tuple | list)
                                else [a.strip() for a in names.split(",")]
                            )
                            for values in mark.args[1]:
                                vals = values if isinstance(values, tuple) else (values,)
                                fn(**dict(zip(argnames, vals, strict=True)))
                    continue
                fn()
        extra_scenarios()
        return list(harness.RECORDER)
    finally:
        harness.RECORDER = None


@pytest.fixture(scope="module")
def observed() -> list[tuple[State, State]]:
    return run_all_scenarios()


def test_every_engine_transition_is_in_the_diagram(observed: list[tuple[State, State]]) -> None:
    bad = sorted({f"{a} -> {b}" for a, b in observed if (a, b) not in ALLOWED})
    assert not bad, f"transitions not in RFC 9293's diagram: {bad}"


def test_every_row_of_the_diagram_is_exercised(observed: list[tuple[State, State]]) -> None:
    seen = set(observed)
    missing = [f"{a} -> {b} ({ev})" for a, b, ev, _ in TRANSITIONS if (a, b) not in seen]
    assert not missing, f"rows no scenario reaches: {missing}"


def test_state_names_print_in_rfc_spelling() -> None:
    assert str(State.FIN_WAIT_1) == "FIN-WAIT-1"
    assert State.parse("time_wait") is State.TIME_WAIT
