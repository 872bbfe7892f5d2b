"""Fixtures for the renderer tests; the Trace builders are in render_traces.py."""

from __future__ import annotations

import pytest
from render_traces import seed_release

from finwait.trace import Trace


@pytest.fixture
def seed() -> Trace:
    """The seed's exchange: handshake, 247 + 49 bytes, the four-step release."""
    return seed_release().trace
