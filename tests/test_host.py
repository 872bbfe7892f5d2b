"""The Host on raw packets: whatever arrives, nothing raises; malformed
packets, bad checksums and bare FINs are counted by reason and dropped."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from finwait.host import Host
from finwait.tcp.state import State
from finwait.wire.ip import encode_packet
from finwait.wire.segment import ACK, FIN, RST, SYN, Segment

E, P = "198.18.0.2", "198.18.0.1"


def established() -> tuple[Host, int, int]:
    """A listener on 80 and one connection to it, driven by raw packets."""
    h = Host([E], isn_source=lambda *a: 1000)
    h.listen(80)
    h.receive_packet(encode_packet(Segment(P, E, 40000, 80, 5000, 0, SYN, 65535)), 0.0)
    (synack,) = h.take_segments()
    h.receive_packet(encode_packet(Segment(P, E, 40000, 80, 5001, synack.seq + 1, ACK, 65535)), 0.0)
    assert next(iter(h.conns.values())).state is State.ESTABLISHED
    return h, 5001, synack.seq + 1


def test_bad_checksum_is_counted_and_dropped() -> None:
    h, rcv, snd = established()
    pkt = bytearray(encode_packet(Segment(P, E, 40000, 80, rcv, snd, FIN | ACK, 65535)))
    pkt[-1] ^= 0xFF  # the last header byte: the TCP checksum no longer matches
    h.receive_packet(bytes(pkt), 0.1)
    assert h.counters["parse_error"] == 1
    assert h.counters["parse_error:bad checksum"] == 1
    assert next(iter(h.conns.values())).state is State.ESTABLISHED
    assert h.take_segments() == []


def test_truncated_and_garbage_packets_are_counted() -> None:
    h, rcv, snd = established()
    good = encode_packet(Segment(P, E, 40000, 80, rcv, snd, ACK, 65535, b"hello"))
    for junk in (good[:10], good[:25], b"", b"\x45" + bytes(50), b"\x60" + bytes(3)):
        h.receive_packet(junk, 0.1)
    assert h.counters["parse_error"] == 5
    assert sum(v for k, v in h.counters.items() if k.startswith("parse_error:")) == 5


def test_bare_fin_over_the_wire_is_counted_as_fin_without_ack() -> None:
    h, rcv, _ = established()
    h.receive_packet(encode_packet(Segment(P, E, 40000, 80, rcv, 0, FIN, 65535)), 0.1)
    assert h.counters["fin_without_ack"] == 1
    assert h.take_segments() == []
    assert next(iter(h.conns.values())).state is State.ESTABLISHED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_never_raise(data: bytes) -> None:
    h, _, _ = established()
    h.receive_packet(data, 0.2)
    h.on_timer(1.0)


def test_segment_for_another_address_is_not_ours() -> None:
    h = Host([E])
    h.receive(Segment(P, "198.18.0.99", 1, 2, 0, 0, SYN, 0), 0.0)
    assert h.counters["not_for_us"] == 1
    assert h.take_segments() == []


def test_accept_returns_the_connection_right_after_the_handshake() -> None:
    """The Host's tables follow every input: no take_segments() or
    next_deadline() is needed between the final ACK and accept()."""
    h = Host([E], isn_source=lambda *a: 1000)
    lst = h.listen(80)
    h.receive(Segment(P, E, 40000, 80, 5000, 0, SYN, 65535), 0.0)
    assert lst.accept() is None  # SYN-RECEIVED: not yet
    h.receive(Segment(P, E, 40000, 80, 5001, 1001, ACK, 65535), 0.0)
    conn = lst.accept()
    assert conn is not None and conn.state is State.ESTABLISHED


def test_a_closed_connection_leaves_the_table_at_once() -> None:
    """An abort (a user call) removes the TCB before any other call: a
    segment for its 4-tuple then meets no connection (§3.10.7.1)."""
    h, seq, ack = established()
    (conn,) = h.conns.values()
    conn.abort(0.0)
    assert not h.conns
    h.take_segments()
    h.receive(Segment(P, E, 40000, 80, seq, ack, ACK, 65535), 0.0)
    (rst,) = h.take_segments()
    assert rst.flags & RST and rst.seq == ack


def test_timestamp_offsets_differ_per_connection_and_are_stable() -> None:
    """The RFC 7323 §5.4 offset comes with the ISN from one keyed hash of the
    4-tuple: two connections get different offsets, the same 4-tuple the same."""
    offsets = []
    for sport in (40000, 40001, 40000):
        h = Host([E])
        c = h.connect(P, 80, 0.0, sport=sport)
        (syn,) = h.take_segments()
        assert syn.options.timestamps is not None
        offsets.append((syn.options.timestamps[0], c.iss))
    assert offsets[0] != offsets[1] and offsets[0] == offsets[2]
