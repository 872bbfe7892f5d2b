"""``%{ }%`` blocks: evaluated on tcp_info without exec; what the evaluator
does not know is skipped, never guessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from finwait.script import run_script
from finwait.script.tcpinfo import AssertionFailed, Unsupported, kernel_tcp_info, run_block


def test_assert_assign_and_print() -> None:
    names: dict[str, object] = {}
    run_block("cwnd = tcpi_snd_cwnd", {"tcpi_snd_cwnd": 10}, names)
    assert names == {"cwnd": 10}
    run_block(
        "print(tcpi_snd_cwnd); cwnd += 10; assert tcpi_snd_cwnd == cwnd, tcpi_snd_cwnd",
        {"tcpi_snd_cwnd": 20},
        names,
    )
    assert names["cwnd"] == 20
    run_block("assert tcpi_ca_state == TCP_CA_Recovery and 0 < 1 <= 1", {"tcpi_ca_state": 3}, {})
    run_block(
        "assert tcpi_snd_ssthresh == TCP_INFINITE_SSTHRESH", {"tcpi_snd_ssthresh": 2**31 - 1}, {}
    )
    with pytest.raises(AssertionFailed, match=r"cwnd=12"):
        run_block(
            "assert tcpi_snd_cwnd == 10, 'cwnd=%d' % tcpi_snd_cwnd", {"tcpi_snd_cwnd": 12}, {}
        )
    run_block("assert tcpi_snd_cwnd == 10, \\\n  tcpi_snd_cwnd", {"tcpi_snd_cwnd": 10}, {})
    # One statement a line, however the lines are indented after "%{".
    run_block(
        "assert tcpi_sacked == 3\n      assert tcpi_lost == 4",
        {"tcpi_sacked": 3, "tcpi_lost": 4},
        {},
    )


@pytest.mark.parametrize(
    "code",
    [
        "import os",
        "open('/etc/passwd')",
        "assert tcpi_rto > 0",  # a field the target does not report
        "x.y = 1",
        "assert (lambda: 1)()",
        "assert tcpi_snd_cwnd ==",
    ],
)
def test_outside_the_language_is_unsupported(code: str) -> None:
    names: dict[str, object] = {}
    with pytest.raises(Unsupported):
        run_block(code, {"tcpi_snd_cwnd": 10}, names)
    assert names == {}


def test_kernel_layout() -> None:
    raw = bytearray(232)
    raw[1] = 3  # ca_state
    raw[8 + 4 * 18 : 8 + 4 * 19] = (36).to_bytes(4, "little")  # snd_cwnd
    raw[8 + 4 * 17 : 8 + 4 * 18] = (7).to_bytes(4, "little")  # snd_ssthresh
    info = kernel_tcp_info(bytes(raw))
    assert (info["tcpi_ca_state"], info["tcpi_snd_cwnd"], info["tcpi_snd_ssthresh"]) == (3, 36, 7)


def test_failed_assertion_names_the_line(tmp_path: Path) -> None:
    script = tmp_path / "cwnd.pkt"
    script.write_text(
        "    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
        "   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0\n"
        "   +0 bind(3, ..., ...) = 0\n"
        "   +0 listen(3, 1) = 0\n"
        "   +0 < S 0:0(0) win 32792 <mss 1000,nop,wscale 7>\n"
        "   +0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale 8>\n"
        " +.01 < . 1:1(0) ack 1 win 257\n"
        "   +0 accept(3, ..., ...) = 4\n"
        "   +0 %{ assert tcpi_snd_cwnd == 10 }%\n"
        "   +0 %{ assert tcpi_snd_cwnd == 11, 'cwnd=%d' % tcpi_snd_cwnd }%\n"
    )
    out = run_script(str(script), "engine")
    assert (out.status, out.line, out.message) == ("FAIL", 10, "tcp_info assertion failed")
    assert "cwnd=10" in out.got
