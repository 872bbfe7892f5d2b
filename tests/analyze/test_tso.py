"""A kernel-made capture with TCP segmentation offload on: Linux's BIG TCP
(gso_ipv4_max_size above 64 KiB on the veth) hands tcpdump segments of up to
150 kB whose IPv4 total length is 0, to be filled in by the device.  Every
packet must be analysed, with its length taken from the capture."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from finwait.analyze import analyze_file

from .netlab import can_run, lab, tcpdump

pytestmark = pytest.mark.live

SIZE = 4_000_000
GSO = 150_000
IFLA_GSO_MAX_SIZE = 41
IFLA_GSO_IPV4_MAX_SIZE = 63  # Linux 6.3+

SET_GSO = r"""
import socket, struct, sys
idx = socket.if_nametoindex(sys.argv[1])
size = int(sys.argv[2])
attrs = b"".join(struct.pack("=HHI", 8, t, size) for t in map(int, sys.argv[3:]))
body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, idx, 0, 0) + attrs
msg = struct.pack("=IHHII", 16 + len(body), 16, 1 | 4, 1, 0) + body  # RTM_NEWLINK, REQUEST|ACK
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
s.send(msg)
err = struct.unpack_from("=i", s.recv(4096), 16)[0]
sys.exit(1 if err else 0)
"""

SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7100))
s.listen()
print("ready", flush=True)
c, _ = s.accept()
n = 0
while d := c.recv(1 << 20):
    n += len(d)
c.close()
print(n, flush=True)
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], 7100))
c.sendall(b"x" * int(sys.argv[2]))
c.close()
"""


def _zero_length_packets(path: Path) -> int:
    """IPv4 packets with total length 0 in an Ethernet pcap, read by hand."""
    data = path.read_bytes()
    big = data[:4] == b"\xa1\xb2\xc3\xd4"
    e = ">" if big else "<"
    off, zero = 24, 0
    while off + 16 <= len(data):
        caplen = struct.unpack_from(e + "I", data, off + 8)[0]
        pkt = data[off + 16 : off + 16 + caplen]
        if pkt[12:14] == b"\x08\x00" and pkt[16:18] == b"\0\0":
            zero += 1
        off += 16 + caplen
    return zero


def test_big_tcp_capture_analysed_without_loss(tmp_path: Path) -> None:
    why = can_run()
    if why is not None:
        if os.environ.get("FINWAIT_LIVE") == "require":
            pytest.fail(f"live test required but cannot run: {why}")
        pytest.skip(why)
    out = tmp_path / "tso.pcap"
    with lab() as lb:
        for ns, dev in ((lb.client_ns, "fwv-c"), (lb.server_ns, "fwv-s")):
            r = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-c", SET_GSO, dev, str(GSO),
                 str(IFLA_GSO_MAX_SIZE), str(IFLA_GSO_IPV4_MAX_SIZE)], capture_output=True,
            )  # fmt: skip
            if r.returncode:
                pytest.skip("this kernel has no gso_ipv4_max_size (BIG TCP for IPv4, Linux 6.3)")
        srv = lb.run(lb.server_ns, sys.executable, "-c", SERVER, lb.saddr, stdout=subprocess.PIPE)
        try:
            assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
            with tcpdump(lb, out):
                cli = lb.run(lb.client_ns, sys.executable, "-c", CLIENT, lb.saddr, str(SIZE))
                assert cli.wait(30) == 0
                assert srv.stdout.readline().strip() == str(SIZE)
        finally:
            srv.kill()
            srv.wait()
    zero = _zero_length_packets(out)
    assert zero > 0, "the kernel made no segment with IPv4 total length 0"
    res = analyze_file(out)
    assert res.error is None and res.n == 1
    assert res.notes["ipv4_length_from_capture"] == zero
    assert res.tcp_packets == res.records_read  # nothing dropped
    rec = res.record(1)
    assert rec["bytes"] == {"client_to_server": SIZE, "server_to_client": 0}
    # The server closes as soon as it reads the end: its FIN may carry the
    # ACK of the client's (three-way) or follow a pure ACK (four-way).
    assert (rec["handshake"], rec["first_fin"]) == ("complete", "client")
    assert rec["close"] in ("four_way", "three_way")
    assert rec["client"]["addr"] == lb.caddr and rec["partial"] is False
    assert rec["conn_state"] == "SF"
    assert rec["anomalies"] == []
