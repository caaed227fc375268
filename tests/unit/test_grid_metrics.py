"""pushgrid metrics' merge: the servers' texts become one, each family once, every sample
labelled with its server (what a Prometheus server scraping them all would hold)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tools.grid.metrics import merged

ONE = """# HELP pushgrid_dispatches_total Slice operations dispatched
# TYPE pushgrid_dispatches_total counter
pushgrid_dispatches_total{operation="getApp",outcome="ok"} 3.0
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 12.0
"""
TWO = """# HELP pushgrid_dispatches_total Slice operations dispatched
# TYPE pushgrid_dispatches_total counter
pushgrid_dispatches_total{operation="getApp",outcome="UnknownApp"} 2.0
"""


def test_families_appear_once_with_every_servers_samples_labelled() -> None:
    text = merged({"DBAgent-1": ONE, "DBAgent-2": TWO}).decode()
    assert text.count("# TYPE pushgrid_dispatches_total counter") == 1
    samples = {
        (s.name, s.labels["server"], s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples == {
        ("pushgrid_dispatches_total", "DBAgent-1", "ok"): 3.0,
        ("pushgrid_dispatches_total", "DBAgent-2", "UnknownApp"): 2.0,
        ("process_open_fds", "DBAgent-1", None): 12.0,
    }


def test_no_server_is_an_empty_text() -> None:
    assert merged({}) == b""
