"""Engine behaviour found through the simulator, kept as regression tests.

Each test names the defect it found; all are fixed.  The first: a half-closed
FIN-WAIT-2 timed out while the peer was alive; it now waits for the FIN as
Linux does after shutdown(SHUT_WR) (LX-8, docs/conformance.md)."""

from __future__ import annotations

from finwait.sim.scenario import ScenarioSpec, run_scenario
from finwait.tcp.state import State
from finwait.trace import SegmentEvent
from finwait.wire.segment import PSH

from .release import states_of


def test_fin_wait_2_wait_restarts_on_a_retransmission_from_the_peer() -> None:
    """A closes; B (CLOSE-WAIT) is alive and retransmits data A already has,
    because A's ACKs were lost (seen in a 30 %-loss run, seed 333).  The
    engine used to time A out 60 s after it entered FIN-WAIT-2, because the
    duplicate failed the acceptability test (§3.10.7.4 first) before the
    timer was re-armed.  Now, as Linux, a connection that only half-closed
    (shutdown(SHUT_WR)) waits for the peer's FIN as long as it takes; the
    timer runs only once the user said it will read no more (LX-8,
    docs/conformance.md), so A is still there when B's FIN comes."""
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
