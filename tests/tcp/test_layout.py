"""The engine stays readable: no module of ``finwait.tcp`` over 600 lines and
no function or method over 60 (docstrings and comments included), so that
"how finwait sends" and "how finwait receives" each fit in one file a
newcomer can read.  Features land in the sender's and receiver's halves or
in a unit of their own (``recovery``, ``rack``, ``congestion``), not by
growing one method."""

from __future__ import annotations

import ast
from pathlib import Path

import finwait.tcp

TCP_DIR = Path(finwait.tcp.__file__).parent
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    paths = sorted(TCP_DIR.glob("*.py"))
    assert len(paths) > 10, f"expected the engine's modules in {TCP_DIR}"
    return paths


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_engine_module_is_over_600_lines() -> None:
    too_long = [
        f"{p.name} ({n} lines)"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    ]
    assert too_long == []


def test_no_engine_function_is_over_60_lines() -> None:
    assert [f for p in _modules() for f in _long_functions(p)] == []


def test_the_function_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    sample = tmp_path / "sample.py"
    sample.write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert _long_functions(sample) == [f"sample.py:5 long ({MAX_FUNCTION_LINES + 1} lines)"]
