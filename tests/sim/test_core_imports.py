"""The core (wire, tcp, host, trace, sim) does no I/O and needs no third-party
package: no socket, asyncio, time, random, os or fcntl (docs/design.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import finwait

ROOT = Path(finwait.__file__).parent
FORBIDDEN = {"socket", "asyncio", "time", "random", "os", "fcntl"}
# The sim sits above the engine: it must not reach into I/O or view layers.
SIM_MUST_NOT = {"live", "capture", "analyze", "render", "cli"}


def core_files() -> list[Path]:
    files = [ROOT / "trace.py", ROOT / "host.py", ROOT / "drive.py"]
    for pkg in ("wire", "tcp", "sim"):
        files.extend(sorted((ROOT / pkg).glob("*.py")))
    return [f for f in files if f.exists()]


def imported(path: Path) -> list[tuple[int, int, str]]:
    """(level, line, module) for every import; level > 0 is relative."""
    out: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.extend((0, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.lineno, node.module or ""))
    return out


def violations(path: Path, root: Path = ROOT) -> list[str]:
    bad = []
    in_sim = path.parent.name == "sim"
    for level, line, module in imported(path):
        top = module.split(".")[0]
        where = f"{path.relative_to(root)}:{line}"
        if level == 0 and top in FORBIDDEN:
            bad.append(f"{where}: imports {module} (no I/O, no clock, no global randomness)")
        elif level == 0 and top not in sys.stdlib_module_names and top != "finwait":
            bad.append(f"{where}: imports third-party {module}")
        elif in_sim and level > 0 and top in SIM_MUST_NOT:
            bad.append(f"{where}: sim imports {module}")
    return bad


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports(path: Path) -> None:
    assert violations(path) == []


def test_the_checker_catches_what_it_must(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    sim.mkdir()
    bad = sim / "bad.py"
    bad.write_text(
        "import os\nfrom time import monotonic\nimport numpy as np\n"
        "from ..render import ladder\nimport hashlib\nfrom . import rng\n"
    )
    found = violations(bad, root=tmp_path)
    assert [v.split(":")[1] for v in found] == ["1", "2", "3", "4"]


def test_the_core_is_all_there() -> None:
    names = {p.name for p in core_files()}
    assert {"trace.py", "segment.py", "seqnum.py", "network.py", "rng.py"} <= names
