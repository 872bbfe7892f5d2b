"""Differential test: header prediction on and off give the same run.

The header-prediction shortcut (``Config.header_prediction``,
``Connection._predicted``) may only decide that a segment needs none of the
checks of RFC 9293 §3.10.7.4 steps one to four; what happens to the segment
is the full path's own code.  This test holds it to that: randomized
simulator scenarios (loss up to 20 %, duplication, reordering, corruption,
bandwidth and delay, SACK / timestamps / window scaling / delayed ACK on and
off, the Linux profile (quick ACKs, IW10) or not, every closer, half-close
with data, aborts) are each run twice, with the
shortcut on and off, and must put the same segments on the wire in the same
order with the same fates, go through the same states and count the same
things.  ``FINWAIT_DIFF_RUNS`` sets the number of scenarios (default 500).
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from finwait.sim.rng import Rng
from finwait.sim.scenario import ScenarioSpec, run_scenario

RUNS = int(os.environ.get("FINWAIT_DIFF_RUNS", "500"))
BATCHES = 10


def random_spec(rng: Rng, seed: int) -> ScenarioSpec:
    closer = ("client", "server", "both")[rng.randrange(3)]
    abort = ("client", "server")[rng.randrange(2)] if rng.bernoulli(0.1) else None
    bandwidth = None
    queue = None
    if rng.bernoulli(0.5):
        bandwidth = rng.uniform(0.5, 100.0)
        queue = None if rng.bernoulli(0.5) else 2_000 + rng.randrange(30_000)
    return ScenarioSpec(
        client_bytes=rng.randrange(40_000),
        server_bytes=rng.randrange(40_000),
        half_close_bytes=0 if closer == "both" else rng.randrange(4_000),
        closer=closer,
        abort=abort,
        prompt_close=rng.bernoulli(0.5),
        request_response=rng.bernoulli(0.2),
        loss=rng.uniform(0.0, 0.2) if rng.bernoulli(0.8) else 0.0,
        dup=rng.uniform(0.0, 0.1) if rng.bernoulli(0.5) else 0.0,
        reorder=rng.uniform(0.0, 0.2) if rng.bernoulli(0.5) else 0.0,
        corrupt=rng.uniform(0.0, 0.05) if rng.bernoulli(0.3) else 0.0,
        delay_ms=rng.uniform(0.5, 50.0),
        bandwidth_mbps=bandwidth,
        queue_bytes=queue,
        mss=(536, 1000, 1460)[rng.randrange(3)],
        sack=rng.bernoulli(0.6),
        timestamps=rng.bernoulli(0.6),
        window_scaling=rng.bernoulli(0.6),
        delayed_ack=rng.bernoulli(0.7),
        recv_buffer=(4_096, 16_384, 65_535, 262_144)[rng.randrange(4)],
        linux_profile=rng.bernoulli(0.3),
        seed=seed,
        msl=2.0,  # 4 s TIME-WAIT: same code path, shorter virtual runs
    )


def _signature(spec: ScenarioSpec) -> tuple[list[object], dict[str, object]]:
    res = run_scenario(spec)
    # Segment events (time, ends, the segment field for field, fate and
    # reason) and state events (time, host, state) in trace order.
    return list(res.trace.events), res.summary


def first_difference(spec: ScenarioSpec) -> str | None:
    """None when the two runs agree, else a description of the first difference."""
    on_wire, on_summary = _signature(replace(spec, header_prediction=True))
    off_wire, off_summary = _signature(replace(spec, header_prediction=False))
    for i, (a, b) in enumerate(zip(on_wire, off_wire, strict=False)):
        if a != b:
            return f"event {i}: prediction on {a!r}, off {b!r}"
    if len(on_wire) != len(off_wire):
        return f"{len(on_wire)} trace events with prediction on, {len(off_wire)} off"
    if on_summary != off_summary:
        return f"summaries differ: on {on_summary!r}, off {off_summary!r}"
    return None


@pytest.mark.parametrize("batch", range(BATCHES))
def test_header_prediction_changes_nothing(batch: int) -> None:
    rng = Rng(9_000 + batch)
    failures = []
    for i in range(batch, RUNS, BATCHES):
        spec = random_spec(rng, seed=10_000 + i)
        diff = first_difference(spec)
        if diff is not None:
            failures.append(f"{spec!r}\n  {diff}")
    assert not failures, f"{len(failures)} scenario(s) differ; first:\n" + failures[0]
