"""The internet checksum against RFC 1071's worked example and a word-by-word
reference implementation."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from finwait.wire.checksum import (
    checksum,
    fold,
    partial_sum,
    pseudo_header_v4,
    pseudo_header_v6,
)


def reference_checksum(data: bytes) -> int:
    """RFC 1071 §4.1's loop: 16-bit words, end-around carry, complement."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_rfc1071_example() -> None:
    # RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (after carries).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert fold(partial_sum(data)) == 0xDDF2
    assert checksum(data) == 0x220D


def test_odd_length_is_padded_with_zero() -> None:
    assert checksum(b"\x01") == 0xFFFF ^ 0x0100
    assert checksum(b"\x12\x34\x56") == reference_checksum(b"\x12\x34\x56\x00")


def test_two_zeros_of_ones_complement() -> None:
    # All-zero data sums to +0: checksum 0xFFFF.  Words summing to 0xFFFF
    # are negative zero: checksum 0.
    assert checksum(b"\x00" * 6) == 0xFFFF
    assert checksum(b"\xff\xff") == 0
    assert checksum(b"\xff\x00\x00\xff") == 0
    assert checksum(b"") == 0xFFFF


def test_filled_in_checksum_verifies_to_zero() -> None:
    data = bytearray(bytes.fromhex("4500003c1c4640004006") + b"\x00\x00" + bytes(8))
    data[10:12] = checksum(data).to_bytes(2, "big")
    assert checksum(data) == 0
    data[3] ^= 1
    assert checksum(data) != 0


@given(st.binary(max_size=2000), st.integers(0, 1 << 40))
def test_matches_reference(data: bytes, initial: int) -> None:
    init_bytes = initial.to_bytes(6, "big")
    assert checksum(data, partial_sum(init_bytes)) == reference_checksum(init_bytes + data)
    assert checksum(memoryview(data)) == reference_checksum(data)


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4), st.integers(0, 0xFFFF))
def test_pseudo_header_v4(src: bytes, dst: bytes, length: int) -> None:
    pseudo = src + dst + bytes([0, 6]) + length.to_bytes(2, "big")
    body = b"\xab\xcd\xef"
    assert checksum(body, pseudo_header_v4(src, dst, length)) == reference_checksum(pseudo + body)


@given(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
    st.integers(0, 0xFFFFFFFF),
)
def test_pseudo_header_v6(src: bytes, dst: bytes, length: int) -> None:
    # RFC 8200 §8.1: src, dst, 32-bit length, 3 zero bytes, next header.
    pseudo = src + dst + length.to_bytes(4, "big") + b"\x00\x00\x00\x06"
    body = b"\x01\x02\x03\x04\x05"
    assert checksum(body, pseudo_header_v6(src, dst, length)) == reference_checksum(pseudo + body)
