"""The live commands as a user meets them (issue 12, items 1-5): TIME-WAIT
held after the application finished, `connect` never hanging, connections
reset before accept reported, options checked, `lab down` noticed, and the
summary line by direction and phase of the release."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from finwait.live.apps import pattern, serve_script
from finwait.live.driver import IN, OUT
from finwait.live.lab import Lab, lab_down
from finwait.live.streams import StreamReader, StreamWriter, start_server
from finwait.wire.segment import ACK, FIN, RST, Segment

from .harness import MSL, run, stack_on, until
from .peers import in_thread, kernel_listener, kernel_socket, recv_all

pytestmark = pytest.mark.live

FINWAIT = [sys.executable, "-c", "from finwait.cli import main; main()"]


def _finwait(lab: Lab, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*FINWAIT, *args, "--netns", lab.name, "--tun", lab.cfg.tun],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _connect_retrying(lab: Lab, port: int) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        s = kernel_socket(lab)
        s.settimeout(10)
        try:
            s.connect((lab.cfg.finwait_v4, port))
            return s
        except ConnectionRefusedError:  # not listening yet: finwait answers RST
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _reading_server(lab: Lab, port: int, reply: bytes = b"") -> threading.Thread:
    """A kernel server for one connection: read to EOF, send ``reply``, close."""
    srv = kernel_listener(lab, port)

    def serve() -> None:
        with srv:
            c, _ = srv.accept()
            with c:
                recv_all(c)
                c.sendall(reply)

    t = threading.Thread(target=serve, name="kernel-peer-reading-server")
    t.start()
    return t


# -- 1. TIME-WAIT is held after the application finished ---------------------------


def test_stack_holds_time_wait_and_answers_the_retransmitted_fin(lab: Lab) -> None:
    """The final ACK is lost once; the application has finished (the body of
    ``Stack.open`` returned) when the kernel retransmits its FIN, and the
    stack, holding TIME-WAIT, answers it; the stack ends 2 MSL after
    entering TIME-WAIT, not before."""
    fin_in: list[float] = []
    acks_of_fin: list[float] = []
    rst_in: list[Segment] = []
    dropped: list[Segment] = []

    def hook(direction: str, seg: Segment) -> bool:
        if direction == IN and seg.flags & FIN:
            fin_in.append(time.monotonic())
        if direction == IN and seg.flags & RST:
            rst_in.append(seg)
        if direction == OUT and seg.flags == ACK and not seg.payload and fin_in:
            acks_of_fin.append(time.monotonic())
            if not dropped:
                dropped.append(seg)
                return True  # lose the final ACK, once
        return False

    def kernel() -> bytes:
        s = kernel_socket(lab)
        s.settimeout(10)
        s.connect((lab.cfg.finwait_v4, 9010))
        got = recv_all(s)  # finwait closes first
        s.close()  # then the kernel: its FIN, whose ACK finwait loses
        return got

    times: dict[str, float] = {}

    async def main() -> None:
        async def handler(r: StreamReader, w: StreamWriter) -> None:
            w.write(pattern(49))
            w.write_eof()
            await r.read()
            await w.wait_closed()
            times["time-wait"] = time.monotonic()

        async with stack_on(lab, drop=hook) as stack:
            await start_server(handler, 9010, stack=stack)
            assert await in_thread(kernel) == pattern(49)
            await until(lambda: "time-wait" in times, what="TIME-WAIT")
            times["app done"] = time.monotonic()
        times["stack closed"] = time.monotonic()

    run(main)
    assert dropped, "the final ACK was never sent"
    assert len(fin_in) >= 2, "the kernel never retransmitted its FIN"
    answered = [t for t in acks_of_fin if t > times["app done"]]
    assert answered, "the retransmitted FIN got no answer after the application finished"
    assert not rst_in, "the kernel reset: its FIN was not answered"
    assert times["stack closed"] - times["time-wait"] >= 2 * MSL - 0.05


def test_connect_holds_time_wait_for_2_msl_unless_no_linger(lab: Lab) -> None:
    for no_linger in (False, True):
        peer = _reading_server(lab, 9011, pattern(30))
        args = ["connect", lab.cfg.kernel_v4, "9011", "--send-bytes", "100", "--msl", "1"]
        t0 = time.monotonic()
        proc = _finwait(lab, *args, *(["--no-linger"] if no_linger else []))
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
        peer.join(timeout=10)
        assert proc.returncode == 0, err
        assert "final state TIME-WAIT" in out
        if no_linger:
            assert "--no-linger: dropping 1 connection in TIME-WAIT" in err
            assert "holding" not in err
        else:
            assert "holding 1 connection in TIME-WAIT" in err and "Ctrl-C to drop it" in err
            assert elapsed >= 2.0, f"exited after {elapsed:.2f} s, before 2 MSL"
    assert elapsed < 2.0 + 3.0  # --no-linger does not wait (interpreter start aside)


# -- 2. connect never hangs ---------------------------------------------------------


def test_connect_close_first_does_not_wait_for_the_server(lab: Lab) -> None:
    """Against a server that reads the request to EOF before answering (an
    HTTP/1.0 server does), "close first" sends its FIN at once."""
    peer = _reading_server(lab, 9012, b"HTTP/1.0 200 OK\r\n\r\n")
    proc = _finwait(lab, "connect", lab.cfg.kernel_v4, "9012", "--send-bytes", "20",
                    "--msl", "0.1", "--json")  # fmt: skip
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    peer.join(timeout=10)
    assert proc.returncode == 0, err
    conn = json.loads(out)["connections"][0]
    assert conn["bytes_received"] == 19 and conn["final_state"] == "TIME-WAIT"
    assert conn["phases"]["received_after_our_fin"] == 19


def test_connect_gives_up_on_an_idle_peer_with_a_clear_message(lab: Lab) -> None:
    srv = kernel_listener(lab, 9013)
    held: list[socket.socket] = []

    def accept() -> None:
        c, _ = srv.accept()
        held.append(c)  # never reads, never closes

    t = threading.Thread(target=accept, name="kernel-peer-idle")
    t.start()
    try:
        proc = _finwait(lab, "connect", lab.cfg.kernel_v4, "9013", "--idle-timeout", "1",
                        "--msl", "0.1")  # fmt: skip
        out, err = proc.communicate(timeout=20)
    finally:
        t.join(timeout=10)
        for c in held:
            c.close()
        srv.close()
    assert proc.returncode == 1, (out, err)
    assert "nothing for 1 s (--idle-timeout)" in out
    assert "Traceback" not in err


def test_connect_timeout_says_what_timed_out(lab: Lab) -> None:
    # 198.18.0.9 is routed into the TUN's namespace, where nobody has it.
    proc = _finwait(lab, "connect", "198.18.0.9", "80", "--timeout", "1")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "Error: no answer from 198.18.0.9:80 within 1 s" in err, err
    assert "Traceback" not in err


# -- 3. serve counts a connection reset before accept ------------------------------


def _connect_send_reset(lab: Lab, port: int, n: int) -> None:
    s = _connect_retrying(lab, port)
    s.sendall(pattern(n))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST at once


def test_serve_counts_connections_reset_at_once(lab: Lab) -> None:
    proc = _finwait(lab, "serve", "9014", "--count", "4", "--msl", "0.1")
    try:
        for _ in range(4):
            _connect_send_reset(lab, 9014, 100)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert all("reset" in line for line in lines), out


def test_connection_reset_in_the_accept_queue_reaches_the_handler(lab: Lab) -> None:
    """Deterministic: the driver stops reading after the SYN,ACK, so the
    kernel's ACK, data and RST arrive in one batch: the connection is
    established and reset before the server could accept it."""
    outcomes = []

    async def handler(r: StreamReader, w: StreamWriter) -> None:
        outcomes.append(await serve_script(r, w, idle_timeout=5))

    async def main() -> None:
        async with stack_on(lab) as stack:
            driver = stack.driver
            read_some = driver._read_some
            paused = threading.Event()

            def observe(direction: str, seg: Segment, now: float) -> None:
                if direction == OUT and seg.flags & 0x12 == 0x12:  # our SYN,ACK
                    paused.set()
                    driver.loop.remove_reader(driver.fd)

            def gated() -> None:
                if not paused.is_set():
                    read_some()

            driver._read_some = gated  # type: ignore[method-assign]
            driver.observers.append(observe)
            server = await start_server(handler, 9015, stack=stack)
            await in_thread(_connect_send_reset, lab, 9015, 100)
            paused.clear()
            driver.loop.add_reader(driver.fd, driver._on_readable)
            driver.pump()
            await until(lambda: bool(outcomes), what="the handler's outcome")
            assert server.reset_before_accept == 1
            (o,) = outcomes
            assert o.reset_before_accept and o.final_state == "CLOSED"
            assert o.error is not None and "reset" in o.error
            assert "reset before accept" in o.summary()

    run(main)


# -- 4. options checked, lab down noticed -------------------------------------------


def test_serve_notices_lab_down(lab: Lab) -> None:
    proc = _finwait(lab, "serve", "9017", "--count", "2")
    try:
        _connect_retrying(lab, 9017).close()  # serve is listening
        lab_down(lab.cfg)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, (out, err)
    assert "is gone (finwait lab down?)" in err, err
    assert "Traceback" not in err


# -- 5. the summary by direction and phase ----------------------------------------------


def test_summary_shows_the_bytes_sent_during_the_half_close(lab: Lab) -> None:
    srv = kernel_listener(lab, 9018)

    def kernel() -> bytes:
        with srv:
            c, _ = srv.accept()
            with c:
                c.sendall(pattern(40))
                c.shutdown(socket.SHUT_WR)  # the kernel closes first
                return recv_all(c)

    t_result: list[bytes] = []
    t = threading.Thread(target=lambda: t_result.append(kernel()), name="kernel-peer-half")
    t.start()
    proc = _finwait(lab, "connect", lab.cfg.kernel_v4, "9018", "--close", "after-eof",
                    "--half-close-bytes", "100", "--msl", "0.1")  # fmt: skip
    out, err = proc.communicate(timeout=20)
    t.join(timeout=10)
    assert proc.returncode == 0, err
    assert t_result == [pattern(100)]
    assert "sent 100 B, received 40 B" in out
    assert "sent 0 B before their FIN and 100 B after it" in out, out
    assert "final state LAST-ACK" in out or "final state CLOSED" in out


def test_seed_summary_line(lab: Lab, tmp_path: Path) -> None:
    proc = _finwait(lab, "serve", "9019", "--expect-bytes", "247", "--reply-bytes", "49",
                    "--msl", "0.1")  # fmt: skip
    try:
        s = _connect_retrying(lab, 9019)
        s.sendall(pattern(247))
        assert recv_all(s) == pattern(49)
        s.sendall(pattern(10, 247))
        s.close()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "sent 49 B, received 257 B; received 247 B before our FIN and 10 B after it" in out
    assert "final state TIME-WAIT" in out
    # docs/live.md shows this line (the kernel's port normalised)
    docs = (Path(__file__).parents[2] / "docs" / "live.md").read_text()
    sample = next(line for line in docs.splitlines() if line.startswith("198.18.0.1:49934: sent"))
    assert re.sub(r"^198\.18\.0\.1:\d+", "198.18.0.1:49934", out.strip()) == sample


def test_the_summary_does_not_count_bytes_read_late_as_after_our_fin(lab: Lab) -> None:
    """The peer sends everything before our FIN; we read it only after
    sending our FIN: all of it is 'before our FIN'."""
    got: list[bytes] = []

    async def main() -> None:
        async def handler(r: StreamReader, w: StreamWriter) -> None:
            # All 79 bytes are here (sent before our FIN), none read yet.
            await until(lambda: w.connection.readable >= 79, what="the kernel's data")
            w.write_eof()  # our FIN, then we read
            outcome = await serve_script(r, w, idle_timeout=5)
            got.append(json.dumps(outcome.to_json(trace=False)["phases"]).encode())
            got.append(outcome.summary().encode())

        async with stack_on(lab) as stack:
            await start_server(handler, 9020, stack=stack)

            def kernel() -> None:
                s = kernel_socket(lab)
                s.settimeout(10)
                s.connect((lab.cfg.finwait_v4, 9020))
                s.sendall(pattern(79))
                recv_all(s)  # until our FIN
                s.close()

            await in_thread(kernel)
            await until(lambda: len(got) == 2, what="the outcome")

    run(main)
    phases = json.loads(got[0])
    assert phases["received_before_our_fin"] + phases["received_after_our_fin"] == 79
    assert phases["received_after_our_fin"] == 0, phases
