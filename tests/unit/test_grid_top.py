"""pushgrid top's arithmetic: rates and p99 from the difference of two collections, gauges from
the later one, "-" for what a server does not measure, and a frame that fits 80 columns."""

from __future__ import annotations

import datetime
import math

from tools.grid.metrics import merged
from tools.grid.top import Row, Sample, parse, quantile, render, rows

BOUNDS = ("0.001", "0.005", "0.1", "1.0", "+Inf")


def dbagent(ok: float, unknown: float = 0, unreadable: float = 0, buckets: tuple[float, ...] = (0,) * 5) -> str:
    """One DBAgent's text: getApp dispatches by outcome and cumulative latency buckets."""
    lines = [
        "# TYPE pushgrid_dispatches_total counter",
        f'pushgrid_dispatches_total{{operation="getApp",outcome="ok"}} {ok}',
        f'pushgrid_dispatches_total{{operation="getApp",outcome="UnknownApp"}} {unknown}',
        f'pushgrid_dispatches_total{{operation="listApps",outcome="unreadable"}} {unreadable}',
        "# TYPE pushgrid_dispatch_seconds histogram",
    ]
    lines += [
        f'pushgrid_dispatch_seconds_bucket{{operation="getApp",le="{b}"}} {n}'
        for b, n in zip(BOUNDS, buckets, strict=True)
    ]
    return "\n".join(lines) + "\n"


def sample(at: float, **texts: str) -> Sample:
    return parse(merged(texts).decode(), at)


def server(sid: str, state: str = "Active", pid: int = 100, release: str = "r1") -> dict[str, object]:
    return {"id": sid, "state": state, "pid": pid, "release": release}


def one(before: Sample | None, after: Sample, sid: str = "DBAgent-1") -> Row:
    (row,) = rows([server(sid)], before, after)
    return row


def test_calls_and_errors_per_second_are_the_counters_growth_over_the_seconds_between() -> None:
    before = sample(10.0, **{"DBAgent-1": dbagent(ok=100, unknown=4, unreadable=1)})
    after = sample(12.0, **{"DBAgent-1": dbagent(ok=140, unknown=10, unreadable=3)})
    row = one(before, after)
    assert row.calls == (40 + 6 + 2) / 2
    assert row.errors == (6 + 2) / 2  # every outcome but ok: exceptions and unreadable requests


def test_ok_calls_alone_are_no_errors() -> None:
    row = one(sample(0.0, **{"DBAgent-1": dbagent(ok=1)}), sample(1.0, **{"DBAgent-1": dbagent(ok=51)}))
    assert (row.calls, row.errors) == (50, 0)


def test_p99_is_the_bound_of_the_bucket_the_99th_percentile_is_in() -> None:
    before = sample(0.0, **{"DBAgent-1": dbagent(0, buckets=(7, 7, 7, 7, 7))})  # earlier calls do not count
    # 100 calls: 99 within 5 ms, 1 within 1 s
    after = sample(1.0, **{"DBAgent-1": dbagent(100, buckets=(7, 106, 106, 107, 107))})
    assert one(before, after).p99 == 0.005


def test_p99_in_the_high_bucket_when_more_than_one_percent_are_slow() -> None:
    # 100 calls: 97 within 1 ms, 3 within 1 s
    after = sample(1.0, **{"DBAgent-1": dbagent(100, buckets=(97, 97, 97, 100, 100))})
    assert one(sample(0.0, **{"DBAgent-1": dbagent(0)}), after).p99 == 1.0


def test_p99_sums_the_buckets_of_every_operation_and_past_the_last_bound_is_infinite() -> None:
    counts = {("a", "1.0"): 90, ("a", "+Inf"): 90, ("b", "1.0"): 0, ("b", "+Inf"): 10}
    slow = {("pushgrid_dispatch_seconds_bucket", (("le", le), ("operation", op))): n for (op, le), n in counts.items()}
    assert quantile(0.99, slow) == math.inf
    assert quantile(0.5, slow) == 1.0
    assert quantile(0.99, {}) is None


def test_a_restarted_server_has_no_negative_rate() -> None:
    before = sample(0.0, **{"DBAgent-1": dbagent(ok=1000, unknown=50, buckets=(900, 1000, 1050, 1050, 1050))})
    after = sample(2.0, **{"DBAgent-1": dbagent(ok=8, unknown=2, buckets=(10, 10, 10, 10, 10))})
    row = one(before, after)
    assert row.calls == 5 and row.errors == 1  # what it counted since it started again
    assert row.p99 == 0.001


def test_a_new_process_start_time_means_every_count_is_new() -> None:
    started = "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}\n"
    before = sample(0.0, **{"DBAgent-1": dbagent(ok=10) + started.format(1000)})
    after = sample(1.0, **{"DBAgent-1": dbagent(ok=30) + started.format(1000.5)})  # above 10, yet restarted
    assert one(before, after).calls == 30


def test_the_first_frame_and_a_server_without_metrics_show_dashes() -> None:
    after = sample(1.0, **{"DBAgent-1": dbagent(ok=5)})
    first = one(None, after)
    assert (first.calls, first.errors, first.p99, first.connections, first.lag) == (None,) * 5
    table = rows([server("DBAgent-1"), server("Glacier2Router", release="")], sample(0.0), after)
    router = table[1]
    assert (router.calls, router.errors, router.p99, router.connections, router.lag) == (None,) * 5
    line = next(line for line in render(table, datetime.datetime(2026, 1, 1)).splitlines() if "Glacier2Router" in line)
    assert line.split() == ["Glacier2Router", "Active", "100", "-", "-", "-", "-", "-", "-"]


def test_a_server_with_only_ices_own_metrics_shows_their_rates_and_one_without_calls_yet_has_0() -> None:
    icemx = (
        '# TYPE pushgrid_icemx_dispatches counter\npushgrid_icemx_dispatches_total{operation="x"} {}\n'
        "# TYPE pushgrid_icemx_dispatch_user_exceptions counter\n"
        'pushgrid_icemx_dispatch_user_exceptions_total{operation="x"} 1\n'
        "# TYPE pushgrid_icemx_connections gauge\n"
        'pushgrid_icemx_connections{adapter="Glacier2.Client"} 7\n'
        'pushgrid_icemx_connections{adapter="Communicator"} 3\n'
    )
    own = "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1000\n"
    texts = {"Glacier2Router": icemx.replace("{}", "5"), "Dispatcher-1": own}
    later = {"Glacier2Router": icemx.replace("{}", "9").replace("} 1\n", "} 2\n"), "Dispatcher-1": own}
    dispatcher, router = rows([server(sid) for sid in texts], sample(0.0, **texts), sample(2.0, **later))
    assert (dispatcher.server, dispatcher.calls, dispatcher.errors, dispatcher.p99) == ("Dispatcher-1", 0, 0, None)
    # the router: IceMX's dispatches and Slice exceptions per second, partners' connections, no p99
    assert (router.server, router.calls, router.errors, router.p99) == ("Glacier2Router", 2.0, 0.5, None)
    assert router.connections == 7


def test_connections_and_lag_are_gauges_of_the_later_sample() -> None:
    stc = "# TYPE pushgrid_stc_connections gauge\npushgrid_stc_connections {}\n"
    gateway = "# TYPE pushgrid_gateway_sessions gauge\npushgrid_gateway_sessions 3\n"
    lag = '# TYPE pushgrid_dispatcher_lag gauge\npushgrid_dispatcher_lag{partition="0"} 4\n'
    lag += 'pushgrid_dispatcher_lag{partition="1"} 6\n'
    texts = {"STC-node1-1": stc.format(12), "PartnerGateway-1": gateway, "Dispatcher-1": lag}
    ids = ["STC-node1-1", "PartnerGateway-1", "Dispatcher-1"]
    table = rows(
        [server(sid) for sid in ids], sample(0.0, **{**texts, "STC-node1-1": stc.format(99)}), sample(1.0, **texts)
    )
    by_id = {r.server: r for r in table}
    assert [r.server for r in table] == sorted(ids)
    assert by_id["STC-node1-1"].connections == 12 and by_id["STC-node1-1"].lag is None
    assert by_id["PartnerGateway-1"].connections == 3
    assert by_id["Dispatcher-1"].lag == 10 and by_id["Dispatcher-1"].connections is None


def test_a_frame_has_the_totals_and_fits_80_columns() -> None:
    table = [
        Row("DBAgent-1", "Active", 4194303, "20261201.031500-1a2b3c4-dirty", None, 812.4, 0.5, 0.005, None),
        Row("STC-node1-1", "Active", 1234, "20261201.031500-1a2b3c4-dirty", 15_000, 1.25, 0, 0.00025, None),
        Row("Dispatcher-1", "Active", 77, "v2", None, 3, 0, math.inf, 12),
        Row("pushgrid.IcePatch2", "Deactivating", 0, ""),
        Row("Push-2", "NodeDown", 0, ""),
    ]
    text = render(table, datetime.datetime(2026, 12, 1, 3, 15, 0))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].split() == [
        *("03:15:00", "servers", "3/5", "up"),
        *("connections", "15.0k", "calls/s", "817", "errors/s", "0.5"),
    ]
    assert lines[2].split() == ["server", "state", "release", "conn", "calls/s", "err/s", "p99", "lag"]
    by_id = {line.split()[0]: line.split() for line in lines[3:]}
    db = by_id["DBAgent-1"]
    assert db[:3] == ["DBAgent-1", "Active", "4194303"] and db[4:] == ["-", "812", "0.5", "5ms", "-"]
    assert db[3].startswith("..") and db[3].endswith("3c4-dirty")  # its end: the commit
    assert by_id["STC-node1-1"][4:] == ["15.0k", "1.2", "0", "250us", "-"]
    assert by_id["Dispatcher-1"][3:] == ["v2", "-", "3.0", "0", ">10s", "12"]
    assert by_id["pushgrid.IcePatch2"][1:] == ["Deactivating", "-", "-", "-", "-", "-", "-"]
    assert by_id["Push-2"][1:] == ["NodeDown", "-", "-", "-", "-", "-", "-"]


def test_a_wide_terminal_shows_the_release_whole() -> None:
    release = "20261201.031500-1a2b3c4-dirty"
    text = render([Row("DBAgent-1", "Active", 4194303, release)], datetime.datetime(2026, 1, 1), width=120)
    assert release in text
