"""The README's first two commands: `bash scripts/finwait demo` and
`bash scripts/test`, as CI runs the second (.ci/run).  The fresh-machine case
(no virtual environment, the distribution's externally managed python3) is
checked by hand on a fresh clone, as the README says; here: the commands are
the ones documented, and inside an active virtual environment they use it and
create no .venv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_readme_starts_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first is not None and text.index(first.group(0)) < 400
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["bash scripts/finwait demo", "bash scripts/test"]


def test_ci_runs_the_readme_test_command_with_live_tests_required() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "export FINWAIT_LIVE=require" in ci
    assert re.search(r"^exec bash scripts/test\b", ci, re.M)
    test = (REPO / "scripts" / "test").read_text(encoding="utf-8")
    assert test.rstrip().endswith('exec "$PY" -m pytest "$@"')  # pytest's status, 5 included


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not running in a virtual environment")
def test_scripts_use_the_active_virtual_environment(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", repo / "scripts")
    shutil.copy(REPO / "pyproject.toml", repo)
    env = {"PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "VIRTUAL_ENV": sys.prefix}  # fmt: skip
    # The stamp says finwait is installed here (it is: we are importing it).
    script = (
        '. scripts/env.sh; finwait_env ""; echo "PY=$PY"; '
        'exec "$PY" -c "import finwait, sys; print(sys.prefix)"'
    )
    stamp = Path(sys.prefix) / ".finwait-install-base"
    want = subprocess.run(
        [sys.executable, "-c", "import hashlib,sys; print(hashlib.sha256("
         "open('pyproject.toml','rb').read()).hexdigest(), '', sys.argv[1])", str(repo)],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    old = stamp.read_text() if stamp.exists() else None
    try:
        stamp.write_text(want)
        out = subprocess.run(
            ["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True
        )
    finally:
        if old is None:
            stamp.unlink()
        else:
            stamp.write_text(old)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"PY={sys.prefix}/bin/python", sys.prefix]
    assert not (repo / ".venv").exists()


def test_too_old_a_python_is_a_clear_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", repo / "scripts")
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Python 3.9.2'; fi\nexit 1\n")
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FINWAIT_PYTHON": str(fake)}
    out = subprocess.run(
        ["bash", "scripts/finwait", "demo"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert out.stderr.strip() == (
        "finwait: Python 3.9.2 is too old; finwait needs Python 3.11 or later "
        "(set FINWAIT_PYTHON to another interpreter)"
    )
    assert not (repo / ".venv").exists()
    assert os.listdir(repo) == ["scripts"]
