"""SYN cookies: answering a SYN without keeping state (RFC 4987 §3.6).

Read RFC 4987 §3.6, D. J. Bernstein's "SYN cookies" note, and Linux
``net/ipv4/syncookies.c`` (``secure_tcp_syn_cookie``,
``cookie_init_timestamp``), whose layout this follows.  When a listener's
SYN queue is full, the SYN,ACK's ISS is the cookie::

    ISS = H1(4-tuple) + IRS + (count << 24) + ((H2(4-tuple, count) + mss_index) mod 2**24)

``count`` is a 60-second counter (a cookie is accepted for the period it was
made in and the next, Linux's MAX_SYNCOOKIE_AGE), ``mss_index`` picks one of
four MSS values (Linux's ``msstab``), and H1/H2 are keyed hashes (BLAKE2s;
Linux uses SipHash) with the host's secret, so an off-path attacker cannot
forge one: a random ACK passes with probability 2 * 4 / 2**32 = 2**-29.
Window scale and SACK-permitted do not fit in the ISS; when the peer's SYN
carried timestamps they ride in the low six bits of our TSval, which the
peer echoes in TSecr (Linux does the same).  Without timestamps the cookie
connection has no window scaling and no SACK: the documented cost of being
stateless.  Nothing here keeps state or reads a clock.
"""

from __future__ import annotations

import hashlib

from ..wire.segment import ACK, SYN, Segment, TcpOptions
from . import seqnum

PERIOD = 60.0  # seconds per counter tick (Linux tcp_cookie_time(): jiffies / (60 * HZ))
MAX_AGE = 2  # counter ticks a cookie stays valid (Linux MAX_SYNCOOKIE_AGE)
_COOKIEBITS = 24
_COOKIEMASK = (1 << _COOKIEBITS) - 1
_COUNTMASK = 0xFF  # the counter's bits above the 24 cookie bits
# Linux msstab (IPv4) and msstab (IPv6): the MSS values a cookie can carry.
MSS_V4 = (536, 1300, 1440, 1460)
MSS_V6 = (1220, 1420, 1440, 8940)
_TSBITS = 6
_TSMASK = (1 << _TSBITS) - 1
_NO_WSCALE = 0x0F


def counter(now: float) -> int:
    return int(now // PERIOD) & _COUNTMASK


def mss_index(mss: int | None, v6: bool) -> int:
    """The largest table MSS not above the peer's (Linux cookie_v4_init_sequence)."""
    table = MSS_V6 if v6 else MSS_V4
    want = mss if mss else 536
    for i in range(len(table) - 1, 0, -1):
        if want >= table[i]:
            return i
    return 0


class SynCookies:
    """Cookie making and checking with one secret (one per Host)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = hashlib.blake2s(key, digest_size=32, person=b"cookie").digest()

    def _hash(self, count: int, four_tuple: tuple[str, int, str, int]) -> int:
        laddr, lport, raddr, rport = four_tuple
        h = hashlib.blake2s(key=self._key, digest_size=4)
        h.update(f"{count}|{laddr}|{lport}|{raddr}|{rport}".encode())
        return int.from_bytes(h.digest(), "big")

    def make(self, four_tuple: tuple[str, int, str, int], irs: int, count: int, data: int) -> int:
        """The cookie ISS for a SYN with sequence number ``irs`` on ``four_tuple``
        (local addr, local port, remote addr, remote port)."""
        count &= _COUNTMASK
        h1 = self._hash(-1, four_tuple)
        h2 = self._hash(count, four_tuple)
        return (h1 + irs + (count << _COOKIEBITS) + ((h2 + data) & _COOKIEMASK)) & seqnum.MASK

    def check(
        self, four_tuple: tuple[str, int, str, int], irs: int, iss: int, now: float
    ) -> int | None:
        """The MSS index carried by cookie ``iss``, or None when it is forged or stale."""
        cookie = (iss - self._hash(-1, four_tuple) - irs) & seqnum.MASK
        made = cookie >> _COOKIEBITS
        age = (counter(now) - made) & _COUNTMASK
        if age >= MAX_AGE:
            return None
        data = (cookie - self._hash(made, four_tuple)) & _COOKIEMASK
        return data if data < len(MSS_V4) else None

    # -- the SYN,ACK and its return ------------------------------------------

    def syn_ack(
        self,
        syn: Segment,
        now: float,
        *,
        mss: int,
        window: int,
        wscale: int | None,
        ts_now: int | None,
    ) -> Segment:
        """The stateless SYN,ACK answering ``syn``.  ``wscale`` is the shift we
        offer (None: no scaling), ``ts_now`` our current TSval (None: no
        timestamps).  Options follow the peer's SYN, as for a queued one."""
        opts = syn.options
        v6 = ":" in syn.dst
        four = (syn.dst, syn.dport, syn.src, syn.sport)
        iss = self.make(four, syn.seq, counter(now), mss_index(opts.mss, v6))
        ts: tuple[int, int] | None = None
        sack = False
        offer: int | None = None
        if opts.timestamps is not None and ts_now is not None:
            # Linux cookie_init_timestamp(): WS in bits 0-3 (0xF: none),
            # SACK-permitted in bit 4; never ahead of the real clock.
            peer_ws = opts.wscale if opts.wscale is not None and wscale is not None else None
            low = (_NO_WSCALE if peer_ws is None else min(peer_ws, 14)) | (
                0x10 if opts.sack_permitted else 0
            )
            tsval = (ts_now & ~_TSMASK) | low
            if seqnum.lt(ts_now, tsval):
                tsval = seqnum.add(tsval, -(1 << _TSBITS))
            ts = (tsval & seqnum.MASK, opts.timestamps[0])
            sack = opts.sack_permitted
            offer = wscale if peer_ws is not None else None
        return Segment(
            syn.dst,
            syn.src,
            syn.dport,
            syn.sport,
            iss,
            seqnum.add(syn.seq, 1),
            SYN | ACK,
            min(window, 0xFFFF),  # never scaled on a SYN (RFC 7323 §2.2)
            b"",
            TcpOptions(mss=mss, wscale=offer, sack_permitted=sack, timestamps=ts),
        )

    def syn_from_ack(self, ack: Segment, now: float) -> Segment | None:
        """For an ACK that returns a valid cookie: the SYN it answered, rebuilt
        with the options the cookie remembers; None when the cookie fails."""
        irs = seqnum.add(ack.seq, -1)
        iss = seqnum.add(ack.ack, -1)
        four = (ack.dst, ack.dport, ack.src, ack.sport)
        idx = self.check(four, irs, iss, now)
        if idx is None:
            return None
        table = MSS_V6 if ":" in ack.dst else MSS_V4
        wscale: int | None = None
        sack = False
        ts: tuple[int, int] | None = None
        peer_ts = ack.options.timestamps
        if peer_ts is not None:
            low = peer_ts[1] & _TSMASK
            wscale = None if low & 0x0F == _NO_WSCALE else low & 0x0F
            sack = bool(low & 0x10)
            ts = (peer_ts[0], 0)
        opts = TcpOptions(mss=table[idx], wscale=wscale, sack_permitted=sack, timestamps=ts)
        return Segment(ack.src, ack.dst, ack.sport, ack.dport, irs, 0, SYN, ack.window, b"", opts)
