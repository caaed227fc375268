"""The console's live charts: points from two readings of every server's metrics, the ring of
the last 10 minutes, and the sampler's reading (over fakes: no servers here)."""

from __future__ import annotations

from typing import Any

import pytest

from services.common import scrape
from services.console import charts

STC = """# TYPE pushgrid_stc_connections gauge
pushgrid_stc_connections {conns}
# TYPE pushgrid_stc_deliveries counter
pushgrid_stc_deliveries_total{{kind="live"}} {live}
pushgrid_stc_deliveries_total{{kind="replay"}} 1
# TYPE pushgrid_stc_acks counter
pushgrid_stc_acks_total {acks}
"""
PUSH = """# TYPE pushgrid_push_accepted counter
pushgrid_push_accepted_total{{operation="push"}} {push}
pushgrid_push_accepted_total{{operation="pushBatch"}} {batch}
"""


def stc(conns: float, live: float, acks: float) -> scrape.Series:
    return scrape.series(STC.format(conns=conns, live=live, acks=acks))


def push(single: float, batch: float) -> scrape.Series:
    return scrape.series(PUSH.format(push=single, batch=batch))


def test_series_and_increase_read_counters_across_a_restart() -> None:
    before = stc(3, 10, 4)
    assert before[("pushgrid_stc_deliveries_total", (("kind", "live"),))] == 10
    after = stc(3, 2, 9)  # the STC restarted: its live count began at 0 again
    assert scrape.increase(before, after, "pushgrid_stc_deliveries_total") == {
        ("pushgrid_stc_deliveries_total", (("kind", "live"),)): 2,
        ("pushgrid_stc_deliveries_total", (("kind", "replay"),)): 0,
    }


def test_the_first_point_has_connections_and_no_rates() -> None:
    p = charts.point(None, scrape.Sample(10.0, {"STC-1": stc(3, 0, 0), "STC-2": stc(4, 0, 0)}), 5000)
    assert p.to_json() == {"t": 5000, "connections": 7, "accepted": None, "deliveries": None, "receipts": None}


def test_rates_are_per_second_summed_over_labels_and_servers() -> None:
    before = scrape.Sample(10.0, {"STC-1": stc(1, 10, 0), "STC-2": stc(1, 0, 0), "Push-1": push(5, 0)})
    after = scrape.Sample(12.0, {"STC-1": stc(2, 14, 3), "STC-2": stc(1, 2, 1), "Push-1": push(7, 4)})
    p = charts.point(before, after, 7000)
    assert p.connections == 3
    assert p.rates == {"accepted": 3.0, "deliveries": 3.0, "receipts": 2.0}


def test_a_server_read_for_the_first_time_adds_nothing_to_the_rates() -> None:
    before = scrape.Sample(10.0, {"Push-1": push(5, 0)})
    after = scrape.Sample(12.0, {"Push-1": push(5, 0), "Push-2": push(1000, 0)})
    assert charts.point(before, after, 0).rates["accepted"] == 0.0


def test_the_ring_keeps_the_last_points_oldest_first() -> None:
    ring = charts.Ring(size=3)
    for i in range(5):
        ring.add(charts.Point(i, i, {"accepted": None}))
    assert [p.at for p in ring.points()] == [2, 3, 4]
    body = ring.to_json(interval=2.0)
    assert body["interval"] == 2.0 and body["window"] == 6.0 and [p["t"] for p in body["points"]] == [2, 3, 4]
    assert charts.Ring().to_json()["window"] == charts.WINDOW_SECONDS


class FakeGrid:
    """Where servers serve metrics (through an admin) and what they serve."""

    def __init__(self) -> None:
        self.texts = {"STC-1": STC.format(conns=2, live=0, acks=0), "Push-1": PUSH.format(push=0, batch=0)}
        self.asked = 0

    def urls(self, admin: Any) -> dict[str, str]:
        self.asked += 1
        return {sid: f"http://x/{sid}" for sid in self.texts}

    def fetch(self, urls: Any) -> tuple[dict[str, str], list[str]]:
        return {s: self.texts[s] for s in urls if s in self.texts}, [s for s in urls if s not in self.texts]


def test_the_sampler_needs_an_operator_to_find_the_servers_then_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    grid, admin = FakeGrid(), {"admin": None}
    clock = [100.0]
    monkeypatch.setattr(charts.time, "monotonic", lambda: clock[0])
    sampler = charts.Sampler(lambda: admin["admin"], charts.Ring(), fetch=grid.fetch, urls=grid.urls)
    assert sampler.sample_once() is None  # nobody logged in: no server known
    admin["admin"] = "an operator's admin"
    first = sampler.sample_once()
    assert first is not None and first.connections == 2 and first.rates["accepted"] is None
    clock[0] += 2
    grid.texts["Push-1"] = PUSH.format(push=6, batch=4)
    second = sampler.sample_once()
    assert second is not None and second.rates["accepted"] == 5.0
    assert grid.asked == 1  # the list is kept between refreshes ...
    admin["admin"] = None
    clock[0] += charts.URLS_REFRESH_SECONDS
    assert sampler.sample_once() is not None  # ... and sampled with nobody logged in
    assert len(sampler.ring.points()) == 3


def test_a_server_that_stops_answering_makes_the_sampler_ask_again(monkeypatch: pytest.MonkeyPatch) -> None:
    grid = FakeGrid()
    monkeypatch.setattr(charts.time, "monotonic", lambda: 500.0)
    sampler = charts.Sampler(lambda: "admin", charts.Ring(), fetch=grid.fetch, urls=grid.urls)
    sampler.sample_once()
    del grid.texts["STC-1"]
    sampler.sample_once()
    sampler.sample_once()
    assert grid.asked == 2
