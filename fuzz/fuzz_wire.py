"""atheris harness: the wire parser, ``finwait.wire.ip.decode_packet``.

Any byte string is an IP packet from the network.  The parser may only
answer with a ``Segment`` or raise ``ParseError`` (wire/errors.py); and a
packet it accepts must survive ``encode_packet`` -> ``decode_packet`` as the
same ``Segment`` (the engine re-encodes what it parsed when it writes
captures).  Run: see fuzz/README.md.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["finwait"]):
    from finwait.wire.errors import ParseError
    from finwait.wire.ip import decode_packet, encode_packet


def test_one_input(data: bytes) -> None:
    if not data:
        return
    verify = bool(data[0] & 1)
    packet = data[1:]
    try:
        seg = decode_packet(packet, verify_checksum=verify)
    except ParseError as exc:
        assert isinstance(exc.reason, str) and exc.reason, exc
        return
    again = decode_packet(encode_packet(seg))
    assert again == seg, (seg, again)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
