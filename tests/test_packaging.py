"""Packaging: each part's third-party needs are an explicit extra in
pyproject.toml, `pip install finwait` (the base) still brings them all, and
the core (wire, tcp, host, trace, sim) imports and runs with none of them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import finwait

REPO = Path(__file__).resolve().parents[1]
SRC = Path(finwait.__file__).resolve().parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
THIRD_PARTY = {"click", "rich", "numpy", "pyroute2"}

# Which extra covers which part of the source tree (None: nothing allowed).
PARTS: dict[str, str | None] = {
    "wire": None,
    "tcp": None,
    "host.py": None,
    "trace.py": None,
    "drive.py": None,
    "sim": None,
    "render": None,
    "capture/writer.py": None,
    "__init__.py": None,
    "__main__.py": "sim",
    "cli/__init__.py": "sim",
    "cli/files.py": "sim",
    "cli/sim.py": "sim",
    "capture": "analyze",
    "analyze": "analyze",
    "analyze/parquet.py": "parquet",
    "analyze/dask.py": "dask",
    "capture/remote.py": "remote",
    "capture/compressed.py": "compressed",
    "cli/analyze.py": "analyze",
    "live": "live",
    "cli/live.py": "live",
    "script": "live",  # the kernel target needs pyroute2 (the engine target nothing)
    "cli/script.py": "live",
}


def _name(req: str) -> str:
    m = re.match(r"[A-Za-z0-9_.-]+", req)
    assert m is not None
    return m.group(0).lower()


def _extra(name: str) -> set[str]:
    return {_name(r) for r in PYPROJECT["project"]["optional-dependencies"][name]}


def _part(path: Path) -> str | None:
    rel = path.relative_to(SRC).as_posix()
    best = max((p for p in PARTS if rel == p or rel.startswith(p + "/")), key=len)
    return PARTS[best]


def _third_party_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"finwait"}
    return found


@pytest.mark.parametrize(
    "path", sorted(SRC.rglob("*.py")), ids=lambda p: p.relative_to(SRC).as_posix()
)
def test_every_import_is_in_its_parts_extra(path: Path) -> None:
    part = _part(path)
    allowed = _extra(part) if part else set()
    assert _third_party_imports(path) <= allowed, f"{path.name}: extra {part}"


def test_the_base_install_is_the_whole_command_line() -> None:
    base = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert base == _extra("sim") | _extra("analyze") | _extra("live") == THIRD_PARTY


def test_tools_are_in_dev_not_in_the_base() -> None:
    base = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert {"ruff", "mypy"} <= _extra("dev") and not {"ruff", "mypy"} & base
    assert "finwait[test]" in PYPROJECT["project"]["optional-dependencies"]["dev"]


CORE_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
for name in ("click", "rich", "numpy", "pyroute2"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{name} is importable: the test does not test anything")
from finwait.sim.scenario import ScenarioSpec, run_scenario
from finwait.render import explain_release, render_svg, render_text
from finwait.capture.writer import write_trace
result = run_scenario(ScenarioSpec(client_bytes=247, server_bytes=49, closer="server"))
assert "FIN" in render_text(result.trace) and render_svg(result.trace).startswith("<?xml")
assert "TIME-WAIT" in explain_release(result.trace)
write_trace(result.trace, sys.argv[2])
print(sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in
             {"click", "rich", "numpy", "pyroute2"}), result.summary["A"]["final_state"])
"""


def test_the_core_runs_without_any_third_party_package(tmp_path: Path) -> None:
    # -S: no site-packages at all, so none of click/rich/numpy/pyroute2.
    out = subprocess.run(
        [sys.executable, "-S", "-c", CORE_RUN, str(SRC.parent), str(tmp_path / "x.pcap")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "CLOSED"]
    assert (tmp_path / "x.pcap").stat().st_size > 24


BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == sys.argv[1]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from finwait.cli import main
main(sys.argv[2:], prog_name="finwait")
"""


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        ("numpy", ["analyze", "x.pcap"], "analyze"),
        ("pyroute2", ["lab", "status"], "live"),
    ],
)
def test_a_missing_dependency_names_the_extra(blocked: str, argv: list[str], extra: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", BLOCKED, blocked, *argv], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert f"pip install 'finwait[{extra}]'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_python_dash_m_finwait() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "finwait", "--help"], capture_output=True, text=True, check=True
    )
    assert "Usage: finwait" in out.stdout and "demo" in out.stdout
