"""Simulated attacks (finwait.sim.attacks): a spoofed SYN flood while
legitimate clients connect, an out-of-order flood, and blind RST, SYN and
data injection against a connection carrying data.  Memory is measured with
tracemalloc; the full-size flood (100,000 SYNs) runs under ``-m soak``."""

from __future__ import annotations

import tracemalloc

import pytest

from finwait.sim.attacks import KINDS, blind_attack, ooo_flood, syn_flood
from finwait.tcp.config import Config

FLOOD_MEMORY_BOUND = 4 << 20  # bytes: stated in docs/security.md


def _flood(n: int) -> tuple[int, int, int]:
    tracemalloc.start()
    try:
        r = syn_flood(n, legit=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.spoofed == n
    assert r.peak_syn_queue <= 128 and r.peak_connections <= 128 + 20
    assert r.server_counters["syncookies_sent"] >= n - 128
    return r.completed, peak, r.server_counters.get("syncookies_ok", 0)


def test_syn_flood_legitimate_clients_complete_in_bounded_memory() -> None:
    completed, peak, ok = _flood(20_000)
    assert completed == 20, "every legitimate connection completes, byte-exact"
    assert ok == 20  # each through a cookie: the queue was full all along
    assert peak < FLOOD_MEMORY_BOUND, peak


@pytest.mark.soak
def test_syn_flood_100k() -> None:
    completed, peak, _ = _flood(100_000)
    assert completed == 20
    assert peak < FLOOD_MEMORY_BOUND, peak


def test_syn_flood_without_cookies_shuts_legitimate_clients_out() -> None:
    """The defence removed: same flood, no cookies, no legitimate connection."""
    r = syn_flood(5_000, legit=10, syncookies=False)
    assert r.completed == 0
    assert r.peak_syn_queue == 128  # still bounded: the queue limit holds
    assert "syncookies_sent" not in r.server_counters


def test_ooo_flood_is_bounded_by_the_queue_and_the_window() -> None:
    tracemalloc.start()
    try:
        r = ooo_flood(5_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.peak_held_segments <= Config().max_ooo_segments
    assert r.peak_held_bytes <= r.receive_window
    assert r.dropped_queue_full > 0
    assert r.stream_intact
    assert peak < 2 * r.receive_window + (1 << 20), peak


@pytest.mark.parametrize("kind", KINDS)
def test_blind_injection_with_random_sequence_numbers_never_succeeds(kind: str) -> None:
    r = blind_attack(kind, 20_000)
    assert r.successes == 0 and r.connections == 1
    assert r.stream_bytes > 1_000_000  # the connection kept carrying data
    # B answers each out-of-window segment with an ACK; with SACK those
    # repeated ACKs are not DupAcks (RFC 6675 §2), so A never fast-retransmits.
    assert r.sender_fast_retransmits == 0
    if kind != "data":
        # Zero-length answers are rate-limited: ~2 per simulated second.
        assert r.challenge_acks - r.ratelimited <= 2 * 20 + 2


def test_in_window_rst_succeeds_only_at_rcv_nxt() -> None:
    """RFC 5961 §3: an attacker who knows the window still needs the exact
    RCV.NXT: success rate 1/RCV.WND per try (not 1 as under RFC 793).  The
    successes are exactly the tries that drew RCV.NXT: none elsewhere in the
    window, none missed there."""
    r = blind_attack("rst", 20_000, in_window=True, config=Config(recv_buffer=4096))
    assert r.in_window == r.tries
    assert r.exact > 0  # the draw did hit RCV.NXT (≈ tries / 4096 times)
    assert r.successes == r.exact, (r.successes, r.exact)
    assert r.counters["challenge_ack_rst"] == r.tries - r.exact


@pytest.mark.parametrize("kind", ["syn", "data"])
def test_in_window_syn_and_data_never_succeed(kind: str) -> None:
    r = blind_attack(kind, 20_000, in_window=True, config=Config(recv_buffer=4096))
    assert r.in_window == r.tries
    assert r.successes == 0  # SYN: §4 bound 0; data: §5 bound ≈ 2e-6 per try
    assert r.rfc5961_bound * r.tries < 0.1


def test_without_sack_injected_data_sets_off_fast_retransmits() -> None:
    """The defence removed: under RFC 5681 alone the same repeated ACKs are
    duplicates, and A retransmits for nothing (throughput, not correctness)."""
    r = blind_attack("data", 5_000, config=Config(sack_permitted=False))
    assert r.successes == 0
    assert r.sender_fast_retransmits > 100
