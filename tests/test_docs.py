"""README.md and docs/ stay true (scripts/docs.py):

- every sample output is produced by the command in its marker, now
  (regenerate with ``python scripts/docs.py``);
- every Python block runs, as pasted;
- every ``finwait`` command line shown parses (options and values exist);
- every other fenced block is a usage synopsis whose options exist, or a live
  sample (checked by the live tests);
- no link leaves the repository, and nothing refers to files outside it."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import click
import pytest

from finwait.cli import main

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("finwait_docs", REPO / "scripts" / "docs.py")
assert _spec is not None and _spec.loader is not None
docs = importlib.util.module_from_spec(_spec)
sys.modules["finwait_docs"] = docs
_spec.loader.exec_module(docs)

DOCS: list[Path] = docs.DOCS
FENCE = re.compile(r"(?:^<!-- (?P<marker>[^\n]*?) -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$",
                   re.M | re.S)  # fmt: skip


def _ids(p: Path) -> str:
    return p.relative_to(REPO).as_posix()


def _fences(path: Path) -> list[re.Match[str]]:
    return list(FENCE.finditer(path.read_text(encoding="utf-8")))


def test_samples_are_what_the_commands_print() -> None:
    problems = docs.check()
    assert not problems, "stale samples; run `python scripts/docs.py`:\n" + "\n".join(problems)


def test_there_are_samples() -> None:
    commands = [s.command for p in DOCS for s in docs.samples(p)]
    assert "finwait demo | section 2" in commands
    assert "finwait demo --json | events-per-line" in commands


def test_a_stale_sample_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("<!-- sample: finwait demo | section 2 -->\n```text\nold\n```\n")
    monkeypatch.setattr(docs, "DOCS", [doc])
    monkeypatch.setattr(docs, "REPO", tmp_path)
    monkeypatch.setattr(docs, "GENERATED", {"states.svg": docs.GENERATED["docs/states.svg"]})
    (tmp_path / "states.svg").write_text("<svg/>")
    assert len(docs.check()) == 2
    assert docs.regenerate() == 2
    assert docs.check() == []
    assert "SYN-SENT" in doc.read_text()
    assert 'data-from="TIME-WAIT"' in (tmp_path / "states.svg").read_text()


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_every_fenced_block_is_accounted_for(path: Path) -> None:
    for m in _fences(path):
        marker, lang = m["marker"] or "", m["lang"]
        where = f"{_ids(path)}:{path.read_text().count(chr(10), 0, m.start('body'))}"
        if lang == "python":
            assert marker in ("run: python", "run: live"), f"{where}: unmarked python block"
        elif lang == "sh":
            continue  # checked below
        else:
            assert re.match(r"(sample|sample-live|usage): ", marker), (
                f"{where}: a {lang or 'plain'} block needs <!-- sample: COMMAND -->, "
                "<!-- sample-live: ... --> or <!-- usage: COMMAND -->"
            )


@pytest.mark.parametrize("path", [p for p in DOCS if docs.code_blocks(p)], ids=_ids)
def test_python_blocks_run_as_pasted(path: Path) -> None:
    for i, code in enumerate(docs.code_blocks(path), 1):
        proc = docs.run_code(code)
        assert proc.returncode == 0, f"{_ids(path)} block {i}:\n{proc.stderr}"


def _resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    cmd: click.Command = main
    while isinstance(cmd, click.Group) and argv and not argv[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), argv[0])
        assert sub is not None, f"no command {argv[0]!r}"
        cmd, argv = sub, argv[1:]
    return cmd, argv


def _finwait_lines(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("finwait "):
            out.append(shlex.split(line)[1:])
    return out


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_finwait_command_lines_parse(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # output files named in the docs land here
    for m in _fences(path):
        if m["lang"] != "sh":
            continue
        for argv in _finwait_lines(m["body"]):
            cmd, rest = _resolve(argv)
            try:
                cmd.make_context(cmd.name, rest)  # parses and checks every value
            except click.ClickException as err:
                pytest.fail(f"{_ids(path)}: finwait {' '.join(argv)}: {err.format_message()}")


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_usage_blocks_name_real_options(path: Path) -> None:
    for m in _fences(path):
        marker = m["marker"] or ""
        if not marker.startswith("usage: "):
            continue
        for line in m["body"].splitlines():
            words = line.split()
            if not words or words[0] != "finwait":
                continue
            names = [w for w in words[1:] if re.fullmatch(r"[a-z]+", w)]
            cmd, _ = _resolve(names[:2] if names[:1] == ["lab"] else names[:1])
            opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
            for opt in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line):
                assert opt in opts | {"--help"}, f"{_ids(path)}: {opt} is not an option of {line!r}"


OUTSIDE = re.compile(r"\.\./|shared/|seed\.md|DESIGN\.md|STYLE\.md|CONFORMANCE\.md|ANCHORS\.md")


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_nothing_points_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not OUTSIDE.findall(text), f"{_ids(path)} refers outside the repository"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        assert not re.match(r"[a-z]+:", target), f"{_ids(path)}: external link {target}"
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.is_relative_to(REPO) and file.exists(), f"{_ids(path)}: broken link {target}"


def test_the_source_does_not_point_outside_either() -> None:
    for f in (REPO / "src").rglob("*.py"):
        assert not OUTSIDE.findall(f.read_text(encoding="utf-8")), f


def test_the_live_test_table_lists_every_live_test() -> None:
    table = (REPO / "docs" / "live.md").read_text(encoding="utf-8")
    for f in sorted((REPO / "tests" / "live").glob("test_*.py")):
        assert f"| {f.stem} |" in table, f"docs/live.md's test table omits {f.name}"
