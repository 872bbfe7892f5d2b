"""How the driver packs the engine's segments for a TUN with segmentation
offload (no lab needed): runs of full-sized data segments become one GSO
super-packet with a correct virtio_net_hdr and checksum; anything that the
kernel's segmentation could not cut back into the same segments stays apart."""

from __future__ import annotations

import struct

import pytest

from finwait.live.driver import VNET_GSO_TCPV4, VNET_GSO_TCPV6, super_packets
from finwait.wire.errors import ParseError
from finwait.wire.ip import decode_packet, encode_packet
from finwait.wire.segment import ACK, FIN, PSH, Segment, TcpOptions

MSS = 1448
TS = TcpOptions(timestamps=(1000, 2000))


def _data(i: int, n: int = MSS, flags: int = ACK, *, v6: bool = False, ack: int = 77) -> Segment:
    src, dst = ("2001:db8::2", "2001:db8::1") if v6 else ("198.18.0.2", "198.18.0.1")
    return Segment(src, dst, 40000, 5001, 1 + i * MSS, ack, flags, 500,
                   bytes([i % 251]) * n, TS)  # fmt: skip


def _unpack(pkt: bytes) -> tuple[tuple[int, ...], Segment]:
    hdr = struct.unpack("=BBHHHH", pkt[:10])
    return hdr, decode_packet(pkt[10:])  # verifies the checksums


def test_a_run_of_full_segments_becomes_one_super_packet() -> None:
    segs = [_data(0), _data(1), _data(2), _data(3, 100, ACK | PSH)]
    pkts = list(super_packets(segs))
    assert len(pkts) == 1
    (flags, gso, hdr_len, gso_size, _, _), seg = _unpack(pkts[0])
    assert (flags, gso, gso_size) == (0, VNET_GSO_TCPV4, MSS)
    assert hdr_len == 20 + 32  # IPv4 + TCP with the timestamps option
    assert seg.seq == 1 and seg.flags == ACK | PSH and seg.ack == 77
    assert seg.payload == b"".join(s.payload for s in segs)


def test_ipv6_super_packet() -> None:
    pkts = list(super_packets([_data(0, v6=True), _data(1, v6=True)]))
    (_, gso, hdr_len, gso_size, _, _), seg = _unpack(pkts[0])
    assert len(pkts) == 1 and (gso, hdr_len, gso_size) == (VNET_GSO_TCPV6, 40 + 32, MSS)
    assert len(seg.payload) == 2 * MSS


def test_what_cannot_be_merged_stays_apart() -> None:
    segs = [
        _data(0), _data(1, 700),  # a short segment ends a run ...
        _data(2),  # ... (and is not where the next one starts: seq gap here)
        _data(3, ack=78),  # another ACK number: another run
        _data(4, flags=ACK | FIN),  # a FIN is never merged
        _data(5), _data(6, ack=78),
    ]  # fmt: skip
    pkts = list(super_packets(segs))
    decoded = [_unpack(p) for p in pkts]
    gso_types = [h[1] for h, _ in decoded]
    assert gso_types == [VNET_GSO_TCPV4, 0, 0, 0, 0, 0]
    assert [len(s.payload) for _, s in decoded] == [MSS + 700, MSS, MSS, MSS, MSS, MSS]
    # Every segment's bytes went out exactly once, in order.
    assert b"".join(s.payload for _, s in decoded) == b"".join(s.payload for s in segs)


def test_a_single_segment_is_written_as_it_is() -> None:
    seg = _data(0)
    assert list(super_packets([seg])) == [bytes(10) + encode_packet(seg)]


def test_a_super_packet_never_exceeds_the_ipv4_limit() -> None:
    segs = [_data(i) for i in range(60)]  # 60 x 1448 = 86,880 bytes of payload
    pkts = list(super_packets(segs))
    assert all(len(p) - 10 <= 65535 for p in pkts)
    assert sum(len(_unpack(p)[1].payload) for p in pkts) == 60 * MSS
    assert len(pkts) == 2


def test_a_tso_segment_is_one_super_packet_cut_at_its_connections_mss() -> None:
    """A data segment the engine built longer than the SMSS (Config.send_size,
    TSO) goes out as one super-packet whose gso_size is the SMSS of the
    connection that sent it (mss_of); FIN and PSH stay on it, for the last
    piece.  Without a known MSS it is written as it is."""
    big = _data(0, 10 * MSS + 5, ACK | PSH | FIN)
    pkts = list(super_packets([big, _data(11)], lambda seg: MSS))
    (_, gso, _, gso_size, _, _), seg = _unpack(pkts[0])
    assert len(pkts) == 2 and (gso, gso_size) == (VNET_GSO_TCPV4, MSS)
    assert seg.flags == ACK | PSH | FIN and seg.payload == big.payload
    assert list(super_packets([big], lambda seg: 0)) == [bytes(10) + encode_packet(big)]


def test_a_partial_checksum_is_what_the_kernel_completes() -> None:
    """With ``partial_checksum`` a super-packet says NEEDS_CSUM, points
    csum_start/csum_offset at the TCP checksum field and leaves the
    pseudo-header's sum there: the kernel's completion (the checksum over
    csum_start..end, stored at the field) gives a packet whose checksums
    verify.  Packets that are not super-packets keep complete checksums."""
    from finwait.live.driver import VNET_F_NEEDS_CSUM
    from finwait.wire.checksum import checksum

    for v6 in (False, True):
        segs = [_data(0, v6=v6), _data(1, v6=v6), _data(2, 10, ACK | PSH, v6=v6)]
        pkts = list(super_packets(segs, partial_checksum=True))
        assert len(pkts) == 1
        hdr, raw = struct.unpack("=BBHHHH", pkts[0][:10]), bytearray(pkts[0][10:])
        flags, gso, _, gso_size, start, offset = hdr
        assert flags == VNET_F_NEEDS_CSUM and gso_size == MSS
        assert gso == (VNET_GSO_TCPV6 if v6 else VNET_GSO_TCPV4)
        assert (start, offset) == (40 if v6 else 20, 16)
        with pytest.raises(ParseError, match="checksum"):
            decode_packet(bytes(raw))  # not complete yet
        raw[start + offset : start + offset + 2] = checksum(raw[start:]).to_bytes(2, "big")
        seg = decode_packet(bytes(raw))  # verifies
        assert seg.payload == b"".join(s.payload for s in segs)
    single = _data(0)
    assert list(super_packets([single], partial_checksum=True)) == [
        bytes(10) + encode_packet(single)
    ]
