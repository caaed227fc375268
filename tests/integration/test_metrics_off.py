"""Metrics off (`pushgrid up --metrics off`): the descriptor's variable reaches every server, and a
server started with it off serves as ever while keeping no metrics.

Switching the shared grid would restart every server under the other tests, so IceGrid is asked
what the switch would change (`application diff`, its own instantiation of the descriptor), and
one more TagAlias, with the deployed TagAlias-1's properties, is started off beside the grid.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import Ice
import IceMX
import pytest

from services.common import metrics, paths
from services.common.contract import PushGrid
from tests.integration.waiting import until
from tools.grid import icegrid
from tools.grid.rundir import free_port

pytestmark = pytest.mark.integration

VIEW = "PushGrid"  # the IceMX view icegrid/pushgrid.xml configures
DISABLED = f"IceMX.Metrics.{VIEW}.Disabled"


def _diff(grid, value: str) -> str:
    variables = {**icegrid.descriptor_variables(grid), "metrics": value}
    spelled = " ".join(f"{k}={v}" for k, v in variables.items())
    return icegrid.icegridadmin(grid, f"application diff --servers '{icegrid.application_descriptor(grid)}' {spelled}")


def test_the_variable_reaches_every_server_and_off_would_change_them_all(grid) -> None:
    with icegrid.admin_session(grid) as admin:
        infos = {sid: admin.getServerInfo(sid) for sid in admin.getAllServerIds()}
        views = IceMX.MetricsAdminPrx.uncheckedCast(admin.getServerAdmin("Glacier2Router"), "Metrics")
        enabled, _ = views.getMetricsViewNames()
    for sid, info in infos.items():
        props = {p.name: p.value for p in info.descriptor.propertySet.properties}
        assert props.get(DISABLED) == "0", sid
        if info.descriptor.exe.endswith("python"):
            assert "PUSHGRID_METRICS=on" in info.descriptor.envs, sid
    assert VIEW in enabled  # the C++ router keeps Ice's view while on
    changed = dict(re.findall(r"server `([^']+)': (.*)", _diff(grid, "off")))
    assert set(changed) == set(infos), changed
    python = [sid for sid, info in infos.items() if info.descriptor.exe.endswith("python")]
    assert all("restart required" in changed[sid] and "no restart" not in changed[sid] for sid in python), changed
    assert re.findall(r"server `", _diff(grid, "on")) == []  # the deployed value: nothing to change
    with pytest.raises(RuntimeError, match="IceMX.maybe"):
        _diff(grid, "maybe")


def test_a_server_with_metrics_off_serves_and_keeps_none(grid, communicator, tagalias, app, tmp_path: Path) -> None:
    with icegrid.admin_session(grid) as admin:
        deployed = {p.name: p.value for p in admin.getServerInfo("TagAlias-1").descriptor.propertySet.properties}
    host, port, admin_port = grid.internal_host, free_port(), free_port()
    config = tmp_path / "tagalias.cfg"
    props = {
        **deployed,
        DISABLED: "1",  # what the descriptor gives with metrics=off (IceMX.off)
        "TagAlias.Endpoints": f"tcp -h {host} -p {port}",
        "Ice.Admin.Endpoints": f"tcp -h {host} -p {admin_port}",
        "Ice.Admin.InstanceName": "TagAlias-metrics-off",
        "Ice.ProgramName": "TagAlias-metrics-off",
    }
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    log = tmp_path / "tagalias.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "services.tagalias", f"--Ice.Config={config}"],
            cwd=paths.ROOT,
            env={**os.environ, metrics.ENV: "off"},  # what the descriptor's <env> gives
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        until(lambda: "serving" in log.read_text() or server.poll() is not None, "the TagAlias to serve", 30)
        assert server.poll() is None, log.read_text()
        assert f"metrics at - ({metrics.ENV}=off)" in log.read_text()
        off = PushGrid.TagAliasPrx.uncheckedCast(communicator.stringToProxy(f"TagAlias:tcp -h {host} -p {port}"))
        tagalias.addTags(app, "metricsoff1", ["seen"])
        assert off.getTags(app, "metricsoff1") == ["seen"]  # it serves as ever
        with pytest.raises(PushGrid.InvalidArgument):
            off.tagSize(app, "")
        facets = communicator.stringToProxy(f"TagAlias-metrics-off/admin:tcp -h {host} -p {admin_port}")
        properties = Ice.PropertiesAdminPrx.uncheckedCast(facets, "Properties")
        assert properties.getProperty(metrics.HOST_PROPERTY) == host  # it was told where to serve them ...
        assert properties.getProperty(metrics.URL_PROPERTY) == ""  # ... and serves nothing
        enabled, disabled = IceMX.MetricsAdminPrx.uncheckedCast(facets, "Metrics").getMetricsViewNames()
        assert VIEW in disabled and VIEW not in enabled  # Ice's own view is off too
    finally:
        server.terminate()
        server.wait(timeout=30)
