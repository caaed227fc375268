"""`pushgrid metrics`: every server serves its metrics on the grid's internal address, and the
command collects them all through IceGrid, each sample labelled with its server."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlparse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.contract import PushGrid
from tools.grid import icegrid
from tools.grid import metrics as grid_metrics

pytestmark = pytest.mark.integration

UNKNOWN = "0" * 24  # well-formed, no app has it


def dispatches(text: str, operation: str, outcome: str, server_prefix: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "pushgrid_dispatches_total"
        and s.labels.get("operation") == operation
        and s.labels.get("outcome") == outcome
        and s.labels["server"].startswith(server_prefix)
    )


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
    assert "pushgrid_dispatch_seconds_bucket{" in after.stdout and 'server="DBAgent-' in after.stdout
