"""finwait.render: views of a Trace — text ladder, SVG ladder, release explanation.

Every renderer takes a ``finwait.trace.Trace`` and nothing else; the rows a
ladder shows (and what a long transfer may fold away) are decided once in
``rows.py``.  Read RFC 9293 §3.5-3.6 for the exchanges drawn and explained.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .explain import ReleaseStep, explain_release, release_steps, release_summary
    from .ladder import render_text
    from .svg import render_svg

# Imported on first use: ``from finwait.render.rows import count`` (the CLI's
# wording helpers) must not pay for the SVG and explanation modules.
_LAZY = {
    "ReleaseStep": "explain",
    "explain_release": "explain",
    "release_steps": "explain",
    "release_summary": "explain",
    "render_text": "ladder",
    "render_svg": "svg",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ReleaseStep",
    "explain_release",
    "release_steps",
    "release_summary",
    "render_svg",
    "render_text",
]
