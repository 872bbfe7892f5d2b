"""The release explanation: the seed's numbers with the seed's reasons, and the
variants (half-close bytes, three-segment, simultaneous, RST, bare FIN, lost
and retransmitted FINs, incomplete release, raw numbers, 2**32 wrap)."""

from __future__ import annotations

import dataclasses

import pytest
from render_traces import (
    B_ISN,
    bare_fin,
    lost_fin,
    opened,
    reset,
    seed_release,
    simultaneous,
    three_way,
)

from finwait.render.explain import (
    ACK_OF_FIRST_FIN,
    BARE_FIN,
    FINAL_ACK,
    FIRST_FIN,
    REACK,
    RESET,
    RETRANSMITTED_FIN,
    SECOND_FIN,
    SIMULTANEOUS_FIN,
    THREE_WAY_FIN,
    explain_release,
    release_steps,
    release_summary,
)
from finwait.tcp.state import State
from finwait.trace import LOST, Trace
from finwait.wire.segment import ACK, FIN, PSH


def _roles(tr: Trace) -> list[str]:
    return [s.role for s in release_steps(tr)]


def test_seed_four_steps_with_the_seeds_numbers_and_reasons(seed: Trace) -> None:
    steps = release_steps(seed)
    assert [s.role for s in steps] == [FIRST_FIN, ACK_OF_FIRST_FIN, SECOND_FIN, FINAL_ACK]
    first, ack1, fin2, final = (s.sentence for s in steps)
    assert first.startswith("B→A FIN,ACK seq=50 ack=248:")
    assert "B has sent 49 bytes (1..49)" in first
    assert "received 247 bytes (1..247) from A" in first
    assert "its FIN takes sequence number 50" in first
    assert ack1.startswith("A→B ACK seq=248 ack=51:")
    assert "FIN consumed one sequence number, so A acknowledges 51" in ack1
    assert "a pure ACK consumes none" in ack1 and "half-closed" in ack1
    assert fin2.startswith("A→B FIN,ACK seq=248 ack=51:")
    assert "its ACK consumed no number, so its FIN is still seq 248" in fin2
    assert final.startswith("B→A ACK seq=51 ack=249:")
    assert "A's FIN consumed one number, so B acknowledges 249" in final
    assert "TIME-WAIT (2×MSL)" in final and "active closer" in final
    assert [s.event.segment.flags for s in steps] == [FIN | ACK, ACK, FIN | ACK, ACK]


def test_seed_text_has_steps_in_order_and_says_it_completed(seed: Trace) -> None:
    text = explain_release(seed)
    order = [text.index(f"{i}. [") for i in range(1, 5)]
    assert order == sorted(order)
    assert "The release completed" in text
    assert "B TIME-WAIT" not in text  # the trace ends with B CLOSED after 2×MSL
    assert max(len(line) for line in text.splitlines()[2:]) <= 78


def test_half_close_bytes_move_the_second_fin() -> None:
    steps = release_steps(seed_release(half_close=100).trace)
    assert [s.role for s in steps] == [FIRST_FIN, ACK_OF_FIRST_FIN, SECOND_FIN, FINAL_ACK]
    assert "A sent 100 bytes (248..347) during the half-close" in steps[2].sentence
    assert "its FIN has seq 348" in steps[2].sentence
    assert "so B acknowledges 349" in steps[3].sentence


def test_three_segment_close() -> None:
    steps = release_steps(three_way().trace)
    assert [s.role for s in steps] == [FIRST_FIN, THREE_WAY_FIN, FINAL_ACK]
    assert steps[1].sentence.startswith("A→B FIN,ACK seq=248 ack=51:")
    assert "three-segment close" in steps[1].sentence
    assert "so its FIN takes 248" in steps[1].sentence


def test_simultaneous_close() -> None:
    steps = release_steps(simultaneous().trace)
    assert [s.role for s in steps] == [FIRST_FIN, SIMULTANEOUS_FIN, ACK_OF_FIRST_FIN, FINAL_ACK]
    assert "ack is still 50" in steps[1].sentence and "CLOSING" in steps[1].sentence
    assert "A's own FIN took 248, so this ACK's seq is 249" in steps[2].sentence
    assert "both wait in TIME-WAIT" in steps[3].sentence


def test_reset_instead_of_fin() -> None:
    tr = reset().trace
    steps = release_steps(tr)
    assert [s.role for s in steps] == [RESET]
    assert "aborts instead of releasing" in steps[0].sentence
    assert "exactly the next number B expects" in steps[0].sentence
    assert release_summary(tr).startswith("The connection was reset")


def test_reset_at_wrong_sequence_number_calls_for_challenge_ack() -> None:
    s = opened()
    s.send("A", ACK | 0x04, seq=s.nxt["A"] + 10)  # RST,ACK 10 bytes ahead
    (step,) = release_steps(s.trace)
    assert "challenge ACK" in step.sentence and "RFC 5961" in step.sentence


def test_fin_without_ack_is_not_a_close() -> None:
    tr = bare_fin().trace
    steps = release_steps(tr)
    assert [s.role for s in steps] == [BARE_FIN]
    assert "not a close" in steps[0].sentence
    assert "malicious" in steps[0].sentence and "ignored" in steps[0].sentence
    assert "B dropped it (fin without ack)" in steps[0].sentence
    assert "completed" not in release_summary(tr)


def test_lost_then_retransmitted_fin_and_incomplete_release() -> None:
    tr = lost_fin().trace
    steps = release_steps(tr)
    assert [s.role for s in steps] == [FIRST_FIN, RETRANSMITTED_FIN, ACK_OF_FIRST_FIN]
    assert "lost on the way" in steps[0].sentence
    assert "same sequence number 50" in steps[1].sentence
    summary = release_summary(tr)
    assert summary.startswith("The release did not complete")
    assert "A never sent its FIN" in summary and "CLOSE-WAIT" in summary


def test_lost_final_ack_retransmitted_fin_is_acked_again_in_time_wait() -> None:
    s = opened()
    s.send("B", FIN | ACK)
    s.send("A", ACK)
    s.send("A", FIN | ACK)
    s.state("B", State.TIME_WAIT)
    s.send("B", ACK, fate=LOST)
    s.send("A", FIN | ACK, seq=s.nxt["A"] - 1)
    s.send("B", ACK)
    steps = release_steps(s.trace)
    assert [x.role for x in steps] == [
        FIRST_FIN,
        ACK_OF_FIRST_FIN,
        SECOND_FIN,
        FINAL_ACK,
        RETRANSMITTED_FIN,
        REACK,
    ]
    assert "restarts its 2×MSL timer" in steps[-1].sentence


def test_unacknowledged_fin_is_reported() -> None:
    s = opened()
    s.send("B", FIN | ACK)
    summary = release_summary(s.trace)
    assert "B's FIN (seq 50) was never acknowledged" in summary


def test_no_release_at_all() -> None:
    s = opened()
    s.send("A", PSH | ACK, b"more")
    assert release_steps(s.trace) == []
    assert "No FIN was seen" in explain_release(s.trace)


def test_raw_numbers(seed: Trace) -> None:
    first = release_steps(seed, relative=False)[0].sentence
    assert first.startswith(f"B→A FIN,ACK seq={B_ISN + 50} ack=1248:")
    assert "(5001..5049)" in first and "(1001..1247)" in first


def test_numbers_survive_the_32_bit_wrap(seed: Trace) -> None:
    data = seed.to_json()
    data["endpoints"]["A"]["isn"] = 0xFFFFFF00  # A's data wraps past 2**32
    data["endpoints"]["B"]["isn"] = 0xFFFFFFF0
    wrapped = Trace.from_json(data)
    assert [s.sentence for s in release_steps(wrapped)] == [s.sentence for s in release_steps(seed)]


def test_release_step_is_frozen(seed: Trace) -> None:
    step = release_steps(seed)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.role = "other"  # type: ignore[misc]
