"""Config.send_size (TSO): the engine builds data segments longer than the
SMSS, each a multiple of it, for a device that cuts them itself; the stream
still arrives intact."""

from __future__ import annotations

from finwait.host import Host
from finwait.tcp.config import Config
from finwait.tcp.connection import Connection

A, B = "198.18.0.2", "198.18.0.1"


def transfer(cfg: Config, data: bytes) -> tuple[Connection, list[int], bytes]:
    """A sends ``data`` to B over a lossless zero-delay wire; returns A's
    connection, the payload sizes A sent and what B read."""
    a, b = Host([A], cfg), Host([B], Config(recv_buffer=1 << 20))
    lst = b.listen(80)
    c = a.connect(B, 80, 0.0)
    s: Connection | None = None
    sizes: list[int] = []
    got = bytearray()
    sent, now = 0, 0.0
    for _ in range(100_000):
        segs_a, segs_b = a.take_segments(), b.take_segments()
        for seg in segs_a:
            sizes.append(len(seg.payload))
            b.receive(seg, now)
        for seg in segs_b:
            a.receive(seg, now)
        s = s or lst.accept()
        if s is not None:
            got += s.recv()
        if segs_a or segs_b:
            continue
        if sent < len(data) and c.state.can_send:
            sent += c.send(data[sent:], now)
        elif len(got) == len(data):
            break
        else:
            now += 0.05  # delayed ACKs
            a.on_timer(now)
            b.on_timer(now)
    return c, sizes, bytes(got)


def test_segments_up_to_send_size_in_multiples_of_smss() -> None:
    data = bytes(range(256)) * 2000  # 512,000 bytes
    cfg = Config(send_size=65_000, recv_buffer=1 << 20, send_buffer=1 << 20)
    c, sizes, got = transfer(cfg, data)
    assert got == data
    big = [n for n in sizes if n > c.smss]
    assert big, "no segment longer than the SMSS"
    assert max(sizes) <= 65_000 // c.smss * c.smss
    assert all(n % c.smss == 0 for n in big[:-1])


def test_without_send_size_no_segment_exceeds_the_smss() -> None:
    data = bytes(100_000)
    c, sizes, got = transfer(Config(), data)
    assert got == data and max(sizes) == c.smss
