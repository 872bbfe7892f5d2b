"""Properties: every segment round-trips through bytes, and no input, however
malformed, makes the decoders raise anything but ParseError (RFC 9293 MUST-5,
MUST-6, MUST-7, MUST-64: options of any length, alignment or kind)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finwait.wire import ip
from finwait.wire.checksum import checksum
from finwait.wire.errors import ParseError
from finwait.wire.ip import decode_ip_header, decode_packet, encode_packet
from finwait.wire.segment import NO_OPTIONS, Segment, TcpOptions
from finwait.wire.tcp import address_pair, decode_options, decode_tcp, encode_options, encode_tcp

from .strategies import options, segments


@given(segments())
def test_packet_roundtrip(seg: Segment) -> None:
    assert decode_packet(encode_packet(seg)) == seg


@given(segments(), st.booleans())
def test_headers_only_then_the_payload_is_the_packet(seg: Segment, partial: bool) -> None:
    """What a gathering writer (os.writev) sends is byte for byte the packet."""
    whole = encode_packet(seg, partial_checksum=partial)
    hdrs = encode_packet(seg, partial_checksum=partial, headers_only=True)
    assert hdrs + seg.payload == whole
    assert len(hdrs) == len(whole) - len(seg.payload)


@given(segments())
def test_tcp_roundtrip(seg: Segment) -> None:
    raw = encode_tcp(seg)
    assert decode_tcp(raw, seg.src, seg.dst) == seg
    assert decode_tcp(memoryview(raw), seg.src, seg.dst, verify_checksum=False) == seg


@given(options)
def test_options_roundtrip_and_alignment(opts: TcpOptions) -> None:
    raw = encode_options(opts)
    assert len(raw) % 4 == 0
    assert decode_options(raw) == opts


def _decode_all(data: bytes) -> None:
    for verify in (True, False):
        for decode in (decode_packet, decode_ip_header):
            with contextlib.suppress(ParseError):
                decode(data, verify_checksum=verify)
        with contextlib.suppress(ParseError):
            decode_tcp(data, "198.18.0.1", "198.18.0.2", verify_checksum=verify)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_random_bytes_only_parse_error(data: bytes) -> None:
    _decode_all(data)
    # Version nibble forced to 4 and 6 so the fuzz reaches past the first check.
    if data:
        _decode_all(bytes([0x45]) + data[1:])
        _decode_all(bytes([0x60]) + data[1:])


@st.composite
def mutated_packets(draw: st.DrawFn) -> bytes:
    pkt = bytearray(encode_packet(draw(segments())))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "set", "truncate", "extend"]))
        if action == "truncate":
            del pkt[draw(st.integers(0, len(pkt))) :]
        elif action == "extend":
            pkt += draw(st.binary(min_size=1, max_size=16))
        elif pkt:
            i = draw(st.integers(0, len(pkt) - 1))
            pkt[i] = (
                pkt[i] ^ draw(st.integers(1, 255))
                if action == "flip"
                else draw(st.integers(0, 255))
            )
    return bytes(pkt)


@settings(max_examples=300)
@given(mutated_packets())
def test_mutated_packets_only_parse_error(pkt: bytes) -> None:
    _decode_all(pkt)
    if len(pkt) > 40:
        _decode_all(pkt[20:])  # the TCP part of an IPv4 packet, mutated
        _decode_all(pkt[40:])


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_any_option_bytes_decode_and_reencode(raw: bytes) -> None:
    opts = decode_options(raw)
    # Whatever was understood from at most 40 bytes re-encodes within 40
    # bytes (compact layout if need be) and decodes the same.
    assert decode_options(encode_options(opts)) == opts


@given(segments(), st.integers(0, 19), st.binary(min_size=1, max_size=8))
def test_tcp_header_with_arbitrary_options(seg: Segment, pos: int, junk: bytes) -> None:
    """Junk spliced into the option area keeps the header consistent when the
    data offset is fixed up: the segment decodes, options never raise."""
    raw = bytearray(encode_tcp(seg._replace(options=TcpOptions()), checksum=False))
    opt = (junk * 40)[: 4 * (1 + pos % 10)]
    raw[20:20] = opt
    raw[12] = (20 + len(opt)) << 2
    out = decode_tcp(bytes(raw), seg.src, seg.dst, verify_checksum=False)
    assert out.payload == seg.payload
    assert (out.seq, out.ack, out.flags) == (seg.seq, seg.ack, seg.flags)


# -- the IPv4 fast paths (ip._encode_v4, ip._decode_v4) against the general ones


@st.composite
def common_v4(draw: st.DrawFn) -> Segment:
    """IPv4 segments of the shapes the fast paths take (no options, or
    timestamps only), with odd and even payloads."""
    seg = draw(segments(family=4))
    ts = draw(st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)))
    opts = NO_OPTIONS if ts is None else TcpOptions(timestamps=ts)
    return seg._replace(options=opts)


@given(common_v4(), st.booleans(), st.booleans())
def test_v4_fast_encode_is_the_general_encoding(seg: Segment, partial: bool, hdrs: bool) -> None:
    src, dst = address_pair(seg.src, seg.dst)
    addr_sum = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    fast = ip._encode_v4(seg, src, dst, addr_sum, 64, 0, partial, hdrs)
    assert fast is not None
    assert fast == ip._encode_any(seg, src, dst, addr_sum, 64, 0, partial, hdrs)
    assert encode_packet(seg, partial_checksum=partial, headers_only=hdrs) == fast


@settings(max_examples=300)
@given(common_v4(), st.booleans(), st.integers(0, 4), st.data())
def test_v4_fast_decode_is_the_general_decoding(
    seg: Segment, verify: bool, flips: int, data: st.DataObject
) -> None:
    """Valid or damaged, a packet decodes to the same segment, or fails with
    the same reason at the same offset, on both paths."""
    pkt = bytearray(encode_packet(seg))
    for _ in range(flips):
        i = data.draw(st.integers(0, len(pkt) - 1))
        pkt[i] ^= data.draw(st.integers(1, 255))
    raw = bytes(pkt)
    try:
        want: Segment | tuple[str, int] = ip._decode_any(raw, verify)
    except ParseError as exc:
        want = (exc.reason, exc.offset)
    try:
        got: Segment | tuple[str, int] = decode_packet(raw, verify_checksum=verify)
    except ParseError as exc:
        got = (exc.reason, exc.offset)
    assert got == want
    if not flips:
        assert got == seg
        assert ip._decode_v4(raw, verify) == seg  # taken by the fast path


@pytest.mark.parametrize("ts", [None, (7, 9)])
def test_v4_fast_decode_every_total_length(ts: tuple[int, int] | None) -> None:
    """The IPv4 total length rewritten to every value around the headers and
    the buffer (the header checksum refilled): both paths agree each time."""
    opts = NO_OPTIONS if ts is None else TcpOptions(timestamps=ts)
    seg = Segment("198.18.0.2", "198.18.0.1", 1, 2, 3, 4, 0x18, 5, b"abcde", opts)
    good = encode_packet(seg)
    for total in range(len(good) + 3):
        pkt = bytearray(good + b"\0\0")
        pkt[2:4] = total.to_bytes(2, "big")
        pkt[10:12] = b"\0\0"
        pkt[10:12] = checksum(bytes(pkt[:20])).to_bytes(2, "big")
        for verify in (True, False):
            outcomes = []
            for decode in (ip._decode_any, lambda b, v: decode_packet(b, verify_checksum=v)):
                try:
                    outcomes.append(decode(bytes(pkt), verify))
                except ParseError as exc:
                    outcomes.append((exc.reason, exc.offset))
            assert outcomes[0] == outcomes[1], (total, verify)
