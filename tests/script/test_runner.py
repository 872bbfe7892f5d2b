"""The runner and the ``finwait script`` command: PASS/FAIL with the first
mismatching line, errors as one line, both targets."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from finwait.cli import main
from finwait.script import run_script

from .conftest import SCRIPTS

BASE = SCRIPTS / "close-remote-fin-then-close.pkt"


def _flip(tmp_path: Path, pattern: str, replacement: str) -> tuple[Path, int]:
    """A copy of BASE with one number changed on the first line matching
    ``pattern``; returns the copy and that line's number."""
    lines = BASE.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            lines[i] = re.sub(pattern, replacement, line)
            out = tmp_path / "flipped.pkt"
            out.write_text("".join(lines))
            return out, i + 1
    raise AssertionError(f"{pattern!r} not in {BASE}")


@pytest.mark.parametrize("target", ["engine", pytest.param("kernel", marks=pytest.mark.live)])
def test_flipped_number_fails_on_that_line(
    tmp_path: Path, target: str, request: pytest.FixtureRequest
) -> None:
    if target == "kernel":
        request.getfixturevalue("live")
    assert run_script(str(BASE), target).status == "PASS"
    # The FIN,ACK's ack field: 2 -> 3.
    flipped, line = _flip(tmp_path, r"> F\. 1:1\(0\) ack 2", "> F. 1:1(0) ack 3")
    out = run_script(str(flipped), target)
    assert out.status == "FAIL"
    assert out.line == line
    assert out.message == "ack differs"
    assert "ack 3" in out.expected and "ack 2" in out.got
    # The final RST's sequence number: 2 -> 1.
    flipped, line = _flip(tmp_path, r"> R 2:2\(0\)", "> R 1:1(0)")
    out = run_script(str(flipped), target)
    assert (out.status, out.line, out.message) == ("FAIL", line, "sequence number differs")


def test_engine_timing_is_checked(tmp_path: Path) -> None:
    flipped, line = _flip(tmp_path, r"^   \+0 > R 2:2\(0\)", "  +.2 > R 2:2(0)")
    out = run_script(str(flipped), "engine")
    assert (out.status, out.line) == ("FAIL", line)
    assert "early" in out.message


def test_cli_pass_fail_and_exit_status(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["script", str(BASE)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("PASS ")
    flipped, line = _flip(tmp_path, r"> F\. 1:1\(0\) ack 2", "> F. 1:1(0) ack 3")
    bad = runner.invoke(main, ["script", str(BASE), str(flipped)])
    assert bad.exit_code == 1
    assert f"FAIL {flipped}:{line} [engine]: ack differs" in bad.output
    assert "1 of 2 passed [engine]" in bad.output
    js = runner.invoke(main, ["script", "--json", str(flipped)])
    doc = json.loads(js.output.splitlines()[0])
    assert doc["status"] == "FAIL" and doc["line"] == line and doc["target"] == "engine"


def test_cli_malformed_script_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pkt"
    bad.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:10(3) win 1\n")
    res = CliRunner().invoke(main, ["script", str(bad)])
    assert res.exit_code == 1
    assert res.output == f"ERROR {bad}:2 [engine]: '0:10(3)': end - start is 10, not 3\n"
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_unsupported_call_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "call.pkt"
    bad.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 sendfile(3, 4, 0, 9) = 9\n")
    out = run_script(str(bad), "engine")
    assert (out.status, out.line) == ("ERROR", 2)
    assert "sendfile() is not supported" in out.message


def test_code_block_reported_as_skipped(tmp_path: Path) -> None:
    p = tmp_path / "code.pkt"
    p.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 %{ assert tcpi_rto > 0 }%\n")
    out = run_script(str(p), "engine")
    assert out.status == "PASS" and out.skipped == [2]
    assert "1 code block(s) skipped" in out.summary()


def test_pcap_written(tmp_path: Path) -> None:
    import dpkt

    pcap = tmp_path / "out.pcap"
    res = CliRunner().invoke(main, ["script", "--pcap", str(pcap), str(BASE)])
    assert res.exit_code == 0, res.output
    with pcap.open("rb") as f:
        records = list(dpkt.pcap.Reader(f))
    assert len(records) == 9  # 5 injected, 4 sent by the engine


def test_engine_follows_the_scripts_congestion_control_sysctl() -> None:
    """The kernel's algorithm, set by a script's shell command, is the one
    the engine runs for the sockets made after it; one it does not model is
    an error naming it, not a silent stand-in."""
    from finwait.script.engine import EngineTarget

    tgt = EngineTarget("x.pkt")
    assert tgt.base_config.congestion_control == "cubic-linux"
    tgt.run_command("./defaults.sh\nsysctl -q net.ipv4.tcp_congestion_control=reno", 3)
    assert tgt.base_config.congestion_control == "newreno-abc"
    tgt.run_command("echo cubic > /proc/sys/net/ipv4/tcp_congestion_control", 4)
    assert tgt.base_config.congestion_control == "cubic-linux"
    text = "`sysctl -q net.ipv4.tcp_congestion_control=bbr`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
    out = run_script("bbr.pkt", "engine", text=text)
    assert out.status == "ERROR" and "'bbr'" in out.message


@pytest.mark.parametrize(
    "command",
    [
        "tc qdisc replace dev tun0 root fq maxrate 1mbit",
        "tc qdisc add dev tun0 root pfifo",
        "tc qdisc add dev tun0 root netem loss 100%",
        "tc qdisc add dev tun0 root pfifo limit 0 extra",
    ],
)
def test_engine_refuses_a_device_queue_it_cannot_model(command: str) -> None:
    """A tc command other than the queue of limit 0, fq with its defaults and
    their removal changes what the kernel sends and when in ways the engine
    does not model: it reports the line instead of ignoring it."""
    text = f"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 `{command}`\n"
    out = run_script("q.pkt", "engine", text=text)
    assert out.status == "ERROR" and out.line == 2 and command in out.message


def test_engine_models_a_queue_that_takes_nothing() -> None:
    """``pfifo limit 0`` (also after a ``delete`` whose error is thrown
    away, as the upstream user-timeout-probe does it) makes the device take
    no packet; ``tc qdisc delete`` gives the default back (LX-18)."""
    from finwait.script.engine import EngineTarget

    tgt = EngineTarget("q.pkt")
    tgt.run_command("tc qdisc delete dev tun0 root 2>/dev/null ; "
                    "tc qdisc add dev tun0 root pfifo limit 0", 3)  # fmt: skip
    assert tgt.host.device_drops
    tgt.run_command("tc qdisc delete dev tun0 root", 4)
    assert not tgt.host.device_drops
    tgt.run_command("./defaults.sh\ntc qdisc replace dev tun0 root pfifo limit 0", 5)
    assert tgt.host.device_drops


def test_engine_models_fq_as_pacing() -> None:
    """``fq`` paces every connection (CC-16), with the pacing sysctls and
    tcp_min_tso_segs of the script; a queue of limit 0 replaces it."""
    from finwait.script.engine import EngineTarget

    tgt = EngineTarget("q.pkt")
    tgt.run_command("./defaults.sh\ntc qdisc replace dev tun0 root fq\n"
                    "sysctl -q net/ipv4/tcp_pacing_ss_ratio=150\n"
                    "sysctl -e -q net.ipv4.tcp_min_tso_segs=3", 3)  # fmt: skip
    assert tgt.host.device_paces and not tgt.host.device_drops
    cfg = tgt.base_config
    assert (cfg.pacing_ss_ratio, cfg.pacing_ca_ratio, cfg.pacing_min_segs) == (150, 120, 3)
    tgt.run_command("tc qdisc replace dev tun0 root pfifo limit 0", 4)
    assert tgt.host.device_drops and not tgt.host.device_paces


@pytest.mark.parametrize("target", ["engine", pytest.param("kernel", marks=pytest.mark.live)])
def test_blocking_write_returns_once_all_is_queued(
    target: str, request: pytest.FixtureRequest
) -> None:
    """A blocking write larger than the send buffer waits for room and
    returns the whole count (Linux tcp_sendmsg()); a short count was the
    upstream blocking-write script's failure.  The peer's 40000-byte window
    makes Linux's buffers 20000 bytes, as large as sk_sndbuf: 30000 bytes
    are taken (what the first window sends, and a buffer filled behind it),
    and the writer sleeps until no more than two thirds of sk_sndbuf is
    queued; woken, it queues the other 30000 (10-segment TSO pieces, as in
    blocking-write-sndbuf.pkt)."""
    if target == "kernel":
        request.getfixturevalue("live")
    text = """--tolerance_usecs=25000
`sysctl -q net.ipv4.tcp_min_tso_segs=10`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 40000 <mss 1000,nop,wscale 0>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale 8>
 +.1 < . 1:1(0) ack 1 win 40000
   +0 accept(3, ..., ...) = 4
   +0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [10000], 4) = 0
   +0...0.2 write(4, ..., 60000) = 60000
   +0 > . 1:10001(10000) ack 1
 +.1 < . 1:1(0) ack 10001 win 40000
   +0 > . 10001:30001(20000) ack 1
 +.1 < . 1:1(0) ack 30001 win 40000
"""
    out = run_script("bw.pkt", target, text=text)
    assert out.status == "PASS", out.summary()


@pytest.mark.live
def test_kernel_target_connections_run_cubic(tmp_path: Path, live: None) -> None:
    """packetdrill's defaults make CUBIC the default congestion control.  A
    namespace may only take one of the host's allowed algorithms as its
    default (a host defaulting to BBR, which paces, refuses it): the kernel
    target's sockets then ask for CUBIC themselves."""
    script = tmp_path / "cc.pkt"
    script.write_text(
        "    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
        "   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0\n"
        "   +0 bind(3, ..., ...) = 0\n"
        "   +0 listen(3, 1) = 0\n"
        "   +0 < S 0:0(0) win 32792 <mss 1000,nop,wscale 7>\n"
        "   +0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale 8>\n"
        " +.01 < . 1:1(0) ack 1 win 257\n"
        "   +0 accept(3, ..., ...) = 4\n"
        "   +0 `ss -tin state established | grep -q cubic`\n"
    )
    out = run_script(str(script), "kernel")
    assert out.status == "PASS", out.summary()


@pytest.mark.live
def test_kernel_target_keeps_the_scripts_gaps_when_the_runner_wakes_late(
    live: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner whose sleep ends late must not shorten the gap to the next
    event (Linux reacts to gaps of 1 ms: tcp_tso_should_defer()): script
    time is held back by the oversleep too.  Two SYNs to a closed port,
    10 ms apart in the script, the sleep before the first 30 ms too long:
    the kernel's RSTs must still be 10 ms apart, the first on time."""
    import finwait.script.kernel as kernel_mod
    from finwait.script.kernel import KernelTarget
    from finwait.wire.segment import SYN, Segment, TcpOptions

    class LateClock:
        monotonic = staticmethod(time.monotonic)
        time = staticmethod(time.time)
        late = 0.03

        def sleep(self, s: float) -> None:
            time.sleep(s + self.late)
            self.late = 0.0  # only the first sleep wakes late

    tgt = KernelTarget()
    try:

        def syn(port: int) -> Segment:
            return Segment(tgt.remote_addr, tgt.local_addr, port, 9, 1000, 0, SYN, 65535, b"",
                           TcpOptions(), 0)  # fmt: skip

        monkeypatch.setattr(kernel_mod, "time", LateClock())
        tgt.advance(0.05)
        tgt.inject(syn(40001))
        rsts = [tgt.next_outbound(0.2)]
        tgt.advance(0.06)
        tgt.inject(syn(40002))
        rsts.append(tgt.next_outbound(0.2))
    finally:
        monkeypatch.undo()
        tgt.close()
    assert all(r is not None for r in rsts), rsts
    (t1, r1), (t2, r2) = rsts  # type: ignore[misc]
    assert (r1.dport, r2.dport) == (40001, 40002)
    assert t1 == pytest.approx(0.05, abs=0.003), t1
    assert t2 - t1 >= 0.009, (t1, t2)


@pytest.mark.live
def test_kernel_target_finds_root_tools_without_sbin_on_path(
    live: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user whose PATH lacks the sbin directories (``env -i
    PATH=/usr/bin:/bin``) still gets ``tc`` in a script's shell commands."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    out = run_script(str(SCRIPTS / "local-drop-user-timeout.pkt"), "kernel")
    assert "not found" not in (out.message or ""), out.message
    assert out.status == "PASS", (out.line, out.message)
