from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .netlab import PREFIX, can_run, namespaces


@pytest.fixture
def live_ok() -> Iterator[None]:
    """Skip (or fail with FINWAIT_LIVE=require) where namespaces cannot be
    made, and check that the test left no namespace behind."""
    why = can_run()
    if why is not None:
        if os.environ.get("FINWAIT_LIVE") == "require":
            pytest.fail(f"live test required but cannot run: {why}")
        pytest.skip(why)
    before = {n for n in namespaces() if n.startswith(PREFIX)}
    yield
    after = {n for n in namespaces() if n.startswith(PREFIX)}
    assert after <= before, f"namespaces left behind: {sorted(after - before)}"
