"""Congestion control: the interface the sender drives, and NewReno.

:class:`CongestionControl` is what ``sender.py`` calls: on each ACK of new
data, on entering and leaving fast recovery, on a DupAck in recovery, on a
retransmission timeout and after an idle period; it keeps ``cwnd`` and
``ssthresh`` and the loss-recovery bookkeeping the sender reads
(``dupacks``, ``in_recovery``, ``recover``).  The sender decides what counts
as a duplicate ACK (RFC 5681 §2, RFC 6675 §2; never a FIN) and does the
retransmitting; an algorithm only keeps the numbers.  ``ALGORITHMS`` maps
``Config.congestion_control`` names to implementations; another algorithm
(CUBIC, say) is one more class with the same methods.

:class:`NewReno` is RFC 5681 with NewReno fast recovery (RFC 6582):
byte-counted slow start and congestion avoidance, fast retransmit on the
third duplicate ACK, recovery until the ACK of everything outstanding when
loss was detected, and the loss window after an RTO.
"""

from __future__ import annotations

from typing import Protocol


class CongestionControl(Protocol):
    """What the sender needs of a congestion-control algorithm."""

    smss: int
    iw: int  # the initial window, bytes
    cwnd: int
    ssthresh: int
    dupacks: int  # DupAcks counted since the last ACK of new data
    in_recovery: bool
    recover: int  # RFC 6582 "recover": SND.MAX when recovery began

    def on_new_ack(self, acked: int) -> None: ...

    def enter_recovery(self, flight: int) -> None: ...

    def on_dupack_in_recovery(self) -> None: ...

    def on_partial_ack(self, acked: int) -> None: ...

    def on_full_ack(self, flight: int) -> None: ...

    def on_timeout(self, flight: int) -> None: ...

    def on_idle(self) -> None: ...


def initial_window(smss: int, segments: int | None = None) -> int:
    """RFC 5681 §3.1 IW, or ``segments``·SMSS when given (Linux: 10, RFC 6928)."""
    if segments is not None:
        return segments * smss
    if smss > 2190:
        return 2 * smss
    if smss > 1095:
        return 3 * smss
    return 4 * smss


class NewReno:
    __slots__ = ("cwnd", "dupacks", "in_recovery", "iw", "recover", "smss", "ssthresh")

    def __init__(self, smss: int, iw_segments: int | None = None) -> None:
        self.smss = smss
        self.iw = initial_window(smss, iw_segments)
        self.cwnd = self.iw
        self.ssthresh = 1 << 30  # "arbitrarily high" (§3.1)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = 0  # RFC 6582 "recover": SND.MAX when recovery began

    def on_new_ack(self, acked: int) -> None:
        """An ACK of new data outside recovery (§3.1)."""
        self.dupacks = 0
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.smss)  # slow start, RFC 3465 L=1
        else:
            self.cwnd += max(1, self.smss * self.smss // self.cwnd)

    def enter_recovery(self, flight: int) -> None:
        """Third duplicate ACK (§3.2 steps 2-3)."""
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self.cwnd = self.ssthresh + 3 * self.smss
        self.in_recovery = True

    def on_dupack_in_recovery(self) -> None:
        self.cwnd += self.smss  # §3.2 step 4: inflate

    def on_partial_ack(self, acked: int) -> None:
        """RFC 6582 §3.2 step 5: deflate by the amount acked, add back one SMSS."""
        self.cwnd = max(self.cwnd - acked + self.smss, self.smss)

    def on_full_ack(self, flight: int) -> None:
        """RFC 6582 §3.2 step 3: leave recovery."""
        self.cwnd = min(self.ssthresh, max(flight, self.smss) + self.smss)
        self.in_recovery = False
        self.dupacks = 0

    def on_timeout(self, flight: int) -> None:
        """§3.1, equation (4): loss window after an RTO."""
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self.cwnd = self.smss
        self.in_recovery = False
        self.dupacks = 0

    def on_idle(self) -> None:
        """§4.1: restart window after an idle period longer than the RTO."""
        self.cwnd = min(self.cwnd, self.iw)


class NewRenoAbc(NewReno):
    """NewReno with appropriate byte counting in slow start (RFC 3465) as
    Linux counts (``tcp_slow_start()``): cwnd grows by every byte an ACK
    newly covers, not by at most one SMSS, up to ssthresh.  A receiver that
    ACKs every second segment then doubles cwnd per round trip, as RFC 3465
    §2.1 intends; the Linux profile's algorithm."""

    __slots__ = ()

    def on_new_ack(self, acked: int) -> None:
        self.dupacks = 0
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + acked, max(self.ssthresh, self.cwnd + self.smss))
        else:
            self.cwnd += max(1, self.smss * self.smss // self.cwnd)


ALGORITHMS: dict[str, type[NewReno]] = {"newreno": NewReno, "newreno-abc": NewRenoAbc}


def make(name: str, smss: int, iw_segments: int | None) -> CongestionControl:
    """The algorithm ``name`` (a key of ``ALGORITHMS``) for a new connection."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r}") from None
    return cls(smss, iw_segments)
