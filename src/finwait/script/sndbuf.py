"""How much of a write() Linux queues under SO_SNDBUF, and when a blocked
writer wakes: the engine target's model of Linux's send-buffer accounting.

``tcp_sendmsg_locked()`` fills the write queue one buffer (skb) at a time, a
buffer growing to the size goal (``tcp_xmit_size_goal()``: half the peer's
largest window, at most a GSO packet, in whole segments).  A new buffer is
started only while the queued bytes are below ``sk_sndbuf``, so a write
overshoots the limit by up to one buffer.  Each time a buffer is full,
write() sends: everything the window allows once more than half the peer's
largest window was written since the last push (``forced_push()``), else one
TSO piece of the buffer if it is the first unsent one (``tcp_push_one()``;
a piece is ``tcp_tso_segs()``: at least ``tcp_min_tso_segs`` segments, more
at high pacing rates).  A buffer sent in part is split (``tso_fragment()``):
its unsent rest is the last buffer again, and grows back.  A writer that
found no room sleeps until an ACK frees enough: ``sk_stream_write_space()``
wakes it when the free space is at least half of what is queued
(``sk_stream_wspace() >= sk_stream_min_wspace()``), at most two thirds of
``sk_sndbuf``; ``tcp_poll()`` reports POLLOUT on the same test.

Linux counts each buffer's ``truesize``, its payload plus about a kilobyte
of metadata (per buffer and per TSO piece sent); this model counts payload
only, so it wakes a writer somewhat earlier than the kernel does.  Without
SO_SNDBUF Linux grows ``sk_sndbuf`` with the congestion window
(``tcp_sndbuf_expand()``), which is not modelled: the engine target then
keeps ``Config.send_buffer`` as a plain limit.
"""

from __future__ import annotations

from dataclasses import dataclass

GSO_MAX = 65536 - 1 - 320  # sk_gso_max_size - 1 - MAX_TCP_HEADER
GSO_MAX_SEGS = 65535
TCP_MSS_DEFAULT = 536
PACING_SS_RATIO = 2.0  # net.ipv4.tcp_pacing_ss_ratio = 200 %
PACING_CA_RATIO = 1.2  # net.ipv4.tcp_pacing_ca_ratio = 120 %
PACING_SHIFT = 10  # sk_pacing_shift: a TSO piece is ~1 ms of the pacing rate
TSO_RTT_LOG = 9  # net.ipv4.tcp_tso_rtt_log


def size_goal(mss: int, max_window: int) -> int:
    """``tcp_xmit_size_goal()`` with ``tcp_bound_to_half_wnd()``."""
    cutoff = max_window >> 1 if max_window > TCP_MSS_DEFAULT else max_window
    goal = min(GSO_MAX, cutoff) if cutoff > 0 else GSO_MAX
    return max(goal // mss * mss, mss)


def tso_piece(mss: int, cwnd: int, ssthresh: int, srtt: float | None,
              min_rtt: float | None, min_tso_segs: int) -> int:  # fmt: skip
    """``tcp_tso_segs()`` in bytes: ``tcp_tso_autosize()`` of the pacing
    rate (``tcp_update_pacing_rate()``: cwnd/SRTT times 200 % in slow start,
    120 % after), at least ``tcp_min_tso_segs`` segments."""
    if not srtt:
        return GSO_MAX_SEGS * mss  # no RTT yet: Linux's initial rate is unbounded
    ratio = PACING_SS_RATIO if cwnd < ssthresh // 2 else PACING_CA_RATIO
    rate = ratio * cwnd / srtt  # bytes per second
    size = int(rate) >> PACING_SHIFT
    r = int((min_rtt if min_rtt is not None else srtt) * 1e6) >> TSO_RTT_LOG
    if r < 32:
        size += GSO_MAX >> r  # short paths: bigger pieces
    segs = min(size // mss, GSO_MAX_SEGS)
    return max(segs, min_tso_segs) * mss


def writable(sndbuf: int, queued: int) -> bool:
    """``__sk_stream_is_writeable()``: free space at least half the queue."""
    return queued < sndbuf and sndbuf - queued >= queued >> 1


@dataclass
class SendQueue:
    """One socket's write queue: what the last buffer holds unsent, what was
    written since the last push, and whether a writer sleeps."""

    sndbuf: int  # sk_sndbuf: twice the SO_SNDBUF value
    tail: int = 0  # unsent bytes of the last buffer (0: none to grow)
    since_push: int = 0  # write_seq - pushed_seq
    asleep: bool = False  # a writer found no room and waits to be woken

    def fill(self, n: int, queued: int, unsent: int, room: int, goal: int, piece: int,
             half_wnd: int) -> int:  # fmt: skip
        """How many of ``n`` bytes one write() call queues now, given the
        bytes queued and not acknowledged, of which ``unsent`` are not sent,
        and the bytes the windows let go now (``room``).  Sets ``asleep``
        when the writer has to wait for more."""
        if self.asleep:
            if not writable(self.sndbuf, queued):
                return 0
            self.asleep = False
        tail = min(self.tail, unsent)  # what was sent went from its front
        take = 0
        while take < n:
            if tail == 0 or tail >= goal:
                if queued >= self.sndbuf:
                    self.asleep = True
                    break
                tail = 0  # a new buffer
            copy = min(goal - tail, n - take)
            tail += copy
            unsent += copy
            queued += copy
            take += copy
            self.since_push += copy
            if take == n:
                break
            if self.since_push > half_wnd:  # forced_push(): all the window allows
                self.since_push = 0
                sent = min(room, unsent)
            elif unsent == tail:  # tcp_push_one(): one piece of this buffer
                sent = min(piece, room, tail)
            else:
                continue
            room -= sent
            unsent -= sent
            tail = min(tail, unsent)
        self.since_push = 0  # tcp_push() at the end, or before sleeping
        self.tail = tail
        return take
