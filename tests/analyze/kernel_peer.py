"""Kernel TCP peers for the analyzer's live tests (stdlib only; run inside a
network namespace with ``ip netns exec``).

``server ADDR`` listens on every scenario port and plays the server side;
``client CADDR SADDR SERVER_NS FLAGDIR`` plays every client side in turn,
including raw-socket probes and a bare FIN injected into an established
connection.  Each scenario has its own port, so the test reads the expected
class per port.  Addresses are 198.18.0.0/15 only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

PORTS = {
    "client_first": 7001,
    "server_first": 7002,
    "three_way": 7003,
    "half_close": 7004,
    "rst_client": 7005,
    "rst_server": 7006,
    "refused": 7007,  # nobody listens
    "open": 7008,
    "bare_fin": 7009,
    "probe_open": 7010,
    "probe_closed": 7011,  # nobody listens
    "simultaneous": 7012,
    "reuse": 7013,
    "blind": 7014,
}
LINGER0 = struct.pack("ii", 1, 0)
SETTLE = 0.3  # longer than Linux's delayed ACK (40-200 ms): four segments


def recv_all(s: socket.socket) -> int:
    n = 0
    while chunk := s.recv(65536):
        n += len(chunk)
    return n


def recv_n(s: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        chunk = s.recv(n - got)
        if not chunk:
            return
        got += len(chunk)


def wait_flag(flagdir: str, name: str, timeout: float = 5.0) -> None:
    flag = os.path.join(flagdir, name)
    deadline = time.time() + timeout
    while not os.path.exists(flag) and time.time() < deadline:
        time.sleep(0.005)


# -- server ------------------------------------------------------------------


def serve(name: str, conn: socket.socket, flagdir: str) -> None:
    try:
        if name == "half_close":
            recv_all(conn)
            time.sleep(SETTLE)
            conn.sendall(b"h" * 3000)
            time.sleep(0.1)
            conn.close()
            return
        recv_n(conn, 100)
        conn.sendall(b"s" * 50)
        if name in ("client_first", "bare_fin", "blind"):
            recv_all(conn)
            time.sleep(SETTLE)
        elif name == "server_first" or name == "reuse":
            time.sleep(0.2)
        elif name == "three_way":
            recv_all(conn)  # close at once after EOF: FIN carries the ACK
        elif name == "rst_client":
            with contextlib.suppress(OSError):
                recv_all(conn)
        elif name == "rst_server":
            time.sleep(0.2)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        elif name == "open":
            time.sleep(60)
        elif name == "simultaneous":
            wait_flag(flagdir, "go")
            # Empty the token bucket the client put on our egress, so our FIN
            # waits in it while the client's FIN reaches us: the FINs cross.
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b"d" * 48, (conn.getpeername()[0], 9))
            u.close()
            conn.close()
            open(os.path.join(flagdir, "server-closed"), "w").close()
            return
        conn.close()
    except OSError:
        conn.close()


def server(addr: str, flagdir: str) -> None:
    threads = []
    for name, port in PORTS.items():
        if name in ("refused", "probe_closed"):
            continue
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((addr, port))
        ls.listen(8)

        def loop(ls: socket.socket = ls, name: str = name) -> None:
            while True:
                conn, _ = ls.accept()
                threading.Thread(target=serve, args=(name, conn, flagdir), daemon=True).start()

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        threads.append(t)
    print("ready", flush=True)
    time.sleep(120)


# -- raw packets -----------------------------------------------------------------


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def send_raw(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int) -> None:
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    hdr = hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.sendto(hdr, (dst, 0))
    s.close()


class Sniffer:
    """Watches the client's own segments (AF_PACKET) to learn SND.NXT and
    RCV.NXT for the injected FIN."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self.sock.settimeout(0.05)
        self.port = port
        self.nxt = 0
        self.rcv = 0

    def drain(self) -> None:
        while True:
            try:
                frame = self.sock.recv(65536)
            except TimeoutError:
                return
            ip = frame[14:]
            if ip[9] != 6:
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            tcp = ip[ihl:]
            sport, dport, seq, _ack = struct.unpack("!HHII", tcp[:12])
            doff = (tcp[12] >> 4) * 4
            flags = tcp[13]
            length = total - ihl - doff + (flags & 1) + ((flags >> 1) & 1)
            if dport == self.port:
                self.nxt = (seq + length) & 0xFFFFFFFF
            elif sport == self.port:
                self.rcv = (seq + length) & 0xFFFFFFFF


# -- client ----------------------------------------------------------------------


def exchange(saddr: str, port: int, bind: tuple[str, int] | None = None) -> socket.socket:
    s = socket.socket()
    if bind:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(bind)
    s.connect((saddr, port))
    s.sendall(b"c" * 100)
    recv_n(s, 50)
    return s


def client(caddr: str, saddr: str, server_ns: str, flagdir: str) -> None:
    P = PORTS
    s = exchange(saddr, P["client_first"])
    time.sleep(0.1)
    s.close()

    s = exchange(saddr, P["server_first"])
    recv_all(s)
    time.sleep(SETTLE)
    s.close()

    s = exchange(saddr, P["three_way"])
    time.sleep(0.1)
    s.close()

    s = socket.create_connection((saddr, P["half_close"]))
    s.sendall(b"c" * 100)
    s.shutdown(socket.SHUT_WR)
    recv_all(s)
    s.close()

    s = exchange(saddr, P["rst_client"])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    s.close()

    s = exchange(saddr, P["rst_server"])
    with contextlib.suppress(OSError):
        recv_all(s)
    s.close()

    s = socket.socket()
    with contextlib.suppress(ConnectionRefusedError):
        s.connect((saddr, P["refused"]))
    s.close()

    keep = exchange(saddr, P["open"])

    sn = Sniffer(P["bare_fin"])
    s = exchange(saddr, P["bare_fin"])
    time.sleep(0.2)
    sn.drain()
    # FIN without ACK at exactly SND.NXT: Linux drops it (tcp_rcv_state_process).
    send_raw(caddr, saddr, s.getsockname()[1], P["bare_fin"], sn.nxt, 0, 0x01)
    time.sleep(SETTLE)
    s.close()

    # Blind attacks on an established connection, forged from the client's
    # address: a SYN, an RST in the window but not at RCV.NXT, an RST far
    # outside the window.  Linux answers the first two with challenge ACKs
    # (RFC 5961) and the connection closes normally afterwards.
    sn = Sniffer(P["blind"])
    s = exchange(saddr, P["blind"])
    time.sleep(0.2)
    sn.drain()
    sport = s.getsockname()[1]
    send_raw(caddr, saddr, sport, P["blind"], (sn.nxt + 77777) & 0xFFFFFFFF, 0, 0x02)
    time.sleep(0.6)  # past Linux's per-socket challenge-ACK limit
    send_raw(caddr, saddr, sport, P["blind"], (sn.nxt + 1000) & 0xFFFFFFFF, 0, 0x04)
    time.sleep(0.6)
    send_raw(caddr, saddr, sport, P["blind"], (sn.nxt + (1 << 31)) & 0xFFFFFFFF, 0, 0x04)
    time.sleep(0.1)
    s.close()
    time.sleep(SETTLE)

    for i, (port, flags) in enumerate(
        (
            (P["probe_open"], 0x01),  # FIN
            (P["probe_open"], 0x00),  # NULL
            (P["probe_open"], 0x29),  # XMAS: FIN, PSH, URG
            (P["probe_closed"], 0x01),
            (P["probe_closed"], 0x00),
            (P["probe_closed"], 0x29),
        )
    ):
        send_raw(caddr, saddr, 41000 + i, port, 1000 + i, 0, flags)
        time.sleep(0.05)

    # Simultaneous close: a slow token bucket on the server's egress holds
    # its FIN while ours reaches it, so the two FINs cross on the wire.
    s = exchange(saddr, P["simultaneous"])
    time.sleep(0.1)
    tc = ["ip", "netns", "exec", server_ns, "tc", "qdisc"]
    subprocess.run(
        [
            *tc,
            "add",
            "dev",
            "fwv-s",
            "root",
            "tbf",
            "rate",
            "800bit",
            "burst",
            "100",
            "limit",
            "10000",
        ],
        check=True,
    )
    open(os.path.join(flagdir, "go"), "w").close()
    wait_flag(flagdir, "server-closed")
    time.sleep(0.05)
    s.shutdown(socket.SHUT_WR)
    recv_all(s)
    time.sleep(1.5)
    subprocess.run([*tc, "del", "dev", "fwv-s", "root"], check=True)
    s.close()

    # Port reuse: the same 4-tuple twice; the server closes first so the
    # TIME-WAIT is on its side and accepts the new SYN (tcp_timewait_state_process).
    for _ in range(2):
        s = exchange(saddr, P["reuse"], bind=(caddr, 45013))
        recv_all(s)
        time.sleep(SETTLE)
        s.close()
        time.sleep(0.2)
    print("done", flush=True)
    time.sleep(120)
    keep.close()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], sys.argv[3])
    else:
        client(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
