"""Live requirement for the kernel target: skip where impossible, fail under
FINWAIT_LIVE=require (CI must not pass by skipping)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from finwait.live.lab import LabError, check_prerequisites

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def require_live() -> None:
    try:
        check_prerequisites()
    except LabError as exc:
        if os.environ.get("FINWAIT_LIVE") == "require":
            pytest.fail(f"live test cannot run and FINWAIT_LIVE=require: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def live() -> None:
    require_live()
