"""glibc's allocator for the analyzer's large numpy temporaries.

glibc serves an allocation above its mmap threshold (128 kB at first)
with fresh pages of its own mapping, returned to the kernel when freed; it
raises the threshold (up to 32 MB) each time such a block is freed, but a
pattern of allocations that moves between sizes and threads (a worker
that decodes in one thread and sends in another) keeps getting fresh
pages, and every fresh page is a fault that the kernel fills with zeros.
On this kind of virtual machine that was about 0.5 CPU s of system time
for the sequential analysis of a 5 M-packet capture of 8 k connections
(0.8 against 0.2-0.3 s), and 1-3 s per worker process of a parallel one
(492 k connections).  :func:`steady` fixes the
thresholds at glibc's own steady state: allocations under 32 MB from the
heap, the heap trimmed when 64 MB are free at its top.

numpy asks for transparent huge pages (``madvise(MADV_HUGEPAGE)``) for
every array of 4 MB or more.  Where the kernel honours that on request
only (``/sys/kernel/mm/transparent_hugepage/enabled`` ``madvise``, with
``defrag`` ``madvise``: this machine), each first touch of such an array
faults in a 2 MB page that the kernel must find (compacting memory
synchronously) and zero.  A partition's tracker keeps every connection, so
its tables grow to hundreds of MB: with huge pages each ``--workers 2``
worker spent 4-5 CPU s in the kernel on the 492 k-connection capture
(``clear_page_erms`` under ``folio_zero_user``: a fifth of all samples),
without them 0.7 s; the sequential run (small tables) is the same either
way.  :func:`steady` therefore turns numpy's request off too (numpy's own
``NUMPY_MADVISE_HUGEPAGE=0``, at run time).

Without glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameters
_DONE = False


def steady() -> None:
    """Fix glibc's thresholds in this process (once; inherited by forks).
    Also undoes a Dask nanny's ``MALLOC_TRIM_THRESHOLD_=65536``, which
    freezes the mmap threshold at 128 kB (twice the analysis's CPU time)."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    _no_huge_pages()
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 64 << 20)


def _no_huge_pages() -> None:
    """numpy's ``madvise(MADV_HUGEPAGE)`` for large arrays off (the user's
    ``NUMPY_MADVISE_HUGEPAGE`` wins)."""
    import os

    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    import numpy as np

    for where in ("_core", "core"):  # (numpy 2, numpy 1)
        multiarray = getattr(getattr(np, where, None), "multiarray", None)
        switch = getattr(multiarray, "_set_madvise_hugepage", None)
        if switch is not None:
            switch(False)
            return
