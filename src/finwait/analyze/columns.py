"""The tracker's state, as typed columns.

:class:`DirColumns` holds what the tracker knows per connection *and
direction*: row ``2 * conn + d`` (``d`` 0: from the flow's first endpoint,
1: from the other); :meth:`DirColumns.pairs` gives the same columns as
``(n, 2)`` views, one row per connection, for the classifier.
:class:`ConnColumns` holds what is per connection.  Each field's default is
the value of a row nobody has written yet; ``NONE`` ("no frame") is larger
than any frame number, so ``min``/``argmin`` pick the first real frame.

Rows of a 2-D table are gathered with ``np.take(table, idx, axis=0)``, here
and in the tracker, the classifier, the JSON writer and the decoder: numpy's
fancy indexing (``table[idx]``) copies each row by an iterator step of its
own, 2-7 times slower (a row of 4 words: 7 times).
"""

# ruff: noqa: RUF009  (`_col` returns a `dataclasses.field` with a default factory)

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
NONE = 1 << 62  # "no frame"


def _col(initial: float, doc: str, dtype: type = np.int64) -> Any:
    return field(
        default_factory=lambda: np.zeros(0, dtype=dtype),
        metadata={"initial": initial, "doc": doc},
    )


def _grow(arr: npt.NDArray[Any], rows: int, used: int) -> npt.NDArray[Any]:
    """``arr`` with room for ``rows`` rows (when it has fewer), its first
    ``used`` kept.  The rows after them are left as they are (new ones
    uninitialised): the tracker fills a row when it starts using it
    (:meth:`_Columns.clear`), so neither growth nor compaction writes the
    capacity not in use, and the pages of that capacity are not touched."""
    if arr.shape[0] >= rows:
        return arr
    out = np.empty((rows, *arr.shape[1:]), dtype=arr.dtype)
    out[:used] = arr[:used]
    return out


def _keep(arr: npt.NDArray[Any], idx: npt.NDArray[np.int64]) -> None:
    """Rows ``idx`` (in order) moved to the front of ``arr``, in place (the
    rows after them are stale until used again: :func:`_grow`).  The
    capacity stays, so the rows added next need no new array."""
    arr[: idx.size] = np.take(arr, idx, axis=0)  # (rows taken whole: see the module's note)


class _Columns:
    """Growth and slicing shared by both tables (dataclasses of arrays)."""

    def grow(self, rows: int, used: int) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, _grow(getattr(self, f.name), rows, used))

    def clear(self, lo: int, hi: int) -> None:
        """Rows ``lo`` .. ``hi`` - 1 as never written (their initial values)."""
        for f in fields(self):  # type: ignore[arg-type]
            getattr(self, f.name)[lo:hi] = f.metadata["initial"]

    def keep(self, idx: npt.NDArray[np.int64]) -> None:
        """Only rows ``idx`` (in order), in place (the capacity stays:
        :func:`_keep`)."""
        for f in fields(self):  # type: ignore[arg-type]
            _keep(getattr(self, f.name), idx)

    def rows(self, idx: npt.NDArray[np.int64]) -> Any:
        """A table of the same kind holding rows ``idx`` (copies)."""
        out = type(self)()
        for f in fields(self):  # type: ignore[arg-type]
            setattr(out, f.name, np.take(getattr(self, f.name), idx, axis=0))
        return out


@dataclass(eq=False, repr=False)
class DirColumns(_Columns):
    """Per connection and direction (row ``2 * conn + d``)."""

    pkts: I64 = _col(0, "packets sent")
    bytes: I64 = _col(0, "new payload bytes sent (retransmissions excluded)")
    retrans: I64 = _col(0, "segments with payload below the highest sequence sent")
    base: I64 = _col(-1, "sequence number that is relative 0 (the ISN)")
    maxend: I64 = _col(-1, "highest relative sequence end sent so far")
    last_rel: I64 = _col(-1, "last relative number seen, modulo 2**32 (for unwrapping)")
    epoch: I64 = _col(0, "4 GiB wraps of the relative numbers so far")
    syn_frame: I64 = _col(NONE, "first SYN without ACK")
    syn_seq: I64 = _col(0, "its sequence number")
    syn_count: I64 = _col(0, "SYNs without ACK sent")
    sa_frame: I64 = _col(NONE, "first SYN-ACK")
    sa_seq: I64 = _col(0, "its sequence number")
    hs_frame: I64 = _col(NONE, "first ACK of the peer's SYN-ACK")
    fin_frame: I64 = _col(NONE, "first FIN with ACK")
    fin_seq: I64 = _col(0, "its sequence number")
    fin_ack: I64 = _col(0, "its acknowledgment number")
    fin_plen: I64 = _col(0, "its payload length")
    fin_pos: I64 = _col(0, "relative number the FIN occupies")
    fin_count: I64 = _col(0, "FINs with ACK at that number (1 + retransmissions)")
    fin_ts: F64 = _col(0.0, "time of the first FIN", np.float64)
    fack_frame: I64 = _col(NONE, "first segment from the peer acknowledging this side's FIN")
    fack_seq: I64 = _col(0, "its sequence number")
    fack_ack: I64 = _col(0, "its acknowledgment number")
    fack_flags: I64 = _col(0, "its flags")
    fack_plen: I64 = _col(0, "its payload length")
    fack_ts: F64 = _col(0.0, "its time", np.float64)
    rst_first: I64 = _col(NONE, "first RST taken as the reset (at the sender's next number)")
    rst_last: I64 = _col(-1, "last RST")
    rst_count: I64 = _col(0, "RSTs sent")
    anyrst_frame: I64 = _col(NONE, "first RST, whatever else it carries")
    anyfin_frame: I64 = _col(NONE, "first FIN, with or without ACK")
    hc_bytes: I64 = _col(0, "new payload sent after the peer's FIN")
    ackmax: I64 = _col(
        -1, "highest point of this side's sequence the peer acknowledged (capped at its FIN)"
    )

    def pairs(self, n: int) -> DirColumns:
        """The first ``n`` connections' columns as ``(n, 2)`` views."""
        out = DirColumns()
        for f in fields(self):
            setattr(out, f.name, getattr(self, f.name)[: 2 * n].reshape(n, 2))
        return out


@dataclass(eq=False, repr=False)
class ConnColumns(_Columns):
    """Per connection."""

    flow: I64 = _col(-1, "flow (4-tuple) id")
    first_frame: I64 = _col(0, "frame of the first packet")
    last_frame: I64 = _col(0, "frame of the last packet")
    first_ts: F64 = _col(0.0, "time of the first packet", np.float64)
    last_ts: F64 = _col(0.0, "time of the last packet", np.float64)
    first_dir: I64 = _col(0, "direction of the first packet")
    first_flags: I64 = _col(0, "flags of the first packet")
    tunnel: I64 = _col(0, "tunnel stack of the first packet (capture.decode.Tunnels id)")

    def head(self, n: int) -> ConnColumns:
        out = ConnColumns()
        for f in fields(self):
            setattr(out, f.name, getattr(self, f.name)[:n])
        return out
