"""File arguments, shared by every command: a file that cannot be read or
written ends the command with one line naming the file and the reason, and
exit status 2 — never a traceback.

``INPUT`` (gives a str) and ``OUTPUT`` (a Path) are click parameter types that check when the
command line is parsed (an output file is opened for appending and closed,
and removed again if it did not exist, so the checks are the system's own:
root's too); :func:`writing` and :func:`write_text` catch what still goes
wrong while writing (a full disk)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # (and imported on use: pathlib costs 3 ms of start-up)
    from pathlib import Path


class FileArgError(click.ClickException):
    """``Error: FILE: reason`` on one line, exit status 2."""

    exit_code = 2

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")


def reason(err: OSError, path: str | os.PathLike[str], *, reading: bool = False) -> str:
    """The reason in words: which part of the path is at fault."""
    from pathlib import Path

    p = Path(path)
    if err.errno == errno.ENOENT:
        parent = p.parent
        if not reading or not parent.is_dir():
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            missing = next(a for a in [p, *p.parents] if a.parent == parent)
            if missing != p:
                return f"no such directory {missing}"
        return "no such file"
    if err.errno == errno.ENOTDIR:
        return "a part of the path is not a directory"
    if err.errno == errno.EISDIR:
        return "is a directory, not a file"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.EROFS:
        return "read-only file system"
    return (err.strerror or str(err)).lower()


def check_input(path: str | os.PathLike[str]) -> None:
    """Raise :class:`FileArgError` unless ``path`` is a readable file (a
    URL: one that fsspec can open; ``-``: standard input)."""
    if os.fspath(path) == "-":
        return
    if "://" in os.fspath(path):
        from ..capture.reader import open_capture

        try:
            open_capture(os.fspath(path)).close()
        except OSError as err:
            raise FileArgError(path, (err.strerror or str(err)).lower()) from None
        return
    if os.path.isdir(path):
        raise FileArgError(path, "is a directory, not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise FileArgError(path, reason(err, path, reading=True)) from None


def check_output(path: str | os.PathLike[str]) -> None:
    """Raise :class:`FileArgError` unless ``path`` can be written."""
    if os.path.isdir(path):
        raise FileArgError(path, "is a directory, not a file")
    existed = os.path.lexists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as err:
        raise FileArgError(path, reason(err, path)) from None
    if not existed:
        os.unlink(path)


# ctx.meta key: this command's INPUT arguments may also be directories
# (``finwait analyze --set DIR``, whose option sets it).
DIRS_OK = "finwait.input_dirs_ok"


class _FileType(click.ParamType):  # type: ignore[type-arg]  # generic from Click 8.2
    def __init__(self, output: bool) -> None:
        self.output = output
        self.name = "file"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Path | str:
        if str(value) == "":
            self.fail("an empty file name", param, ctx)
        if self.output:
            from pathlib import Path

            check_output(value)
            return Path(value)
        if ctx is not None and ctx.meta.get(DIRS_OK) and os.path.isdir(value):
            return str(value)
        check_input(value)
        return str(value)


INPUT = _FileType(output=False)
OUTPUT = _FileType(output=True)


class _DirType(click.ParamType):  # type: ignore[type-arg]
    """An output directory: made if missing, and a file can be created in
    it (checked by creating and removing one)."""

    name = "directory"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if str(value) == "":
            self.fail("an empty directory name", param, ctx)
        if os.path.exists(value) and not os.path.isdir(value):
            raise FileArgError(value, "is a file, not a directory")
        try:
            os.makedirs(value, exist_ok=True)
            import tempfile  # (on use: it brings shutil, lzma, bz2 at start-up)

            fd, tmp = tempfile.mkstemp(dir=value, prefix=".finwait-check.")
            os.close(fd)
            os.unlink(tmp)
        except OSError as err:
            raise FileArgError(value, reason(err, value)) from None
        return str(value)


OUTPUT_DIR = _DirType()


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into :class:`FileArgError`."""
    try:
        yield
    except OSError as err:
        raise FileArgError(path, reason(err, path)) from None


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``path`` whole or not at all: the text goes to a temporary file
    beside it, renamed over ``path`` once complete, so Ctrl-C, SIGTERM or an
    error mid-write leave the old file (or none), never half of one.  A
    ``path`` that is not a regular file (``/dev/null``, ``/dev/stdout``, a
    FIFO) is written in place: renamed over, ``/dev/null`` itself became
    a regular file (as root)."""
    from pathlib import Path

    target = Path(path)
    with writing(path):
        try:
            st = target.stat()
            if not stat.S_ISREG(st.st_mode):
                with open(target, "w", encoding="utf-8") as out:
                    out.write(text)
                return
            mode = stat.S_IMODE(st.st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
