"""One direction of a simulated path: delay, bandwidth, queue, loss and damage.

A :class:`Link` decides what happens to each segment put on it, using its own
seeded streams (one per behaviour, see ``sim.rng``): a tail drop when the
bottleneck queue is full, serialization at the link's bandwidth in FIFO order,
random loss, corruption, an extra random delay for a fraction of segments (so
they arrive after later ones: reordering), and duplication.  It does not move
packets itself; :class:`finwait.sim.network.Network` schedules the arrivals it
returns.  Sizes are IP datagram sizes (RFC 791 / RFC 8200 header, RFC 9293
§3.1 header and options) so serialization and queue limits match a capture.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire.segment import Segment, TcpOptions
from .rng import Rng

LOSS = "loss"
QUEUE_FULL = "queue full"
BAD_CHECKSUM = "bad checksum"


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One direction's behaviour.  Probabilities are per segment, in [0, 1].

    ``bandwidth`` is in bits per second (None: infinitely fast, no queue);
    ``queue_bytes`` bounds the bytes waiting to be serialized (None:
    unbounded).  A reordered segment gets an extra delay uniform in
    ``[0, reorder_delay]``; None means the one-way delay (at least 1 ms).
    """

    delay: float = 0.0
    bandwidth: float | None = None
    queue_bytes: int | None = None
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_delay: float | None = None
    corrupt: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "dup", "reorder", "corrupt"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], not {p}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, not {self.delay}")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, not {self.bandwidth}")
        if self.queue_bytes is not None and self.queue_bytes <= 0:
            raise ValueError(f"queue_bytes must be positive, not {self.queue_bytes}")
        if self.reorder_delay is not None and self.reorder_delay < 0:
            raise ValueError(f"reorder_delay must not be negative, not {self.reorder_delay}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One copy's fate.  ``arrive`` is None when it is lost on the link;
    ``corrupt`` copies arrive damaged (the receiver's checksum catches them)."""

    arrive: float | None
    reason: str | None = None
    corrupt: bool = False
    duplicate: bool = False


def options_size(opts: TcpOptions) -> int:
    """Bytes of TCP options as encoded (RFC 9293 §3.2, RFC 7323, RFC 2018),
    padded to a multiple of four."""
    n = 0
    if opts.mss is not None:
        n += 4
    if opts.wscale is not None:
        n += 3
    if opts.sack_permitted:
        n += 2
    if opts.timestamps is not None:
        n += 10
    if opts.sack_blocks:
        n += 2 + 8 * len(opts.sack_blocks)
    n += sum(2 + len(data) for _, data in opts.unknown)
    return (n + 3) & ~3


def wire_size(seg: Segment) -> int:
    """The IP datagram size of ``seg``: IP header, TCP header, options, payload."""
    ip_header = 40 if ":" in seg.dst else 20
    return ip_header + 20 + options_size(seg.options) + len(seg.payload)


class Link:
    """One direction between two nodes; see the module docstring."""

    def __init__(self, config: LinkConfig, rng: Rng) -> None:
        self.config = config
        # Independent streams: enabling one behaviour must not reshuffle another.
        self._loss = rng.derive("loss")
        self._dup = rng.derive("dup")
        self._reorder = rng.derive("reorder")
        self._corrupt = rng.derive("corrupt")
        self._busy_until = 0.0  # when the transmitter finishes its FIFO queue
        self.sent = 0
        self.lost = 0
        self.queue_drops = 0

    def backlog(self, now: float) -> int:
        """Bytes queued but not yet serialized at ``now``."""
        bw = self.config.bandwidth
        if bw is None or self._busy_until <= now:
            return 0
        return int((self._busy_until - now) * bw / 8)

    def transmit(self, seg: Segment, now: float) -> list[Delivery]:
        """What becomes of ``seg`` put on the link at ``now``: one Delivery,
        or two when the link duplicates it."""
        cfg = self.config
        self.sent += 1
        size = wire_size(seg)
        serialization = 0.0
        depart = now
        if cfg.bandwidth is not None:
            if cfg.queue_bytes is not None and self.backlog(now) + size > cfg.queue_bytes:
                self.queue_drops += 1
                return [Delivery(None, QUEUE_FULL)]
            serialization = size * 8 / cfg.bandwidth
            depart = max(now, self._busy_until) + serialization
            self._busy_until = depart
        if self._loss.bernoulli(cfg.loss):
            self.lost += 1
            return [Delivery(None, LOSS)]
        arrive = depart + cfg.delay
        if self._reorder.bernoulli(cfg.reorder):
            extra = cfg.reorder_delay if cfg.reorder_delay is not None else max(cfg.delay, 0.001)
            arrive += self._reorder.uniform(0.0, extra)
        corrupt = self._corrupt.bernoulli(cfg.corrupt)
        first = Delivery(arrive, BAD_CHECKSUM if corrupt else None, corrupt)
        if not self._dup.bernoulli(cfg.dup):
            return [first]
        # The copy follows the original through the same transmitter.
        return [first, Delivery(arrive + serialization, None, False, True)]

    def flip_bit(self, packet: bytes, start: int) -> bytes:
        """``packet`` with one bit flipped at or after byte ``start``."""
        nbits = (len(packet) - start) * 8
        if nbits <= 0:
            raise ValueError("nothing to corrupt after the given offset")
        bit = start * 8 + self._corrupt.randrange(nbits)
        damaged = bytearray(packet)
        damaged[bit // 8] ^= 0x80 >> (bit % 8)
        return bytes(damaged)
