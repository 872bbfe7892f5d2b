"""Write the seed inputs for the fuzz targets (valid packets and captures,
so the fuzzers start past the checksum and the file header).

    python fuzz/make_seeds.py            # -> fuzz/seeds/{wire,capture}/
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

from finwait.capture.writer import PcapWriter
from finwait.wire.ip import encode_packet
from finwait.wire.segment import ACK, FIN, PSH, RST, SYN, Segment, TcpOptions


def packets() -> list[bytes]:
    v4 = ("198.18.0.1", "198.18.0.2")
    v6 = ("2001:db8::1", "2001:db8::2")
    opts = TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(1, 0))
    sack = TcpOptions(timestamps=(5, 6), sack_blocks=((100, 200), (300, 400)))
    out = []
    for src, dst in (v4, v6):
        out += [
            encode_packet(Segment(src, dst, 40000, 80, 0, 0, SYN, 65535, b"", opts)),
            encode_packet(Segment(dst, src, 80, 40000, 0, 1, SYN | ACK, 65535, b"", opts)),
            encode_packet(Segment(src, dst, 40000, 80, 1, 1, PSH | ACK, 512, b"hello", sack)),
            encode_packet(Segment(dst, src, 80, 40000, 50, 248, FIN | ACK, 512)),
            encode_packet(Segment(src, dst, 40000, 80, 248, 0, RST, 0)),
        ]
    return out


def pcapng(pkts: list[bytes]) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 101, 0, 262144) + struct.pack("<HHB3x", 9, 1, 9) + b"\0" * 4)
    epbs = b"".join(
        block(6, struct.pack("<IIIII", 0, 0, i * 1000, len(p), len(p)) + p)
        for i, p in enumerate(pkts)
    )
    spb = block(3, struct.pack("<I", len(pkts[0])) + pkts[0])
    return shb + idb + epbs + spb


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "seeds"
    pkts = packets()
    wire = root / "wire"
    wire.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(pkts):
        (wire / f"packet{i}").write_bytes(b"\x01" + p)  # first byte: verify checksums
    cap = root / "capture"
    cap.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        for i, p in enumerate(pkts):
            w.write(p, i * 0.001)
    # First byte: chunk size (low nibble), decode (0x30) and analyze (0xF0) bits.
    for mode in (0x03, 0x33, 0xF3):
        (cap / f"raw-{mode:02x}.pcap").write_bytes(bytes([mode]) + buf.getvalue())
        (cap / f"raw-{mode:02x}.pcapng").write_bytes(bytes([mode]) + pcapng(pkts))


if __name__ == "__main__":
    main()
