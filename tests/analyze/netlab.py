"""Two network namespaces joined by a veth pair, for kernel-made captures.

Names are ``fwtest-<random>-c`` / ``-s``; addresses 198.18.<n>.1 (client)
and .2 (server), nothing else.  Everything is removed on exit, even when the
test fails."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PREFIX = "fwtest-"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def can_run() -> str | None:
    """Why kernel captures cannot be made here, or None."""
    import os

    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "tcpdump", "tc"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@dataclass
class Lab:
    client_ns: str
    server_ns: str
    caddr: str
    saddr: str

    def run(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload, no-any-return]


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    tag = secrets.token_hex(3)
    net = secrets.randbelow(250) + 1
    c, s = f"{PREFIX}{tag}-c", f"{PREFIX}{tag}-s"
    try:
        sh("ip", "netns", "add", c)
        sh("ip", "netns", "add", s)
        sh(
            "ip",
            "link",
            "add",
            "fwv-c",
            "netns",
            c,
            "type",
            "veth",
            "peer",
            "name",
            "fwv-s",
            "netns",
            s,
        )
        for ns, dev, addr in (
            (c, "fwv-c", f"198.18.{net}.1/24"),
            (s, "fwv-s", f"198.18.{net}.2/24"),
        ):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield Lab(c, s, f"198.18.{net}.1", f"198.18.{net}.2")
    finally:
        for ns in (c, s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextlib.contextmanager
def tcpdump(lab: Lab, out: Path, dev: str = "fwv-c", extra: tuple[str, ...] = ()) -> Iterator[None]:
    """Capture on the client's veth until the block ends.  --immediate-mode:
    without it libpcap hands packets over a ring block at a time, and the
    last block (the end of the last scenario) can be lost when tcpdump stops."""
    proc = lab.run(
        lab.client_ns, "tcpdump", "--immediate-mode", "-i", dev, "-s", "200", "-U", "-w", str(out), *extra, "tcp",
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on fwv-c ..."
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"tcpdump did not start: {line}")
    try:
        yield
    finally:
        time.sleep(0.2)
        proc.terminate()
        proc.wait(5)


@contextlib.contextmanager
def hosts(n: int) -> Iterator[list[tuple[str, str]]]:
    """``n`` namespaces as ``n`` hosts on one Ethernet: each joined by a
    veth pair to a bridge in a hub namespace.  Yields (namespace, address)
    per host: 198.18.<k>.1, .2, …  Removed on exit, even when the test fails
    (the caller stops its processes in them first)."""
    tag = secrets.token_hex(3)
    net = secrets.randbelow(250) + 1
    hub = f"{PREFIX}{tag}-hub"
    names = [f"{PREFIX}{tag}-h{i}" for i in range(n)]
    try:
        sh("ip", "netns", "add", hub)
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for i, ns in enumerate(names):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth",
               "peer", "name", f"p{i}", "netns", hub)  # fmt: skip
            sh("ip", "-n", hub, "link", "set", f"p{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"198.18.{net}.{i + 1}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield [(ns, f"198.18.{net}.{i + 1}") for i, ns in enumerate(names)]
    finally:
        for ns in (*names, hub):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
