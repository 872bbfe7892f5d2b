"""The soak: randomized two-host scenarios (loss up to 30 %, duplication,
reordering, corruption, random closers, half-close sizes, aborts), each
checked for byte-exact streams, both ends CLOSED and both Hosts' tables
empty.  Shared by the test (small in the normal suite, 10,000 under
``-m soak``)."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field

from finwait.sim.rng import Rng
from finwait.sim.scenario import ScenarioResult, ScenarioSpec, run_scenario
from finwait.tcp.connection import Connection


def random_spec(rng: Rng, seed: int) -> ScenarioSpec:
    closer = ("client", "server", "both")[rng.randrange(3)]
    abort = None
    if rng.bernoulli(0.1):
        abort = ("client", "server")[rng.randrange(2)]
    return ScenarioSpec(
        client_bytes=rng.randrange(20_000),
        server_bytes=rng.randrange(20_000),
        half_close_bytes=0 if closer == "both" else rng.randrange(5_000),
        closer=closer,
        abort=abort,
        prompt_close=rng.bernoulli(0.5),
        loss=rng.uniform(0.0, 0.3),
        dup=rng.uniform(0.0, 0.1),
        reorder=rng.uniform(0.0, 0.2),
        corrupt=rng.uniform(0.0, 0.05),
        delay_ms=rng.uniform(1.0, 50.0),
        seed=seed,
        msl=5.0,  # 10 s TIME-WAIT: same code path, shorter virtual runs
    )


@dataclass
class SoakReport:
    runs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    bytes_checked: int = 0
    half_open_after_lost_rst: int = 0
    failures: list[str] = field(default_factory=list)


def check_one(spec: ScenarioSpec, report: SoakReport) -> None:
    res = run_scenario(spec)
    report.runs += 1
    a, b = spec.client_name, spec.server_name
    sa, sb = res.summary[a], res.summary[b]
    problems = []
    for name, me, peer in ((a, sa, sb), (b, sb, sa)):
        report.outcomes[me["outcome"]] += 1
        if me["final_state"] != "CLOSED":
            if peer["outcome"] != "aborted":
                problems.append(f"final state {me['final_state']}")
            else:
                # The peer's RST was lost: RSTs are never retransmitted, so
                # this side is half-open (RFC 9293 §3.5.1) until it next
                # speaks.  Its application closes it, as one would: the FIN
                # draws a RST, or the orphaned FIN-WAIT-2 times out.
                report.half_open_after_lost_rst += 1
                _close_leftovers(res, name)
        if peer["received_bytes"] > me["sent_bytes"]:
            problems.append("peer received more than was sent")
        if {me["outcome"], peer["outcome"]} <= {"closed"}:
            # A graceful release: every byte arrived, in order, intact.
            if peer["received_sha256"] != me["sent_sha256"]:
                problems.append("stream differs")
            if me["sent_bytes"] != me["planned_bytes"]:
                problems.append("not everything was sent")
            report.bytes_checked += me["sent_bytes"]
    for name, host in res.hosts.items():
        if host.conns:
            problems.append(f"{name} still holds {len(host.conns)} connections")
        if host.next_deadline() is not None:
            problems.append(f"{name} still has a timer")
    if problems:
        report.failures.append(f"seed {spec.seed}: {sorted(set(problems))} {spec}")


def _discard(conn: Connection, now: float) -> None:
    conn.close(now, discard=True)


def _close_leftovers(res: ScenarioResult, name: str) -> None:
    host = res.hosts[name]
    net = res.network
    for conn in list(host.conns.values()):
        net.call(name, net.now + 1.0, functools.partial(_discard, conn))
    net.run()


def soak(n: int, seed: int = 2024) -> SoakReport:
    rng = Rng(seed)
    report = SoakReport()
    for i in range(n):
        check_one(random_spec(rng, seed * 100_000 + i), report)
    return report
