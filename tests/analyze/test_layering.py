"""``render`` draws a Trace and knows nothing of the analyzer: no module
under finwait/render imports finwait.analyze (the HTML report, which needs
both, lives in analyze/html.py)."""

from __future__ import annotations

import ast
from pathlib import Path

RENDER = Path(__file__).resolve().parents[2] / "src" / "finwait" / "render"


def test_render_imports_nothing_of_analyze() -> None:
    found = []
    for path in sorted(RENDER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                if "analyze" in mod:
                    found.append((path.name, mod))
            elif isinstance(node, ast.Import):
                found += [(path.name, a.name) for a in node.names if "analyze" in a.name]
    assert RENDER.is_dir() and len(list(RENDER.glob("*.py"))) >= 5
    assert found == []
