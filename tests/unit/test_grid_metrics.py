"""pushgrid metrics' merge: the servers' texts become one, each family once, every sample
labelled with its server (what a Prometheus server scraping them all would hold)."""

from __future__ import annotations

import IceMX
from prometheus_client.parser import text_string_to_metric_families

from tools.grid.metrics import icemx_families, merged

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


def test_an_icemx_view_becomes_families_merged_with_the_servers_own() -> None:
    view = {
        "Dispatch": [
            IceMX.DispatchMetrics(
                id="getApp", total=7, current=1, totalLifetime=2_500_000, failures=1, userException=5
            ),
            IceMX.DispatchMetrics(id="verifyApp", total=2, current=0, totalLifetime=1000, failures=0, userException=0),
        ],
        "Connection": [IceMX.ConnectionMetrics(id="DBAgent", total=4, current=3)],
    }
    families = icemx_families("DBAgent-1", view, {"getApp": {"::Ice::ConnectionLostException": 1}})
    router = icemx_families(
        "Glacier2Router", {"Connection": [IceMX.ConnectionMetrics(id="Glacier2.Client", total=9, current=2)]}, {}
    )
    text = merged({"DBAgent-1": ONE}, families + router).decode()
    samples = {
        (
            s.name,
            s.labels["server"],
            s.labels.get("operation") or s.labels.get("adapter"),
            s.labels.get("exception"),
        ): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("pushgrid_icemx_dispatches_total", "DBAgent-1", "getApp", None)] == 7
    assert samples[("pushgrid_icemx_dispatches_current", "DBAgent-1", "getApp", None)] == 1
    assert samples[("pushgrid_icemx_dispatch_seconds_total", "DBAgent-1", "getApp", None)] == 2.5
    assert samples[("pushgrid_icemx_dispatch_user_exceptions_total", "DBAgent-1", "getApp", None)] == 5
    assert (
        samples[("pushgrid_icemx_dispatch_failures_total", "DBAgent-1", "getApp", "::Ice::ConnectionLostException")]
        == 1
    )
    assert samples[("pushgrid_icemx_connections", "Glacier2Router", "Glacier2.Client", None)] == 2
    assert samples[("pushgrid_icemx_connections_opened_total", "DBAgent-1", "DBAgent", None)] == 4
    assert samples[("pushgrid_dispatches_total", "DBAgent-1", "getApp", None)] == 3  # the server's own, still there
    assert text.count("# TYPE pushgrid_icemx_connections gauge") == 1
