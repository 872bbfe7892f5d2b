"""glibc's allocator thresholds (analyze/alloc.py): ``finwait analyze``
fixes them, so a numpy temporary of a batch comes from the heap instead of
fresh pages mapped for it (each page a fault)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

from .test_jsonl import zoo


def _mmapped_alloc() -> bool:
    """Whether a 1 MB numpy array is mmapped by glibc in this process
    (mallinfo2's count of mmapped blocks goes up while it lives)."""
    import ctypes

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]  # fmt: skip

    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    before = mallinfo2().hblks
    a = np.ones(1 << 17)  # 1 MB
    hit = bool(mallinfo2().hblks > before)
    del a
    return hit


def mmapped_before_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter started as a Dask nanny starts
    its workers (``MALLOC_TRIM_THRESHOLD_=65536``: every numpy temporary
    mmapped); ``code`` sees :func:`_mmapped_alloc` and prints what it finds
    (e.g. before and after the call under test)."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    return subprocess.run([sys.executable, "-c", inspect.getsource(_mmapped_alloc) + code],
                          env=env, capture_output=True, text=True, check=True).stdout.split()  # fmt: skip


def test_analyze_command_fixes_thresholds(tmp_path: Path) -> None:
    """With MALLOC_TRIM_THRESHOLD_ set (which freezes the mmap threshold at
    128 kB: a 1 MB array is mmapped), a ``finwait analyze`` run leaves
    its process allocating 1 MB from the heap."""
    path = tmp_path / "z.pcap"
    path.write_bytes(zoo(3, 20))
    out = mmapped_before_after(
        "from click.testing import CliRunner\n"
        "from finwait.cli import main\n"
        "before = _mmapped_alloc()\n"
        f"r = CliRunner().invoke(main, ['analyze', '--stats', {str(path)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(before, _mmapped_alloc())")  # fmt: skip
    assert out == ["True", "False"]
