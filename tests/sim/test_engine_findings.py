"""Engine behaviour found through the simulator, kept as regression tests.

Fixed: a half-closed FIN-WAIT-2 timed out while the peer was alive; it now
waits for the FIN as Linux does after shutdown(SHUT_WR) (LX-8)."""

from __future__ import annotations

from finwait.sim.scenario import ScenarioSpec, run_scenario
from finwait.tcp.state import State
from finwait.trace import SegmentEvent
from finwait.wire.segment import PSH

from .release import states_of


def test_fin_wait_2_wait_restarts_on_a_retransmission_from_the_peer() -> None:
    """A closes; B (CLOSE-WAIT) is alive and retransmits data A already has,
    because A's ACKs were lost (seen in a 30 %-loss run, seed 333).  The
    engine's own rule (``_arm_fin_wait_2``: "any segment from it restarts the
    wait, so a long half-close transfer is not cut") says A must still be
    waiting 60 s after entering FIN-WAIT-2; it times out instead, because a
    duplicate fails the acceptability test (§3.10.7.4 first) before the
    timer is re-armed.  Linux would not time out at all: a socket that only
    half-closed (shutdown(SHUT_WR)) waits for the peer's FIN indefinitely
    (CONFORMANCE LX-8)."""
    spec = ScenarioSpec(client_bytes=100, server_bytes=100, closer="client", close_delay=80.0)
    first = run_scenario(spec, until=30.0)
    net, trace = first.network, first.trace
    assert states_of(trace, "A")[-1] is State.FIN_WAIT_2
    data = next(
        e
        for e in trace.segments()
        if isinstance(e, SegmentEvent) and e.src == "B" and e.segment.flags & PSH
    )
    net.inject(data.segment, at=30.0)  # the same bytes again, as a retransmission
    net.run()
    # B closes at about 80 s; A should receive that FIN and go to TIME-WAIT.
    assert State.TIME_WAIT in states_of(trace, "A")
