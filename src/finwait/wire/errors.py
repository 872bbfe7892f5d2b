"""The wire layer's one error type."""

from __future__ import annotations


class ParseError(ValueError):
    """Malformed bytes: ``offset`` into the parsed buffer and a short ``reason``.

    The reason is a stable, short identifier-like phrase (``"truncated tcp
    header"``, ``"bad checksum"``) so callers can count drops by reason.
    """

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(f"{reason} (at offset {offset})")
        self.reason = reason
        self.offset = offset
