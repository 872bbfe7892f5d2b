"""Fixtures for the live tests: a private lab per test, checked for leftovers.

Live tests need root, /dev/net/tun and network namespaces.  Where they are
impossible the tests skip, unless ``FINWAIT_LIVE=require`` (set by .ci/run),
where they fail: CI must not pass by skipping the interop matrix.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from finwait.live.lab import (
    Lab,
    LabError,
    check_prerequisites,
    namespaces_made_here,
    netns_exists,
)


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def require_live() -> None:
    try:
        check_prerequisites()
    except LabError as exc:
        if os.environ.get("FINWAIT_LIVE") == "require":
            pytest.fail(f"live test cannot run and FINWAIT_LIVE=require: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh namespace + TUN; afterwards, no namespace, TUN, child process
    or peer thread may be left behind."""
    require_live()
    me = os.getpid()
    # Leaks are judged on what this process made (finwait.live.lab keeps the
    # list), never on a listing of /run/netns: other test processes on the
    # machine create and remove their own namespaces at any moment.
    before_ns = namespaces_made_here()
    before_children = _children(me)
    before_threads = set(threading.enumerate())
    with Lab() as the_lab:
        yield the_lab
    assert not netns_exists(the_lab.name), f"namespace {the_lab.name} left behind"
    left = namespaces_made_here() - before_ns
    assert not left, f"namespaces left behind: {sorted(left)}"
    assert _children(me) <= before_children, "a child process was left behind"
    leftover = [t for t in threading.enumerate() if t not in before_threads and t.is_alive()]
    for t in leftover:
        t.join(timeout=2.0)
    assert not [t for t in leftover if t.is_alive()], "a peer thread was left behind"
