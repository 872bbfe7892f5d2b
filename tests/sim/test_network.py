"""Links and the network with a fake node: delay, bandwidth, queue, loss,
duplication, reordering, injected segments, state events, determinism."""

from __future__ import annotations

from typing import Any

import pytest

from finwait.sim.link import LinkConfig, wire_size
from finwait.sim.network import Network, SimulationError
from finwait.sim.rng import Rng
from finwait.tcp.state import State
from finwait.trace import DELIVERED, DROPPED, LOST, SegmentEvent, StateEvent
from finwait.wire.errors import ParseError
from finwait.wire.ip import decode_packet, encode_packet
from finwait.wire.segment import ACK, FIN, Segment

from .fakes import FakeNode

A_ADDR, B_ADDR = "198.18.0.1", "198.18.0.2"
TEMPLATE = Segment(A_ADDR, B_ADDR, 40000, 80, 1000, 1, ACK, 65535, bytes(1460))


def pair(config: LinkConfig, seed: int = 1) -> tuple[Network, FakeNode, FakeNode]:
    net = Network(Rng(seed))
    a, b = FakeNode(), FakeNode()
    net.add_node("A", a, [A_ADDR])
    net.add_node("B", b, [B_ADDR])
    net.trace.add_endpoint("A", A_ADDR, 40000, 999)
    net.trace.add_endpoint("B", B_ADDR, 80, 0)
    net.connect("A", "B", config)
    return net, a, b


def burst(n: int) -> list[Segment]:
    return [TEMPLATE._replace(seq=1000 + i * 1460) for i in range(n)]


def send_at(net: Network, node: FakeNode, t: float, segs: list[Segment]) -> None:
    net.call("A", t, lambda now: node.send(*segs))


def fates(net: Network) -> list[tuple[str, str | None]]:
    return [(e.fate, e.reason) for e in net.trace.segments()]


def test_one_way_delay() -> None:
    net, a, b = pair(LinkConfig(delay=0.05))
    send_at(net, a, 1.0, burst(1))
    assert net.run() == pytest.approx(1.05)
    assert [t for t, _ in b.arrivals] == [pytest.approx(1.05)]
    (ev,) = net.trace.segments()
    assert (ev.t, ev.fate) == (1.0, DELIVERED)
    assert ev.arrive == pytest.approx(1.05)


def test_bandwidth_serializes_fifo() -> None:
    net, a, b = pair(LinkConfig(delay=0.01, bandwidth=1e6))
    send_at(net, a, 0.0, burst(5))
    net.run()
    tx = wire_size(TEMPLATE) * 8 / 1e6  # 1500 bytes at 1 Mbit/s = 12 ms
    assert wire_size(TEMPLATE) == 1500
    times = [t for t, _ in b.arrivals]
    assert times == [pytest.approx(0.01 + tx * (i + 1)) for i in range(5)]
    assert [s.seq for _, s in b.arrivals] == [s.seq for s in burst(5)]


def test_bounded_queue_tail_drops() -> None:
    net, a, b = pair(LinkConfig(bandwidth=1e6, queue_bytes=3000))
    send_at(net, a, 0.0, burst(10))
    net.run()
    assert len(b.arrivals) == 2
    assert fates(net) == [(DELIVERED, None)] * 2 + [(LOST, "queue full")] * 8
    assert net.link("A", "B").queue_drops == 8
    # Once the queue has drained, the link accepts again.
    send_at(net, a, 1.0, burst(1))
    net.run()
    assert len(b.arrivals) == 3


def test_loss_rate_within_tolerance() -> None:
    net, a, b = pair(LinkConfig(delay=0.001, loss=0.2), seed=11)
    n = 5000
    send_at(net, a, 0.0, burst(n))
    net.run()
    lost = sum(1 for e in net.trace.segments() if e.fate == LOST)
    assert lost + len(b.arrivals) == n
    assert abs(lost / n - 0.2) < 5 * (0.2 * 0.8 / n) ** 0.5  # 5 sigma
    assert {e.reason for e in net.trace.segments() if e.fate == LOST} == {"loss"}


def test_duplication_delivers_a_second_copy() -> None:
    net, a, b = pair(LinkConfig(delay=0.01, dup=1.0))
    send_at(net, a, 0.0, burst(3))
    net.run()
    assert [s.seq for _, s in b.arrivals] == [s.seq for s in burst(3) for _ in range(2)]
    assert len(list(net.trace.segments())) == 6


def test_reordering_delays_some_segments_past_later_ones() -> None:
    def arrival_order(reorder: float) -> list[int]:
        net, a, b = pair(LinkConfig(delay=0.01, reorder=reorder, reorder_delay=0.02), seed=4)
        for i, seg in enumerate(burst(50)):
            send_at(net, a, i * 0.001, [seg])
        net.run()
        assert len(b.arrivals) == 50
        return [s.seq for _, s in b.arrivals]

    in_order = [s.seq for s in burst(50)]
    assert arrival_order(0.0) == in_order
    shuffled = arrival_order(0.3)
    assert shuffled != in_order
    assert sorted(shuffled) == in_order


def test_injected_bare_fin_is_recorded_as_dropped_by_the_receiver() -> None:
    net, _, b = pair(LinkConfig(delay=0.01))
    bare_fin = Segment(A_ADDR, B_ADDR, 40000, 80, 1000, 0, FIN, 0)
    net.inject(bare_fin, at=0.5)
    net.run()
    assert b.counters["fin_without_ack"] == 1
    (ev,) = net.trace.segments()
    assert (ev.t, ev.src, ev.dst, ev.fate, ev.reason) == (0.5, "A", "B", DROPPED, "fin without ack")


def test_state_changes_are_recorded_with_the_node_name() -> None:
    net, a, _ = pair(LinkConfig())
    net.call("A", 0.25, lambda now: a.announce(State.ESTABLISHED, State.FIN_WAIT_1, now))
    net.run()
    assert net.trace.events == [StateEvent(0.25, "A", State.FIN_WAIT_1)]


def test_unknown_destination_is_recorded_as_no_route() -> None:
    net, a, _ = pair(LinkConfig())
    send_at(net, a, 0.0, [TEMPLATE._replace(dst="198.18.9.9")])
    net.run()
    assert fates(net) == [(LOST, "no route")]


def test_node_timers_are_armed_from_next_deadline() -> None:
    net, a, b = pair(LinkConfig(delay=0.1))
    a.wake_at(2.0, burst(1))
    net.kick("A")
    assert net.run() == pytest.approx(2.1)
    assert [t for t, _ in b.arrivals] == [pytest.approx(2.1)]


def test_run_until_stops_early_and_resumes() -> None:
    net, a, b = pair(LinkConfig(delay=0.1))
    send_at(net, a, 0.0, burst(1))
    send_at(net, a, 5.0, burst(1))
    net.run(until=1.0)
    assert len(b.arrivals) == 1
    net.run()
    assert len(b.arrivals) == 2


class Runaway(FakeNode):
    """A node whose deadline never moves: each timer re-arms itself."""

    def next_deadline(self) -> float | None:
        return 1.0

    def on_timer(self, now: float) -> None:
        self.counters["fired"] += 1


def test_a_node_that_never_settles_is_an_error_not_a_hang() -> None:
    net = Network(Rng(1), max_events=1000)
    net.add_node("A", Runaway(), [A_ADDR])
    net.kick("A")
    with pytest.raises(SimulationError):
        net.run()


def run_lossy(seed: int) -> dict[str, Any]:
    net, a, _ = pair(LinkConfig(delay=0.003, bandwidth=10e6, loss=0.1, dup=0.05, reorder=0.1), seed)
    for i in range(200):
        send_at(net, a, i * 0.0005, burst(1))
    net.run()
    data: dict[str, Any] = net.trace.to_json()
    return data


def test_same_seed_same_trace_different_seed_different_losses() -> None:
    first = run_lossy(1)
    assert first == run_lossy(1)
    other = run_lossy(2)

    def lost(js: dict[str, Any]) -> list[float]:
        return [e["t"] for e in js["events"] if e.get("fate") == LOST]

    assert lost(first) and lost(other)
    assert lost(first) != lost(other)


def test_link_config_rejects_nonsense() -> None:
    bad: list[dict[str, Any]] = [
        {"loss": 1.5},
        {"dup": -0.1},
        {"delay": -1.0},
        {"bandwidth": 0.0},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            LinkConfig(**kwargs)


def test_trace_events_are_segment_events_for_link_records() -> None:
    net, a, _ = pair(LinkConfig(loss=1.0))
    send_at(net, a, 0.0, burst(1))
    net.run()
    (ev,) = net.trace.events
    assert isinstance(ev, SegmentEvent) and ev.arrive is None


def test_corrupted_segments_travel_as_bytes_and_fail_the_checksum() -> None:
    net, a, b = pair(LinkConfig(delay=0.01, corrupt=1.0), seed=3)
    segs = burst(40)
    send_at(net, a, 0.0, segs)
    net.run()
    assert b.arrivals == []  # nothing arrives as a parsed segment
    assert len(b.packets) == 40
    events = list(net.trace.segments())
    assert {e.fate for e in events} == {DROPPED}
    reasons = [e.reason for e in events]
    # A flipped bit in the TCP header's offset field can fail an earlier check;
    # almost every flip lands in header fields or payload the checksum covers.
    assert reasons.count("bad checksum") >= 35
    for (_, packet), seg in zip(b.packets, segs, strict=True):
        original = encode_packet(seg)
        assert packet[:20] == original[:20]  # IP header and addresses intact
        diff = int.from_bytes(packet, "big") ^ int.from_bytes(original, "big")
        assert diff.bit_count() == 1
        with pytest.raises(ParseError):
            decode_packet(packet)


def test_corruption_does_not_change_which_segments_are_lost() -> None:
    def lost(corrupt: float) -> list[int]:
        net, a, _ = pair(LinkConfig(loss=0.3, corrupt=corrupt), seed=8)
        send_at(net, a, 0.0, burst(200))
        net.run()
        return [e.segment.seq for e in net.trace.segments() if e.fate == LOST]

    assert lost(0.0) == lost(0.5)
