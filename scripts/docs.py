"""Sample outputs in README.md and docs/: each is produced by the command it
shows.  A sample is a fenced block right after a marker comment:

    <!-- sample: finwait demo | section 2 -->
    ```text
    ...what the command prints...
    ```

The command is run (``finwait`` means ``python -m finwait`` with this
interpreter, from the repository root, COLUMNS=100) and its output, passed
through the filters after ``|``, replaces the block:

    python scripts/docs.py           # rewrite every sample (and GENERATED file) in place
    python scripts/docs.py --check   # exit 1 and show what differs

tests/test_docs.py runs the check, so a change to the output fails the suite
until the samples are regenerated.  Filters:

- ``section N``: the N-th part of the output between blank lines (1-based);
- ``lines A-B``: lines A to B (1-based, inclusive; ``A-`` to the end);
- ``events-per-line``: JSON re-indented with one event per line.

Samples this script cannot produce (live runs against the kernel, whose
timing varies) are marked ``<!-- sample-live: COMMAND -->``, abridged to the
rows whose order cannot vary, and checked by tests/live/test_doc_samples.py:
it runs the command in a lab and finds every row of the sample, in order, in
what is printed (times and ports masked).  Update those by hand from a run.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = re.compile(r"^<!-- run: python -->\n```python\n(?P<code>.*?)^```$", re.M | re.S)
MARKER = re.compile(
    r"^<!-- sample: (?P<cmd>.+?) -->\n```(?P<lang>[a-z]*)\n(?P<body>.*?)^```$", re.M | re.S
)


@dataclass
class Sample:
    path: Path
    command: str
    lang: str
    body: str
    start: int  # offsets of the body in the file
    end: int

    def where(self) -> str:
        line = self.path.read_text(encoding="utf-8").count("\n", 0, self.start)
        return f"{self.path.relative_to(REPO)}:{line}"


def samples(path: Path) -> list[Sample]:
    text = path.read_text(encoding="utf-8")
    return [
        Sample(path, m["cmd"], m["lang"], m["body"], m.start("body"), m.end("body"))
        for m in MARKER.finditer(text)
    ]


def code_blocks(path: Path) -> list[str]:
    """The ``<!-- run: python -->`` blocks of ``path``: run by the tests."""
    return [m["code"] for m in RUN.finditer(path.read_text(encoding="utf-8"))]


def run_code(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=_env()
    )


def _env() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def run(command: str) -> str:
    """The command's output after its filters.  ``python DOC#N`` runs the
    N-th ``<!-- run: python -->`` block of DOC."""
    cmd, *filters = (part.strip() for part in command.split(" | "))
    argv = cmd.split()
    if argv[0] == "python" and len(argv) == 2 and "#" in argv[1]:
        doc, _, n = argv[1].partition("#")
        proc = run_code(code_blocks(REPO / doc)[int(n) - 1])
        if proc.returncode:
            raise RuntimeError(f"{cmd!r} failed:\n{proc.stderr}")
    elif argv[0] == "finwait":
        proc = subprocess.run(
            [sys.executable, "-m", "finwait", *argv[1:]],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=_env(),
        )
    else:
        raise ValueError(f"a sample runs finwait or a doc's python block, not {argv[0]!r}")
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd!r} exited {proc.returncode}: {proc.stderr.strip()}")
    out = proc.stdout
    for f in filters:
        out = apply(f, out)
    return out if out.endswith("\n") else out + "\n"


def apply(spec: str, text: str) -> str:
    name, _, arg = spec.partition(" ")
    if name == "section":
        parts = re.split(r"\n\s*\n", text.strip("\n"))
        return parts[int(arg) - 1] + "\n"
    if name == "lines":
        a, _, b = arg.partition("-")
        lines = text.splitlines(keepends=True)
        return "".join(lines[int(a) - 1 : int(b) if b else None])
    if name == "events-per-line":
        return events_per_line(json.loads(text))
    raise ValueError(f"unknown sample filter {spec!r}")


def events_per_line(data: dict[str, object]) -> str:
    """``finwait demo --json`` laid out to read: endpoints and events one per
    line, the summary indented."""

    def one(v: object) -> str:
        return json.dumps(v, separators=(", ", ": "))

    eps = data["endpoints"]
    assert isinstance(eps, dict)
    events = data["events"]
    assert isinstance(events, list)
    out = ["{", '  "endpoints": {']
    out += [
        f'    "{k}": {one(v)}' + ("," if i < len(eps) - 1 else "")
        for i, (k, v) in enumerate(eps.items())
    ]
    out += ["  },", f'  "relative": {one(data["relative"])},', '  "events": [']
    out += [f"    {one(e)}" + ("," if i < len(events) - 1 else "") for i, e in enumerate(events)]
    rest = {k: v for k, v in data.items() if k not in ("endpoints", "relative", "events")}
    out.append("  ]" + ("," if rest else ""))
    for i, (k, v) in enumerate(rest.items()):
        body = json.dumps(v, indent=2).replace("\n", "\n  ")
        out.append(f'  "{k}": {body}' + ("," if i < len(rest) - 1 else ""))
    out.append("}")
    return "\n".join(out) + "\n"


# Whole files made from the code: path -> the command that prints them.
GENERATED = {
    "docs/states.svg": "python -c from finwait.render.states import state_diagram_svg as f; "
    "print(f(), end='')",
    "docs/demo.html": "finwait demo --html {out}",
}


def generated(rel: str) -> str:
    """The content ``rel`` (a GENERATED path) should have now."""
    command = GENERATED[rel]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / Path(rel).name
        if command.startswith("python -c "):
            argv = [sys.executable, "-c", command.removeprefix("python -c ")]
        else:
            argv = [sys.executable, "-m", "finwait", *command.format(out=out).split()[1:]]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=_env())
        if proc.returncode:
            raise RuntimeError(f"{command!r} failed: {proc.stderr.strip()}")
        # A command that writes {out} makes the file; one that prints, its output.
        return out.read_text(encoding="utf-8") if "{out}" in command else proc.stdout


def check() -> list[str]:
    """One message per stale sample or generated file (with a diff)."""
    problems = []
    for rel in GENERATED:
        path = REPO / rel
        have = path.read_text(encoding="utf-8") if path.exists() else ""
        if have != generated(rel):
            problems.append(f"{rel}: out of date (made by `{GENERATED[rel]}`)")
    for path in DOCS:
        for s in samples(path):
            want = run(s.command)
            if want != s.body:
                diff = "".join(
                    difflib.unified_diff(
                        s.body.splitlines(keepends=True),
                        want.splitlines(keepends=True),
                        "in the doc",
                        "printed now",
                    )
                )
                problems.append(f"{s.where()}: `{s.command}` prints otherwise:\n{diff}")
    return problems


def regenerate() -> int:
    changed = 0
    for rel in GENERATED:
        path = REPO / rel
        want = generated(rel)
        if not path.exists() or path.read_text(encoding="utf-8") != want:
            path.write_text(want, encoding="utf-8")
            changed += 1
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for s in reversed(samples(path)):
            want = run(s.command)
            if want != s.body:
                text = text[: s.start] + want + text[s.end :]
                changed += 1
        path.write_text(text, encoding="utf-8")
    return changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if a sample is stale")
    args = ap.parse_args()
    if args.check:
        problems = check()
        for p in problems:
            print(p)
        return 1 if problems else 0
    print(f"{regenerate()} sample(s) regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
