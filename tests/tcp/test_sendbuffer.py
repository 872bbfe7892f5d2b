"""The send buffer (tcp/buffers.py SendBuffer) behaves as the bytearray it
replaced: the same bytes for every slice, length and truth value after any
sequence of sends, acknowledgements and clears."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from finwait.tcp.buffers import SendBuffer

SIZES = st.sampled_from([0, 1, 7, 100, 1448, 65535, 65536, 65537, 200_000])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), SIZES, st.booleans()),
        st.tuples(st.just("ack"), st.integers(0, 300_000), st.booleans()),
        st.tuples(st.just("read"), st.integers(0, 300_000), st.integers(0, 300_000)),
        st.tuples(st.just("clear"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(0, 255))
def test_same_bytes_as_a_bytearray(ops: list[tuple[str, int, object]], seed: int) -> None:
    buf, ref = SendBuffer(), bytearray()
    counter = seed
    for op, a, b in ops:
        if op == "send":
            data = bytes((counter + i) & 0xFF for i in range(min(a, 251))) * (a // 251 + 1)
            data = data[:a]
            counter += 1
            buf += bytearray(data) if b else data
            ref += data
        elif op == "ack":
            n = a if b else min(a, len(ref))
            del buf[:n]
            del ref[:n]
        elif op == "read":
            i, j = min(a, b), max(a, b)
            got = buf[i:j]
            assert type(got) is bytes
            assert got == bytes(ref[i:j])
        else:
            buf.clear()
            ref.clear()
        assert len(buf) == len(ref)
        assert bool(buf) == bool(ref)
        assert buf[0 : len(ref)] == bytes(ref)


def test_a_send_is_not_copied_and_later_changes_do_not_leak() -> None:
    big = bytes(range(256)) * 512  # 128 KB: kept as it is
    buf = SendBuffer()
    buf += big
    assert buf[0 : len(big)] is big
    mutable = bytearray(b"x" * 70_000)
    buf += mutable
    mutable[:] = b"y" * 70_000  # the caller's buffer changes after send()
    assert buf[len(big) : len(big) + 70_000] == b"x" * 70_000
