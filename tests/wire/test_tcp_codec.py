"""TCP header and option encoding/decoding: known answers, Linux's option
layout, Linux's tolerance of bad options, header errors."""

from __future__ import annotations

import struct

import pytest

from finwait.wire.checksum import checksum, pseudo_header_v4
from finwait.wire.errors import ParseError
from finwait.wire.segment import ACK, FIN, NO_OPTIONS, PSH, SYN, Segment, TcpOptions
from finwait.wire.tcp import decode_options, decode_tcp, encode_options, encode_tcp

A, B = "192.168.1.100", "119.75.218.70"
# The seed's first release segment: B -> A, FIN+ACK (absolute numbers here).
FIN_B = Segment(B, A, 80, 51000, 1050, 2248, FIN | ACK, 512)


def test_seed_fin_known_answer() -> None:
    raw = encode_tcp(FIN_B)
    assert len(raw) == 20
    sport, dport, seq, ack, doff, flags, win, _csum, urg = struct.unpack("!HHIIBBHHH", raw)
    assert (sport, dport, seq, ack, win, urg) == (80, 51000, 1050, 2248, 512, 0)
    assert doff == 5 << 4
    assert flags == 0x11  # FIN, ACK
    pseudo = pseudo_header_v4(bytes([119, 75, 218, 70]), bytes([192, 168, 1, 100]), 20)
    assert checksum(raw, pseudo) == 0
    assert decode_tcp(raw, B, A) == FIN_B


def test_checksum_off_leaves_field_zero() -> None:
    raw = encode_tcp(FIN_B, checksum=False)
    assert raw[16:18] == b"\x00\x00"
    assert decode_tcp(raw, B, A, verify_checksum=False) == FIN_B
    with pytest.raises(ParseError) as err:
        decode_tcp(raw, B, A)
    assert (err.value.reason, err.value.offset) == ("bad checksum", 16)


def test_checksum_covers_pseudo_header_addresses() -> None:
    raw = encode_tcp(FIN_B)
    with pytest.raises(ParseError, match="bad checksum"):
        decode_tcp(raw, B, "192.168.1.101")


def test_memoryview_and_bytearray_input() -> None:
    seg = FIN_B._replace(payload=b"abc", flags=PSH | ACK)
    raw = encode_tcp(seg)
    assert decode_tcp(memoryview(raw), B, A) == seg
    assert decode_tcp(bytearray(raw), B, A) == seg


# -- option layout (Linux tcp_options_write) ---------------------------------


def test_syn_options_linux_layout() -> None:
    opts = TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(0x01020304, 0))
    assert encode_options(opts) == bytes.fromhex("020405b40402080a010203040000000001030307")


def test_timestamps_only_is_nop_nop_ts() -> None:
    assert encode_options(TcpOptions(timestamps=(5, 6))) == bytes.fromhex(
        "0101080a0000000500000006"
    )


def test_sack_permitted_without_timestamps() -> None:
    opts = TcpOptions(mss=1460, wscale=2, sack_permitted=True)
    assert encode_options(opts) == bytes.fromhex("020405b40101040201030302")


def test_sack_blocks_layout() -> None:
    opts = TcpOptions(timestamps=(1, 2), sack_blocks=((10, 20), (30, 40)))
    assert encode_options(opts) == bytes.fromhex(
        "0101080a0000000100000002010105120000000a000000140000001e00000028"
    )


def test_unknown_options_nop_padded() -> None:
    raw = encode_options(TcpOptions(unknown=((30, b"\x01\x02\x03"),)))
    assert raw == bytes.fromhex("1e05010203010101")
    assert decode_options(raw) == TcpOptions(unknown=((30, b"\x01\x02\x03"),))


def test_empty_options_encode_to_nothing() -> None:
    assert encode_options(TcpOptions()) == b""
    assert encode_tcp(FIN_B._replace(options=TcpOptions()))[12] == 5 << 4


@pytest.mark.parametrize(
    "opts",
    [
        TcpOptions(sack_blocks=((1, 2),) * 5),  # 4 + 40 bytes
        TcpOptions(unknown=((30, bytes(39)),)),
        TcpOptions(mss=70000),
        TcpOptions(wscale=256),
        TcpOptions(timestamps=(1 << 32, 0)),
        TcpOptions(unknown=((1, b""),)),  # NOP has no length byte
    ],
)
def test_unencodable_options_raise_value_error(opts: TcpOptions) -> None:
    with pytest.raises(ValueError):
        encode_options(opts)


def test_encode_rejects_out_of_range_fields() -> None:
    for bad in (FIN_B._replace(sport=65536), FIN_B._replace(seq=-1), FIN_B._replace(flags=0x100)):
        with pytest.raises(ValueError):
            encode_tcp(bad)
    with pytest.raises(ValueError):  # the timestamps-only fast path checks too
        encode_tcp(FIN_B._replace(options=TcpOptions(timestamps=(1 << 32, 0))))
    with pytest.raises(ValueError, match="mixed address families"):
        encode_tcp(FIN_B._replace(dst="2001:db8::1"))
    with pytest.raises(ValueError):
        encode_tcp(FIN_B._replace(dst="not an address"))


# -- option parsing: Linux tcp_parse_options behaviour ------------------------


def test_decode_full_syn_options() -> None:
    raw = bytes.fromhex("020405b40402080a010203040000000001030307")
    assert decode_options(raw) == TcpOptions(1460, 7, True, (0x01020304, 0))


def test_no_options_or_padding_only_is_the_shared_empty_value() -> None:
    assert decode_options(b"") is NO_OPTIONS
    assert decode_options(b"\x01\x01\x01\x00") is NO_OPTIONS


def test_eol_ends_the_list() -> None:
    # An MSS after EOL is padding, not an option.
    assert decode_options(bytes.fromhex("0103030700020405b4")) == TcpOptions(wscale=7)


def test_length_below_two_stops_parsing() -> None:
    raw = bytes.fromhex("010303021e01020405b4")
    assert decode_options(raw) == TcpOptions(wscale=2)


def test_length_past_the_end_stops_parsing() -> None:
    raw = bytes.fromhex("020405b4080affff")
    assert decode_options(raw) == TcpOptions(mss=1460)


def test_missing_length_byte_stops_parsing() -> None:
    assert decode_options(bytes.fromhex("0103030502")) == TcpOptions(wscale=5)


def test_known_kind_with_wrong_length_is_not_interpreted() -> None:
    # MSS with length 3, SACK with a half block: kept as unknown, parsing goes on.
    raw = bytes.fromhex("02030505060000ffff0402")
    assert decode_options(raw) == TcpOptions(
        sack_permitted=True, unknown=((2, b"\x05"), (5, b"\x00\x00\xff\xff"))
    )


def test_repeated_option_last_wins() -> None:
    assert decode_options(bytes.fromhex("02040218020405b4")) == TcpOptions(mss=1460)


def test_values_recorded_as_sent() -> None:
    # Window scale 15 exceeds RFC 7323's 14; clamping is the engine's job.
    assert decode_options(bytes.fromhex("0103030f")).wscale == 15


def test_sack_blocks_decode() -> None:
    raw = bytes.fromhex("010105120000000a000000140000001e00000028")
    assert decode_options(raw).sack_blocks == ((10, 20), (30, 40))


def test_unaligned_timestamps_take_the_general_path() -> None:
    seg = FIN_B._replace(options=TcpOptions(timestamps=(7, 8), unknown=((30, b""),)))
    raw = encode_tcp(seg)
    assert raw[20:22] == b"\x01\x01"
    assert decode_tcp(raw, B, A) == seg


# -- header errors ------------------------------------------------------------


def _with_offset(words: int, total: int = 20) -> bytes:
    raw = bytearray(encode_tcp(FIN_B, checksum=False) + bytes(total - 20))
    raw[12] = words << 4
    return bytes(raw)


@pytest.mark.parametrize("words", [0, 1, 4])
def test_data_offset_below_five(words: int) -> None:
    with pytest.raises(ParseError) as err:
        decode_tcp(_with_offset(words), B, A, verify_checksum=False)
    assert (err.value.reason, err.value.offset) == ("bad data offset", 12)


def test_data_offset_beyond_segment() -> None:
    with pytest.raises(ParseError) as err:
        decode_tcp(_with_offset(15, total=59), B, A, verify_checksum=False)
    assert (err.value.reason, err.value.offset) == ("data offset beyond segment", 12)
    # Exactly 60 bytes is fine: 40 bytes of zero options (EOL).
    assert decode_tcp(_with_offset(15, total=60), B, A, verify_checksum=False).options == (
        NO_OPTIONS
    )


@pytest.mark.parametrize("n", [0, 1, 19])
def test_truncated_header(n: int) -> None:
    with pytest.raises(ParseError) as err:
        decode_tcp(encode_tcp(FIN_B)[:n], B, A)
    assert err.value.reason == "truncated tcp header"


def test_reserved_bits_ignored() -> None:
    raw = bytearray(encode_tcp(FIN_B, checksum=False))
    raw[12] |= 0x0F  # reserved + AE
    assert decode_tcp(bytes(raw), B, A, verify_checksum=False).flags == FIN | ACK


def test_syn_with_payload_and_options_roundtrip() -> None:
    seg = Segment(
        "2001:db8::1", "2001:db8::2", 1, 2, 0xFFFFFFFF, 0, SYN, 65535, b"x" * 7,
        TcpOptions(mss=1440, wscale=14, sack_permitted=True), 0,
    )  # fmt: skip
    assert decode_tcp(encode_tcp(seg), seg.src, seg.dst) == seg


def test_compact_layout_when_alignment_does_not_fit() -> None:
    # 40 bytes as a peer may send them: MSS, TS without NOPs, 3 SACK blocks;
    # Linux's aligned layout would take 44.
    raw = bytes.fromhex("020405b4080a0000000100000002051a" + "00000001" * 6)
    opts = decode_options(raw)
    assert opts.timestamps == (1, 2) and len(opts.sack_blocks) == 3
    again = encode_options(opts)
    assert again == raw  # no aligning NOPs
    assert decode_options(again) == opts
