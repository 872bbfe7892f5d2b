"""docs/json.md stays true: its example is exactly what Trace.to_json emits
for the trace it describes, and it explains as the seed does."""

from __future__ import annotations

import json
import re
from pathlib import Path

from finwait.render.explain import FINAL_ACK, FIRST_FIN, release_steps
from finwait.trace import Trace

DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"


def _example() -> dict[str, object]:
    block = re.search(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None
    data: dict[str, object] = json.loads(block.group(1))
    return data


def test_example_round_trips_through_trace() -> None:
    data = _example()
    trace = Trace.from_json(data)
    out = trace.to_json()
    assert out["events"] == data["events"]
    assert out["endpoints"] == data["endpoints"]
    assert set(data) == {"endpoints", "relative", "events", "summary"}


def test_example_is_the_seeds_release() -> None:
    steps = release_steps(Trace.from_json(_example()))
    assert steps[0].role == FIRST_FIN and steps[-1].role == FINAL_ACK
    heads = [s.sentence.split(":")[0] for s in steps]
    assert heads == [
        "B→A FIN,ACK seq=50 ack=248",
        "A→B ACK seq=248 ack=51",
        "A→B FIN,ACK seq=248 ack=51",
        "B→A ACK seq=51 ack=249",
    ]
