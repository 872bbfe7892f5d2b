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
    (mallinfo2's count of mmapped blocks goes up while it lives).  The
    garbage collector is run first and held off while it counts: a
    collection between the two counts could free another mmapped block
    (an import's leftovers) and hide this one (seen once in a full run)."""
    import ctypes
    import gc

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]  # fmt: skip

    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    gc.collect()
    gc.disable()
    try:
        before = mallinfo2().hblks
        a = np.ones(1 << 17)  # 1 MB
        hit = bool(mallinfo2().hblks > before)
        del a
    finally:
        gc.enable()
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


def test_steady_turns_numpy_huge_pages_off() -> None:
    """numpy advises huge pages for a large array (VmFlags ``hg`` on its
    mapping); after :func:`steady` it does not (each such first touch was a
    2 MB page found and zeroed by the kernel: 4-5 CPU s a worker)."""
    code = (
        "import numpy as np\n"
        "from finwait.analyze.alloc import steady\n"
        "def advised(a):\n"
        "    at = a.ctypes.data + a.nbytes // 2\n"
        "    lo = hi = None\n"
        "    for line in open('/proc/self/smaps'):\n"
        "        head = line.split()[0]\n"
        "        if '-' in head and ':' not in head:\n"
        "            lo, hi = (int(x, 16) for x in head.split('-'))\n"
        "        elif head == 'VmFlags:' and lo <= at < hi:\n"
        "            return 'hg' in line.split()[1:]\n"
        "before = advised(np.ones(8 << 20))\n"
        "steady()\n"
        "print(before, advised(np.ones(8 << 20)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert out == ["True", "False"]
