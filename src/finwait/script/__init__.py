"""packetdrill-dialect scripts: parse them, run them against finwait's engine
in virtual time or against the Linux kernel through a TUN device in a
private network namespace, and report PASS/FAIL with the first mismatch.

``parser`` turns text into ``model`` values; ``runner`` holds what both
targets share (timing, sequence-number mapping, segment comparison);
``engine`` and ``kernel`` are the two targets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .model import Script, ScriptError
from .parser import parse_file, parse_script
from .runner import Outcome, Runner

if TYPE_CHECKING:
    from .engine import EngineTarget
    from .kernel import KernelTarget

__all__ = ["Outcome", "Script", "ScriptError", "parse_file", "parse_script", "run_script"]


def run_script(
    path: str,
    target: str = "engine",
    *,
    text: str | None = None,
    log: Callable[[str], None] | None = None,
    pcap: list[tuple[float, bytes]] | None = None,
    min_tolerance: float = 0.0,
    profile: str = "linux",
) -> Outcome:
    """Parse and run one script on ``target`` ("engine" or "kernel").  A
    script that cannot be parsed or run is an ERROR outcome, never an
    exception.  ``pcap``, when given, receives (time, IP packet) for every
    segment injected or seen."""
    try:
        script = parse_script(text, path, target) if text is not None else parse_file(path, target)
    except ScriptError as exc:
        return Outcome(path, target, "ERROR", exc.line, exc.message)
    ip_version = script.option("ip_version", "ipv4")
    if ip_version not in ("ipv4", "ipv6"):
        line = next((ln for k, _, ln in script.options if k == "ip_version"), 0)
        return Outcome(path, target, "ERROR", line, f"unsupported --ip_version={ip_version}")
    ipv6 = ip_version == "ipv6"
    tgt: EngineTarget | KernelTarget
    try:
        if target == "engine":
            from .engine import EngineTarget

            if profile not in ("linux", "rfc"):
                return Outcome(path, target, "ERROR", None, f"unknown profile {profile!r}")
            tgt = EngineTarget(path, ipv6=ipv6, profile=profile)
        elif target == "kernel":
            from .kernel import KernelTarget

            tgt = KernelTarget(path, ipv6=ipv6, options=script.options)
        else:
            return Outcome(path, target, "ERROR", None, f"unknown target {target!r}")
    except ScriptError as exc:
        return Outcome(path, target, "ERROR", exc.line, exc.message)
    try:
        runner = Runner(script, tgt, log, min_tolerance)
        return runner.run()
    except ScriptError as exc:
        return Outcome(path, target, "ERROR", exc.line, exc.message)
    except Exception as exc:  # a runner defect: still one line, never a traceback
        return Outcome(path, target, "ERROR", None, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if pcap is not None:
            _record(tgt, pcap)
        tgt.close()


def _record(tgt: object, pcap: list[tuple[float, bytes]]) -> None:
    from ..wire.ip import encode_packet

    for t, seg, _inbound in getattr(tgt, "record", []):
        try:
            pcap.append((t, encode_packet(seg)))
        except ValueError:
            continue
