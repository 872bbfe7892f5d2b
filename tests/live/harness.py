"""Shared pieces of the interop tests: a Stack on the test's lab, with a
short MSL, and waiting helpers.  Every test runs inside ``asyncio.run`` with
an overall timeout, so a hang is a failure, not a stuck CI job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from finwait.live.driver import DropHook
from finwait.live.lab import Lab
from finwait.live.streams import Stack
from finwait.tcp.config import Config

T = TypeVar("T")
MSL = 0.25  # TIME-WAIT = 0.5 s in tests
TEST_TIMEOUT = 30.0


def config(**kw: object) -> Config:
    base: dict[str, object] = {"msl": MSL, "rto_initial": 0.3, "fin_wait_2_timeout": 5.0}
    base.update(kw)
    return Config(**base)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def stack_on(
    lab: Lab, *, drop: DropHook | None = None, offload: bool = True, **cfg: object
) -> AsyncIterator[Stack]:
    async with Stack.open(
        lab.name, lab.cfg.tun, config=config(**cfg), drop=drop, offload=offload
    ) as stack:
        yield stack


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = TEST_TIMEOUT) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(main())


async def until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
