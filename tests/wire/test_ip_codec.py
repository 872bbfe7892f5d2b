"""IPv4/IPv6 packets: header fields we emit, what decode_packet rejects and
with which reason, the IPv6 extension-header walk."""

from __future__ import annotations

import struct

import pytest

from finwait.wire.checksum import checksum
from finwait.wire.errors import ParseError
from finwait.wire.ip import IPv4Header, IPv6Header, decode_ip_header, decode_packet, encode_packet
from finwait.wire.segment import ACK, FIN, Segment, TcpOptions

SEG4 = Segment("198.18.0.1", "198.18.0.2", 9000, 80, 1000, 2000, ACK, 1024, b"hello")
SEG6 = SEG4._replace(src="2001:db8::1", dst="2001:db8::2")


def _reason(data: bytes, **kw: bool) -> tuple[str, int]:
    with pytest.raises(ParseError) as err:
        decode_packet(data, **kw)
    return err.value.reason, err.value.offset


def _refill_ip_checksum(pkt: bytearray) -> bytes:
    ihl = (pkt[0] & 15) * 4
    pkt[10:12] = b"\x00\x00"
    pkt[10:12] = checksum(pkt[:ihl]).to_bytes(2, "big")
    return bytes(pkt)


def test_ipv4_header_fields() -> None:
    pkt = encode_packet(SEG4, ttl=33, ident=0x1234)
    assert pkt[0] == 0x45
    assert struct.unpack("!H", pkt[2:4])[0] == len(pkt) == 20 + 20 + 5
    assert struct.unpack("!HH", pkt[4:8]) == (0x1234, 0x4000)  # ident, DF
    assert (pkt[8], pkt[9]) == (33, 6)
    assert checksum(pkt[:20]) == 0
    assert pkt[12:20] == bytes([198, 18, 0, 1, 198, 18, 0, 2])
    assert decode_packet(pkt) == SEG4


def test_ipv6_header_fields() -> None:
    pkt = encode_packet(SEG6, ttl=7)
    assert pkt[0] >> 4 == 6
    assert struct.unpack("!H", pkt[4:6])[0] == 25
    assert (pkt[6], pkt[7]) == (6, 7)
    assert decode_packet(pkt) == SEG6


def test_ipv6_text_is_compressed() -> None:
    seg = SEG6._replace(src="2001:0db8:0000:0000:0000:0000:0000:0001")
    assert decode_packet(encode_packet(seg)).src == "2001:db8::1"


def test_ipv4_options_are_skipped() -> None:
    pkt = bytearray(encode_packet(SEG4))
    pkt[20:20] = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    pkt[0] = 0x46
    pkt[2:4] = (len(pkt)).to_bytes(2, "big")
    assert decode_packet(_refill_ip_checksum(pkt)) == SEG4


def test_trailing_link_padding_ignored() -> None:
    assert decode_packet(encode_packet(SEG4) + bytes(6)) == SEG4
    assert decode_packet(encode_packet(SEG6) + bytes(6)) == SEG6


def test_ipv4_errors() -> None:
    good = encode_packet(SEG4)
    assert _reason(b"") == ("truncated ip header", 0)
    assert _reason(good[:19]) == ("truncated ip header", 0)
    assert _reason(good[:-1]) == ("truncated ip packet", 2)
    assert _reason(b"\x75" + good[1:]) == ("bad ip version", 0)

    bad_ihl = bytearray(good)
    bad_ihl[0] = 0x44
    assert _reason(_refill_ip_checksum(bad_ihl)) == ("bad ip header length", 0)

    short_total = bytearray(good)
    short_total[2:4] = (19).to_bytes(2, "big")
    assert _reason(_refill_ip_checksum(short_total)) == ("bad ip total length", 2)

    corrupt = bytearray(good)
    corrupt[8] ^= 0xFF  # TTL, header checksum not refreshed
    assert _reason(bytes(corrupt)) == ("bad ip checksum", 10)
    assert decode_packet(bytes(corrupt), verify_checksum=False) == SEG4

    udp = bytearray(good)
    udp[9] = 17
    assert _reason(_refill_ip_checksum(udp)) == ("not tcp", 9)

    bad_tcp = bytearray(good)
    bad_tcp[-1] ^= 1
    assert _reason(bytes(bad_tcp)) == ("bad checksum", 36)


@pytest.mark.parametrize("frag", [0x2000, 0x0001, 0x6000, 0x0100])
def test_ipv4_fragments_rejected(frag: int) -> None:
    pkt = bytearray(encode_packet(SEG4))
    pkt[6:8] = frag.to_bytes(2, "big")
    assert _reason(_refill_ip_checksum(pkt)) == ("fragment", 6)


def _v6_with_ext(exts: list[tuple[int, bytes]], upper_nh: int = 6) -> bytes:
    """SEG6's packet with extension headers [(type, body)] inserted; each body
    already carries its length field as bytes 1.. (byte 0 is next header)."""
    pkt = encode_packet(SEG6)
    tcp = pkt[40:]
    chain = [nh for nh, _ in exts] + [upper_nh]
    ext_bytes = b"".join(bytes([chain[i + 1]]) + body for i, (_, body) in enumerate(exts))
    payload = ext_bytes + tcp
    hdr = bytearray(pkt[:40])
    hdr[4:6] = len(payload).to_bytes(2, "big")
    hdr[6] = chain[0]
    return bytes(hdr) + payload


OPTS_8 = b"\x00" + b"\x01\x04\x00\x00\x00\x00"  # hdr ext len 0, PadN of 4


def test_ipv6_extension_headers_walked() -> None:
    pkt = _v6_with_ext([(0, OPTS_8), (60, OPTS_8)])
    assert decode_packet(pkt) == SEG6
    hdr = decode_ip_header(pkt)
    assert isinstance(hdr, IPv6Header)
    assert (hdr.protocol, hdr.payload_offset) == (6, 56)


def test_ipv6_ah_length_in_four_byte_units() -> None:
    ah = b"\x04" + bytes(22)  # payload len 4 -> (4 + 2) * 4 = 24 bytes
    assert decode_packet(_v6_with_ext([(51, ah)])) == SEG6


def test_ipv6_fragment_header_rejected() -> None:
    frag = b"\x00\x00\x01\x00\x00\x00\x01"
    assert _reason(_v6_with_ext([(44, frag)])) == ("fragment", 40)


def test_ipv6_no_next_header_and_other_protocols() -> None:
    assert _reason(_v6_with_ext([(60, OPTS_8)], upper_nh=59)) == ("not tcp", 48)
    assert _reason(_v6_with_ext([], upper_nh=17)) == ("not tcp", 40)


def test_ipv6_hop_by_hop_must_come_first() -> None:
    assert _reason(_v6_with_ext([(60, OPTS_8), (0, OPTS_8)])) == ("bad extension header", 48)


def test_ipv6_truncated_extension_header() -> None:
    long_ext = b"\x05" + bytes(6)  # claims 48 bytes
    pkt = _v6_with_ext([(60, long_ext)])
    # Shrink the payload length so the extension header runs past it.
    cut = bytearray(pkt[:48])
    cut[4:6] = (8).to_bytes(2, "big")
    assert _reason(bytes(cut)) == ("truncated extension header", 40)
    assert _reason(bytes(cut[:44])) == ("truncated ip packet", 4)


def test_ipv6_routing_header_final_destination() -> None:
    # Type 0 routing header, 1 segment left, final destination 2001:db8::99:
    # the TCP checksum must use it (RFC 8200 §8.1) and so must Segment.dst.
    final = SEG6._replace(dst="2001:db8::99")
    tcp = encode_packet(final)[40:]
    rh = bytes([2, 0, 1]) + bytes(4) + bytes.fromhex("20010db8000000000000000000000099")
    hdr = bytearray(encode_packet(SEG6)[:40])
    hdr[4:6] = (24 + len(tcp)).to_bytes(2, "big")
    hdr[6] = 43
    pkt = bytes(hdr) + bytes([6]) + rh + tcp
    assert decode_packet(pkt) == final


def test_decode_ip_header_for_any_protocol() -> None:
    udp = bytearray(encode_packet(SEG4, ident=9))
    udp[9] = 17
    udp[6:8] = b"\x20\x00"
    hdr = decode_ip_header(_refill_ip_checksum(udp))
    assert isinstance(hdr, IPv4Header)
    assert (hdr.protocol, hdr.ident, hdr.more_fragments, hdr.dont_fragment) == (17, 9, True, False)
    assert (hdr.payload_offset, hdr.payload_end, hdr.src) == (20, 45, "198.18.0.1")


def test_encode_packet_limits() -> None:
    with pytest.raises(ValueError, match="exceeds 65535"):
        encode_packet(SEG4._replace(payload=bytes(65535 - 40 + 1)))
    assert len(encode_packet(SEG4._replace(payload=bytes(65535 - 40)))) == 65535
    for ttl in (256, -1):
        for seg in (SEG4, SEG6):
            with pytest.raises(ValueError):
                encode_packet(seg, ttl=ttl)
    with pytest.raises(ValueError):
        encode_packet(SEG4, ident=0x10000)


def test_seed_release_roundtrip_both_families() -> None:
    for src, dst in (("119.75.218.70", "192.168.1.100"), ("2001:db8::b", "2001:db8::a")):
        seg = Segment(
            src, dst, 80, 51000, 50, 248, FIN | ACK, 512, b"", TcpOptions(timestamps=(1, 2))
        )
        assert decode_packet(encode_packet(seg)) == seg
