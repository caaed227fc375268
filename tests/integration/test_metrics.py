"""`pushgrid metrics`: every server serves its metrics on the grid's internal address, and the
command collects them all through IceGrid, each sample labelled with its server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from urllib.parse import urlparse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.contract import PushGrid
from tests.integration.test_delivery_e2e import A, Phones, request, run
from tests.integration.waiting import until_async as until
from tools.grid import icegrid
from tools.grid import metrics as grid_metrics

pytestmark = pytest.mark.integration

UNKNOWN = "0" * 24  # well-formed, no app has it


def total(text: str, name: str, server_prefix: str, **labels: str) -> float:
    """The sum of a sample over the servers whose id starts with server_prefix."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
        and s.labels["server"].startswith(server_prefix)
        and all(s.labels.get(k) == v for k, v in labels.items())
    )


def dispatches(text: str, operation: str, outcome: str, server_prefix: str) -> float:
    return total(text, "pushgrid_dispatches_total", server_prefix, operation=operation, outcome=outcome)


def pushgrid_metrics(grid) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", grid.path, "metrics"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_server_serves_its_metrics_on_the_internal_address_and_pushgrid_collects_them(grid, dbagent) -> None:
    served = grid_metrics.urls(grid)
    active = {
        s["id"] for s in icegrid.status(grid)["servers"] if s["state"] == "Active" and s["id"] != "pushgrid.IcePatch2"
    }
    python_servers = {sid for sid in active if not sid.startswith("Glacier2")}  # the router is Glacier2's own C++
    assert python_servers <= set(served), python_servers - set(served)
    assert {urlparse(url).hostname for url in served.values()} == {grid.internal_host}

    before = pushgrid_metrics(grid)
    assert before.returncode == 0, before.stderr
    for _ in range(5):
        with pytest.raises(PushGrid.UnknownApp):
            dbagent.getApp(UNKNOWN)
    after = pushgrid_metrics(grid)
    assert after.returncode == 0, after.stderr
    was = dispatches(before.stdout, "getApp", "UnknownApp", "DBAgent-")
    assert dispatches(after.stdout, "getApp", "UnknownApp", "DBAgent-") == was + 5
    # Ice's own count (IceMX, enabled by the descriptor) agrees, and covers the C++ router too
    for name in ("pushgrid_icemx_dispatches_total", "pushgrid_icemx_dispatch_user_exceptions_total"):
        was = total(before.stdout, name, "DBAgent-", operation="getApp")
        assert total(after.stdout, name, "DBAgent-", operation="getApp") == was + 5, name
    assert 'pushgrid_icemx_connections_opened_total{adapter="Glacier2.Client",server="Glacier2Router"}' in after.stdout
    assert "pushgrid_dispatch_seconds_bucket{" in after.stdout and 'server="DBAgent-' in after.stdout


def test_a_push_shows_in_each_services_own_counters(grid, app, push) -> None:
    """One push to one connected device: Push accepted it, a dispatcher ran its task and page,
    an STC sent it live and took its ack, and the device's connection is counted."""
    counters = {
        "accepted": ("pushgrid_push_accepted_total", "Push-", {"operation": "push"}),
        "tasks done": ("pushgrid_dispatcher_tasks_total", "Dispatcher-", {"outcome": "done"}),
        "pages": ("pushgrid_dispatcher_pages_total", "Dispatcher-", {}),
        "online": ("pushgrid_dispatcher_sent_online_total", "Dispatcher-", {}),
        "live": ("pushgrid_stc_deliveries_total", "STC-", {"kind": "live"}),
        "acks": ("pushgrid_stc_acks_total", "STC-", {}),
        "hellos": ("pushgrid_stc_hellos_total", "STC-", {"outcome": "ok"}),
    }

    def read() -> tuple[dict[str, float], float]:
        out = pushgrid_metrics(grid)
        assert out.returncode == 0, out.stderr
        counts = {what: total(out.stdout, name, prefix, **labels) for what, (name, prefix, labels) in counters.items()}
        return counts, total(out.stdout, "pushgrid_stc_connections", "STC-")

    async def t(phones: Phones) -> None:
        before, _ = await asyncio.to_thread(read)
        device = await phones.new()
        rid = device.creds.registration_id
        msg = (await asyncio.to_thread(push.push, app, request(A(registrationIds=[rid]), "counted"))).msgId
        await until(lambda: push.report(app, [msg])[0].received == 1, "the device's receipt")
        after, connections = await asyncio.to_thread(read)
        assert {what: after[what] - before[what] for what in counters} == {
            "accepted": 1,
            "tasks done": 1,
            "pages": 1,
            "online": 1,
            "live": 1,
            "acks": 1,
            "hellos": 1,
        }
        assert connections >= 1

    run(t, grid, app)


def top_rows(text: str) -> dict[str, list[str]]:
    """pushgrid top's frame as each server's fields: id, state, [pid], release, then the five numbers."""
    lines = text.splitlines()
    assert lines[2].split() == ["server", "state", "release", "conn", "calls/s", "err/s", "p99", "lag"], text
    return {line.split()[0]: line.split() for line in lines[3:]}


def per_second(field: str) -> float:
    return float(field.rstrip("kM")) * {"k": 1e3, "M": 1e6}.get(field[-1], 1) if field != "-" else 0.0


def test_pushgrid_top_shows_every_server_and_the_one_called_busy(grid, communicator) -> None:
    called = PushGrid.DBAgentPrx.uncheckedCast(communicator.stringToProxy("DBAgent@DBAgent-2.DBAgent"))
    before = {s["id"]: s["state"] for s in icegrid.status(grid)["servers"]}
    top = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "--run-dir", grid.path, "top", "--once", "--interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while top.poll() is None and time.monotonic() < deadline:  # calls all along top's two samples
            with pytest.raises(PushGrid.UnknownApp):
                called.getApp(UNKNOWN)
            time.sleep(0.01)
        out, err = top.communicate(timeout=5)
    finally:
        if top.poll() is None:
            top.kill()
    assert top.returncode == 0, err
    rows = top_rows(out)
    after = {s["id"]: s["state"] for s in icegrid.status(grid)["servers"]}
    assert set(rows) == set(after) == set(before), out
    for sid, state in after.items():
        if before[sid] == state:  # (an on-demand server may come and go meanwhile)
            assert rows[sid][1] == state, out
            assert rows[sid][2].isdigit() == (state == "Active"), out  # its pid
    calls, errors = (per_second(f) for f in rows["DBAgent-2"][-4:-2])
    assert calls >= errors > 0, out  # UnknownApp is an outcome other than ok
    router = rows["Glacier2Router"][-5:]  # Glacier2's own C++: Ice's counts only, no latency, no lag
    assert router[0] != "-" and per_second(router[1]) >= 0 and router[3:] == ["-", "-"], out
