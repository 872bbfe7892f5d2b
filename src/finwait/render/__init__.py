"""finwait.render: views of a Trace — text ladder, SVG ladder, release explanation.

Every renderer takes a ``finwait.trace.Trace`` and nothing else; the rows a
ladder shows (and what a long transfer may fold away) are decided once in
``rows.py``.  Read RFC 9293 §3.5-3.6 for the exchanges drawn and explained.
"""

from .explain import ReleaseStep, explain_release, release_steps, release_summary
from .ladder import render_text
from .svg import render_svg

__all__ = [
    "ReleaseStep",
    "explain_release",
    "release_steps",
    "release_summary",
    "render_svg",
    "render_text",
]
