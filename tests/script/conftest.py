"""Live requirement for the kernel target: skip where impossible, fail under
FINWAIT_LIVE=require (CI must not pass by skipping)."""

from __future__ import annotations

from pathlib import Path

import pytest

from live.conftest import require_live

__all__ = ["SCRIPTS", "require_live"]

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def live() -> None:
    require_live()
