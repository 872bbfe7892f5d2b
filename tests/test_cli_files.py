"""Every file argument of every command: a missing directory, an unwritable
(or unreadable) path and a directory in place of a file each end the command
with one line naming the file and the reason, exit status 2, no traceback.
The walk finds the file parameters itself, so a new one is covered."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from finwait.cli import _COMMANDS, main
from finwait.cli.files import INPUT, OUTPUT, _FileType

# Values for the other required arguments, by name.
SAMPLE = {"port": "9000", "addr": "198.18.0.1", "host": "198.18.0.1"}


def _commands() -> list[tuple[list[str], click.Command]]:
    out: list[tuple[list[str], click.Command]] = []

    def walk(path: list[str], cmd: click.Command) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(click.Context(cmd)):
                sub = cmd.get_command(click.Context(cmd), name)
                assert sub is not None
                walk([*path, name], sub)
        else:
            out.append((path, cmd))

    for name in _COMMANDS:
        cmd = main.get_command(click.Context(main), name)
        assert cmd is not None
        walk([name], cmd)
    return out


def _file_kinds(param: click.Parameter) -> list[_FileType]:
    t = param.type
    types = t.types if isinstance(t, click.Tuple) else [t]
    return [x for x in types if isinstance(x, _FileType)]


def _file_params() -> list[tuple[list[str], click.Command, click.Parameter]]:
    found = []
    for path, cmd in _commands():
        for p in cmd.params:
            if _file_kinds(p):
                found.append((path, cmd, p))
    return found


def test_no_file_parameter_bypasses_the_checks() -> None:
    for path, cmd in _commands():
        for p in cmd.params:
            t = p.type
            types = t.types if isinstance(t, click.Tuple) else [t]
            bad = [x for x in types if isinstance(x, click.Path | click.File)]
            assert not bad, f"{' '.join(path)} {p.name}: use finwait.cli.files.INPUT/OUTPUT"


def test_the_walk_finds_the_known_file_options() -> None:
    names = {(" ".join(path), p.name) for path, _, p in _file_params()}
    assert {("demo", "pcap"), ("demo", "svg"), ("simulate", "pcap"), ("simulate", "svg"),
            ("analyze", "files"), ("analyze", "svg"), ("analyze", "html_out"),
            ("serve", "pcap"), ("connect", "pcap")} <= names  # fmt: skip


def _unwritable(tmp: Path) -> Path:
    if os.geteuid() == 0:
        return Path("/sys/finwait-test-unwritable.out")  # root may write almost anywhere else
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "x.out"


def _argv(
    path: list[str], cmd: click.Command, target: click.Parameter, bad: str, good_input: str
) -> list[str]:
    argv = list(path)
    for p in cmd.params:
        if isinstance(p, click.Argument) and p.required:
            if p is target:
                argv.append(bad)
            elif _file_kinds(p):
                argv.append(good_input)
            else:
                argv.append(SAMPLE[p.name or ""])
    if isinstance(target, click.Option):
        parts = [
            bad if isinstance(t, _FileType) else "1"
            for t in (target.type.types if isinstance(target.type, click.Tuple) else [target.type])
        ]
        argv += [target.opts[0], *parts]
    return argv


CASES = ["missing directory", "unwritable", "directory"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("where", _file_params(), ids=lambda w: f"{' '.join(w[0])}-{w[2].name}")
def test_bad_file_argument(
    where: tuple[list[str], click.Command, click.Parameter], case: str, tmp_path: Path
) -> None:
    path, cmd, param = where
    output = _file_kinds(param)[0] is OUTPUT
    assert _file_kinds(param)[0] in (INPUT, OUTPUT)
    good_input = tmp_path / "good.pcap"
    good_input.write_bytes(b"\xd4\xc3\xb2\xa1")
    if case == "missing directory":
        bad, expect = str(tmp_path / "nonexistent" / "x.out"), "no such directory"
    elif case == "directory":
        bad, expect = str(tmp_path), "is a directory"
    elif output:
        bad, expect = str(_unwritable(tmp_path)), ""
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads every file")
        f = tmp_path / "secret.pcap"
        f.write_bytes(b"")
        f.chmod(0)
        bad, expect = str(f), "permission denied"
    argv = _argv(path, cmd, param, bad, str(good_input))
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, (argv, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: {bad}: {expect}"), lines[0]
    if output and case != "directory":
        assert not os.path.lexists(bad)


def test_a_missing_input_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "nonexist.pcap")])
    assert result.exit_code == 2
    assert result.output == f"Error: {tmp_path / 'nonexist.pcap'}: no such file\n"


def test_an_output_file_that_existed_is_kept(tmp_path: Path) -> None:
    keep = tmp_path / "old.svg"
    keep.write_text("old")
    result = CliRunner().invoke(main, ["simulate", "--svg", str(keep), "--client-bytes", "10"])
    assert result.exit_code == 0
    assert keep.read_text().startswith("<?xml")


def test_output_directory_errors(tmp_path: Path) -> None:
    """--parquet-dataset DIR: a file in its place, or a directory that
    cannot be made, is one line naming it (exit 2)."""
    from click.testing import CliRunner

    from finwait.cli import main

    cap = tmp_path / "x.pcap"
    cap.write_bytes(b"")
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for bad, why in ((a_file, "is a file, not a directory"),
                     (a_file / "sub", "a part of the path is not a directory")):  # fmt: skip
        r = CliRunner().invoke(main, ["analyze", "--parquet-dataset", str(bad), str(cap)])
        assert r.exit_code == 2, r.output
        assert f"{bad}: {why}" in r.output and "Traceback" not in r.output


def test_an_output_that_is_not_a_regular_file_is_written_in_place(tmp_path: Path) -> None:
    """``--html /dev/null`` (or a FIFO) is written to, not renamed over: the
    rename made /dev/null a regular file for the whole machine (as root)."""
    import os
    import stat

    from finwait.cli.files import write_text

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_text(fifo, "<html>page</html>")
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert os.read(reader, 100) == b"<html>page</html>"
    finally:
        os.close(reader)
