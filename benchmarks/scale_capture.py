"""Derive benchmark captures from a mixed kernel capture (gen_mixed_capture.py).

``--copies N``: the capture N times over, copy k with both endpoints moved to
198.18.<k>.x (so every copy's connections are distinct 4-tuples) and its
timestamps shifted past the previous copy: 10 copies of the 500 k-packet
capture make the 5 M-packet one.

``--vxlan``: every packet wrapped in Ethernet/IPv4/UDP/VXLAN (RFC 7348), the
inner frame unchanged: the decapsulation path's figure.

    python benchmarks/scale_capture.py /tmp/mixed.pcap /tmp/mixed5m.pcap --copies 10
    python benchmarks/scale_capture.py /tmp/mixed.pcap /tmp/vxlan.pcap --vxlan

Only Ethernet pcap files with IPv4 on 198.18.0.0/15 (what the generator
writes) are accepted.
"""

from __future__ import annotations

import argparse
import struct

import numpy as np

from finwait.capture.reader import iter_batches


def _records(path: str) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """File header, the whole file as bytes, record offsets and lengths."""
    data = open(path, "rb").read()  # noqa: SIM115 - read once, whole
    if struct.unpack("<I", data[:4])[0] != 0xA1B2C3D4 or struct.unpack("<I", data[20:24])[0] != 1:
        raise SystemExit(f"{path}: not a little-endian microsecond Ethernet pcap")
    offs, caps = [], []
    for b in iter_batches(path):
        offs.append(b.data_off - 16 + b.file_offset)
        caps.append(b.caplen)
    return (
        data[:24],
        np.frombuffer(data, dtype=np.uint8),
        np.concatenate(offs),
        np.concatenate(caps),
    )


def copies(src: str, dst: str, n: int) -> None:
    head, buf, off, cap = _records(src)
    first = int.from_bytes(buf[off[0] : off[0] + 4].tobytes(), "little")
    last = int.from_bytes(buf[off[-1] : off[-1] + 4].tobytes(), "little")
    span = last - first + 1
    ends = off + 16 + cap
    if not np.array_equal(off[1:], ends[:-1]):
        raise SystemExit(f"{src}: records are not back to back")
    body = buf[int(off[0]) : int(ends[-1])]  # every record, as in the file
    rec_off = off - off[0]
    sec = rec_off  # ts_sec, little-endian u32
    ip = rec_off + 16 + 14  # IPv4 header after Ethernet
    with open(dst, "wb") as out:
        out.write(head)
        for k in range(n):
            b = body.copy()
            t = (
                b[sec].astype(np.int64)
                | b[sec + 1].astype(np.int64) << 8
                | b[sec + 2].astype(np.int64) << 16
                | b[sec + 3].astype(np.int64) << 24
            ) + k * span
            for j in range(4):
                b[sec + j] = (t >> (8 * j)) & 0xFF
            # 198.18.X.y: X is the third byte of source and destination.
            b[ip + 14] = (b[ip + 14].astype(np.int64) + k) & 0xFF
            b[ip + 18] = (b[ip + 18].astype(np.int64) + k) & 0xFF
            out.write(b.tobytes())


def vxlan(src: str, dst: str) -> None:
    head, buf, off, cap = _records(src)
    outer = (
        b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"  # Ethernet
        + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, 17, 0, bytes([198, 19, 0, 1]),
                      bytes([198, 19, 0, 2]))  # IPv4, length filled per packet
        + struct.pack("!HHHH", 49152, 4789, 0, 0)  # UDP
        + b"\x08\x00\x00\x00\x00\x00\x64\x00"  # VXLAN, VNI 100
    )  # fmt: skip
    with open(dst, "wb") as out:
        out.write(head)
        data = buf.tobytes()
        for o, c in zip(off.tolist(), cap.tolist(), strict=True):
            rec = data[o : o + 16 + c]
            sec, usec, _, orig = struct.unpack("<IIII", rec[:16])
            inner = rec[16:]
            hdr = bytearray(outer)
            struct.pack_into("!H", hdr, 16, 20 + 8 + 8 + orig)
            struct.pack_into("!H", hdr, 38, 8 + 8 + orig)
            extra = len(hdr)
            out.write(struct.pack("<IIII", sec, usec, c + extra, orig + extra) + bytes(hdr) + inner)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("src")
    ap.add_argument("dst")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--copies", type=int)
    g.add_argument("--vxlan", action="store_true")
    args = ap.parse_args()
    if args.vxlan:
        vxlan(args.src, args.dst)
    else:
        copies(args.src, args.dst, args.copies)


if __name__ == "__main__":
    main()
