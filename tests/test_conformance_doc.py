"""docs/conformance.md defines every requirement code the code and the
tests cite, and the repository refers to nothing outside itself."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = re.compile(
    r"\b(?:(?:CL|AB|SA|TW|TS|TO|CC|LX)(?:-[A-Z]{2})?-\d+[a-z]?(?:\.\d+)?|(?:MUST|SHLD|MAY)-\d+)\b"
)
DEFINED = re.compile(r"\*\*((?:[A-Z]{2,4})(?:-[A-Z]{2})?-\d+[a-z]?(?:\.\d+)?)\*\*")


def _cited(where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / where).rglob("*.py")):
        for code in CODE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(code, str(path.relative_to(ROOT)))
    return found


def test_every_cited_code_is_defined() -> None:
    defined = set(DEFINED.findall((ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")))
    assert len(defined) > 50
    cited = {**_cited("tests"), **_cited("src")}
    missing = {code: path for code, path in cited.items() if code not in defined}
    assert not missing, f"codes cited but not defined in docs/conformance.md: {missing}"


def test_pattern_finds_codes() -> None:
    text = "see CL-5, SA-2.3 and SA-CL-4, MUST-66 (not UTF-8 or SHA-256)"
    assert CODE.findall(text) == ["CL-5", "SA-2.3", "SA-CL-4", "MUST-66"]


def test_repository_stands_alone() -> None:
    offenders = []
    paths = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py")]
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "shared/" in line or "../shared" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, offenders
