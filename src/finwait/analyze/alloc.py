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
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 64 << 20)
