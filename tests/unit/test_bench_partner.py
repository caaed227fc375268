"""The partner bench's arithmetic: medians over rounds, the router/direct ratio, the added latency,
and that no phase's errors drop out of the totals (the figure is only honest with them)."""

from __future__ import annotations

from collections import Counter

import pytest

from tools.bench_partner import Phase, summarize


def phase(per_s: float, p50_ms: float, p99_ms: float, errors: dict[str, int] | None = None) -> Phase:
    """A phase whose p50 and p99 (by bench_delivery._pct over 100 samples) are the given values."""
    lat = sorted([p50_ms / 1000] * 99 + [p99_ms / 1000])
    return Phase(accepted=int(per_s * 10), seconds=10, latencies=lat, errors=Counter(errors or {}))


def round_(direct: tuple, router: tuple, errors: dict[str, int] | None = None) -> dict:
    return {
        "direct": {"throughput": phase(direct[0], 1, 2), "latency": phase(*direct)},
        "router": {"throughput": phase(router[0], 1, 2, errors), "latency": phase(*router)},
    }


def test_medians_ratio_and_added_latency() -> None:
    rounds = [
        round_((1000, 2.0, 5.0), (600, 3.0, 9.0)),
        round_((900, 2.2, 6.0), (450, 3.1, 8.0)),
        round_((1100, 1.8, 4.0), (500, 2.9, 7.0)),
    ]
    s = summarize(rounds)
    assert s["direct"]["per_s"] == 1000 and s["router"]["per_s"] == 500
    assert s["ratio"] == pytest.approx(0.5)
    assert s["round_ratios"] == pytest.approx([0.6, 0.5, 500 / 1100])
    assert s["paired_ratio"] == pytest.approx(0.5)
    assert s["direct"]["p50"] == pytest.approx(2.0) and s["router"]["p50"] == pytest.approx(3.0)
    assert s["added_p50"] == pytest.approx(1.0)
    assert s["added_p99"] == pytest.approx(8.0 - 5.0)


def test_errors_of_every_round_and_phase_are_kept() -> None:
    rounds = [
        round_((1000, 2, 5), (500, 3, 9), {"RateLimited": 2}),
        round_((1000, 2, 5), (500, 3, 9), {"RateLimited": 1, "ConnectionLostException": 1}),
    ]
    s = summarize(rounds)
    assert s["router"]["errors"] == {"RateLimited": 3, "ConnectionLostException": 1}
    assert not s["direct"]["errors"]


def test_merge_adds_client_processes() -> None:
    a, b = phase(100, 1, 2, {"Unavailable": 1}), phase(50, 3, 4)
    a.merge(b)
    assert a.per_second == 150 and len(a.latencies) == 200 and a.latencies == sorted(a.latencies)
    assert a.errors == {"Unavailable": 1}
