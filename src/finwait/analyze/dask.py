"""``--dask``: the chunk decoding (analyze/chunks.py) as Dask tasks on a
cluster (``tcp://HOST:PORT``, a running ``dask scheduler``) or on a
LocalCluster of this machine (``local`` or ``local:N`` workers).

What travels: to a worker, a :class:`~finwait.analyze.chunks.Chunk` (file
path, byte range, the file's header: a few hundred bytes); back, the chunk's
decoded segments (about 100 bytes a TCP segment), counters and tunnel
stacks.  Workers open the path themselves, so it must name the same file on
every worker (a shared filesystem).  The fold into the tracker runs in this
process, in capture order, while the workers decode the next chunks; at
most ``2 * workers`` chunks are in flight, so memory on both sides is
bounded by the chunk size.  Needs ``pip install 'finwait[dask]'``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from .chunks import Chunk, Part


class DaskMapper(AbstractContextManager["DaskMapper"]):
    """An ordered map of chunk decodings over a Dask cluster."""

    def __init__(self, address: str) -> None:
        import importlib

        dd: Any = importlib.import_module("dask.distributed")
        self.cluster: Any = None
        self.client: Any
        if address == "local" or address.startswith("local:"):
            n = int(address.split(":", 1)[1]) if ":" in address else None
            self.cluster = dd.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = dd.Client(self.cluster)
        else:
            self.client = dd.Client(address, timeout=30)
        self.workers = max(1, len(self.client.scheduler_info()["workers"]))

    def __call__(self, fn: Callable[[Chunk], Part], chunks: list[Chunk]) -> Iterator[Part]:
        ahead = 2 * self.workers
        pending = collections.deque(self.client.submit(fn, c, pure=False) for c in chunks[:ahead])
        nxt = len(pending)
        while pending:
            fut: Any = pending.popleft()
            part: Part = fut.result()
            fut.release()
            if nxt < len(chunks):
                pending.append(self.client.submit(fn, chunks[nxt], pure=False))
                nxt += 1
            yield part

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
