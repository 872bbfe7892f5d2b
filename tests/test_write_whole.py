"""Outputs written by write_text (--html, --svg) are whole after an interrupt:
the old file stays, no half-written one and no temporary file is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from finwait.cli import files


def test_interrupt_mid_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "page.html"
    out.write_text("old page", encoding="utf-8")
    real_fdopen = os.fdopen

    class Half:
        def __init__(self, f: object) -> None:
            self.f = f

        def __enter__(self) -> Half:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()  # type: ignore[attr-defined]

        def write(self, text: str) -> None:
            self.f.write(text[: len(text) // 2])  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: Half(real_fdopen(*a, **k)))
    with pytest.raises(KeyboardInterrupt):
        files.write_text(out, "new page " * 1000)
    assert out.read_text(encoding="utf-8") == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_written_whole_with_the_usual_mode(tmp_path: Path) -> None:
    out = tmp_path / "x.svg"
    files.write_text(out, "<svg/>")
    assert out.read_text(encoding="utf-8") == "<svg/>"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    out.chmod(0o640)
    files.write_text(out, "<svg></svg>")
    assert out.read_text(encoding="utf-8") == "<svg></svg>"
    assert out.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["x.svg"]
