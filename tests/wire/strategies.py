"""Hypothesis strategies for wire tests: segments, option sets, valid packets."""

from __future__ import annotations

from hypothesis import strategies as st

from finwait.wire.segment import Segment, TcpOptions
from finwait.wire.tcp import encode_options

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

v4_addresses = st.ip_addresses(v=4).map(str)
v6_addresses = st.ip_addresses(v=6).map(str)


def _interpreted(kind: int, size: int) -> bool:
    """Would decode_options interpret this kind/length as a known option?"""
    return (
        (kind == 2 and size == 4)
        or (kind == 3 and size == 3)
        or (kind == 4 and size == 2)
        or (kind == 8 and size == 10)
        or (kind == 5 and size >= 10 and (size - 2) % 8 == 0)
    )


unknown_options = st.tuples(st.integers(2, 255), st.binary(max_size=8)).filter(
    lambda kd: not _interpreted(kd[0], len(kd[1]) + 2)
)


def _fits(opts: TcpOptions) -> bool:
    try:
        return len(encode_options(opts)) <= 40
    except ValueError:
        return False


options = st.builds(
    TcpOptions,
    mss=st.none() | u16,
    wscale=st.none() | st.integers(0, 255),
    sack_permitted=st.booleans(),
    timestamps=st.none() | st.tuples(u32, u32),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=3).map(tuple),
    unknown=st.lists(unknown_options, max_size=2).map(tuple),
).filter(_fits)


@st.composite
def segments(draw: st.DrawFn, family: int | None = None) -> Segment:
    fam = family if family is not None else draw(st.sampled_from([4, 6]))
    addrs = v4_addresses if fam == 4 else v6_addresses
    return Segment(
        src=draw(addrs),
        dst=draw(addrs),
        sport=draw(u16),
        dport=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        flags=draw(st.integers(0, 255)),
        window=draw(u16),
        payload=draw(st.binary(max_size=64) | st.binary(min_size=1000, max_size=1460)),
        options=draw(st.just(TcpOptions()) | options),
        urgent=draw(u16),
    )
