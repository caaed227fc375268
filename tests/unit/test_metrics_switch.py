"""The operator's switch for metrics (services/common/metrics.py): PUSHGRID_METRICS=off, set by the
descriptor's variable metrics, leaves every service metric a stand-in that takes the services'
calls and keeps nothing; the descriptor wires the variable into every server; `pushgrid up
--metrics` keeps the choice in the run directory. (mypy checks the rest: the services call their
metrics only through the Protocols the stand-in implements.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from services.common import metrics, paths
from tools import cli
from tools.grid import lifecycle
from tools.grid.icegrid import DESCRIPTOR, descriptor_variables
from tools.grid.rundir import RunDir

# Every call the services make on their metrics, in the shapes they make them (engine.py,
# transport.py, worker.py, runner.py, servant.py, verifier.py, sessions.py, the __main__s).
EXERCISE = """
import json, sys
from prometheus_client import REGISTRY
from services.common import metrics
from services.common.contract import PushGrid
from services.stc import metrics as stc
from services.dispatcher import metrics as dispatcher
from services.push import metrics as push
from glacier2 import metrics as gateway

metrics.dispatched("getApp", metrics.OK, 0.001)
metrics.dispatched("getApp", metrics.UNREADABLE, 0.001)
stc.CONNECTIONS.set_function(lambda: 3)
stc.DEVICES.set_function(lambda: 2)
stc.HELLOS.labels(stc.outcome(None)).inc()
stc.HELLOS.labels(stc.outcome(ValueError())).inc()
stc.REGISTRATIONS.labels(stc.outcome(None)).inc()
stc.REPLAYS.inc()
stc.REPLAYED.inc(3)
stc.ACKS.inc(2)
stc.LIVE.inc(5)
stc.BROADCAST.inc(7)
stc.closed(1000, "stc")
stc.closed(4999, "device")
stc.closed(stc.ABNORMAL, "network")
dispatcher.TASKS.labels("done").inc()
dispatcher.PAGES.inc()
dispatcher.PAGES.inc(4)
dispatcher.TARGETS.inc(sum([3, 4]))
dispatcher.ONLINE.inc(2)
dispatcher.LAG.clear()
dispatcher.LAG.labels(0).set(9)
with push.counted("push"):
    pass
try:
    with push.counted("schedule"):
        raise PushGrid.InvalidArgument(field="ttl", reason="no")
except PushGrid.InvalidArgument:
    pass
push.refused("RateLimited")
push.refused("UnknownApp")
push.ACCEPTED.labels("pushBatch").inc(3)
gateway.SESSIONS.set_function(lambda: 1)
gateway.LOGINS.labels("ok").inc()
gateway.SESSIONS_REFUSED.inc()
families = sorted(m.name for m in REGISTRY.collect() if m.name.startswith("pushgrid_"))
kept = {
    m.name: sum(s.value for s in m.samples if not s.name.endswith("_created"))
    for m in REGISTRY.collect() if m.name.startswith("pushgrid_")
}
declared = [
    value for module in (metrics, stc, dispatcher, push, gateway) for name, value in vars(module).items()
    if name.isupper() and name != "NOOP" and hasattr(value, "labels")
]
print(json.dumps({
    "enabled": metrics.ENABLED,
    "families": families,
    "kept": kept,
    "stand_ins": sum(value is metrics.NOOP for value in declared),
    "declared": len(declared),
    "url": metrics.serve("127.0.0.1"),
}))
"""


def exercise(value: str | None) -> dict:
    """Runs every service's metric calls in a fresh interpreter with PUSHGRID_METRICS=value."""
    import json

    env = {k: v for k, v in os.environ.items() if k != metrics.ENV}
    if value is not None:
        env[metrics.ENV] = value
    out = subprocess.run(
        [sys.executable, "-c", EXERCISE], capture_output=True, text=True, env=env, cwd=paths.ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_only_off_turns_metrics_off() -> None:
    assert metrics.switched_on(None) and metrics.switched_on("") and metrics.switched_on("on")
    assert not metrics.switched_on("off") and not metrics.switched_on(" OFF ")


def test_with_metrics_off_every_service_metric_takes_the_services_calls_and_keeps_nothing() -> None:
    off = exercise("off")
    assert off["enabled"] is False
    assert off["declared"] > 10 and off["stand_ins"] == off["declared"]  # every one a stand-in
    assert off["families"] == [] and off["url"] == ""  # nothing kept, nothing served


def test_with_metrics_on_the_same_calls_are_counted() -> None:
    """The exercise above is not vacuous: with metrics on, the same calls land in the registry."""
    on = exercise(None)
    assert on["enabled"] is True and on["stand_ins"] == 0
    assert on["kept"]["pushgrid_stc_deliveries"] == 3 + 5 + 7
    assert on["kept"]["pushgrid_dispatches"] == 2
    assert on["kept"]["pushgrid_dispatcher_targets"] == 7
    assert on["url"].startswith("http://127.0.0.1:")


def test_the_stand_in_takes_every_metric_method() -> None:
    noop = metrics.NOOP
    assert noop.labels("a", b="c") is noop
    for call in (noop.inc, noop.dec, noop.observe, noop.set):
        call(1.5)
    noop.inc()
    noop.set_function(lambda: 1.0)
    noop.clear()
    noop.remove("a")


def test_the_factories_hand_out_the_stand_in_while_off(monkeypatch) -> None:
    monkeypatch.setattr(metrics, "ENABLED", False)
    assert metrics.counter("pushgrid_test_never", "-") is metrics.NOOP
    assert metrics.gauge("pushgrid_test_never", "-", ["x"]) is metrics.NOOP
    assert metrics.histogram("pushgrid_test_never", "-") is metrics.NOOP


def _descriptor() -> list[ElementTree.Element]:
    """The application and the partners' door it includes (router.xml)."""
    app = ElementTree.parse(DESCRIPTOR).getroot().find("application")
    assert app is not None
    router = ElementTree.parse(Path(DESCRIPTOR).parent / "../glacier2/router.xml").getroot()
    return [app, router]


def test_the_descriptor_switches_icemx_and_every_python_server_with_one_variable() -> None:
    app, router = _descriptor()
    variables = {v.get("name"): v.get("value") for v in app.iter("variable")}
    assert variables["metrics"] == "on"
    sets = {s.get("id"): s for s in app.findall("properties")}
    for value, disabled in (("on", "0"), ("off", "1")):
        props = {p.get("name"): p.get("value") for p in sets[f"IceMX.{value}"].findall("property")}
        assert props == {"IceMX.Metrics.PushGrid.Disabled": disabled}
    assert [r.get("refid") for r in sets["IceMX"].findall("properties")] == ["IceMX.${metrics}"]
    assert "IceMX" in [r.get("refid") for r in sets["Common"].findall("properties")]
    servers = [s for root in (app, router) for s in root.iter("server")]
    assert len(servers) == 9  # IcePatch2, DBAgent, TagAlias, Push, Dispatcher, STC, Console, router, gateway
    for server in servers:
        refs = {r.get("refid") for r in server.iter("properties") if r.get("refid")}
        assert refs & {"IceMX", "Common"}, server.get("id")  # Ice's view, on or off with the rest
        if server.get("exe") == "${python}":
            envs = [e.text for e in server.findall("env")]
            assert "PUSHGRID_METRICS=${metrics}" in envs, server.get("id")


def test_the_run_directory_keeps_the_choice_and_the_deploy_passes_it(tmp_path) -> None:
    run = RunDir(str(tmp_path))
    assert run.metrics == "on" and descriptor_variables(run)["metrics"] == "on"
    assert run.set_metrics("off") is True
    assert run.set_metrics("off") is False
    assert RunDir(str(tmp_path)).metrics == "off"
    assert descriptor_variables(RunDir(str(tmp_path)))["metrics"] == "off"
    with pytest.raises(ValueError):
        run.set_metrics("maybe")
    assert RunDir(str(tmp_path)).metrics == "off"


def test_pushgrid_up_takes_metrics_on_or_off(tmp_path, monkeypatch, capsys) -> None:
    seen: list[str | None] = []
    monkeypatch.setattr(lifecycle, "up", lambda run, **kw: seen.append(kw["metrics"]))
    monkeypatch.setattr(cli, "cmd_status", lambda args: 0)
    assert cli.main(["--run-dir", str(tmp_path), "up", "--metrics", "off"]) == 0
    assert cli.main(["--run-dir", str(tmp_path), "up"]) == 0
    assert seen == ["off", None]  # not given: the run directory's choice stands
    with pytest.raises(SystemExit):
        cli.main(["--run-dir", str(tmp_path), "up", "--metrics", "maybe"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("fails", [False, True])
def test_a_deploy_that_restarts_the_dispatchers_stops_them_one_at_a_time_and_always_starts_them(
    tmp_path, monkeypatch, fails: bool
) -> None:
    """Restarted all at once, one dispatcher would close while the group rebalances for the other."""
    done: list[str] = []
    restarted = ["DBAgent-1", "Dispatcher-1", "Dispatcher-2", "STC-node1-1"]

    def deploy(run: RunDir) -> str:
        done.append("deploy")
        if fails:
            raise RuntimeError("icegridadmin failed")
        return "updated"

    monkeypatch.setattr(lifecycle.router, "prepare", lambda run: "kept")
    monkeypatch.setattr(lifecycle, "publish_first_release", lambda run, progress: "kept")
    monkeypatch.setattr(lifecycle.icegrid, "restarted_by_deploy", lambda run: restarted)
    monkeypatch.setattr(lifecycle.icegrid, "deploy", deploy)
    monkeypatch.setattr(lifecycle, "stop_one_at_a_time", lambda run, ids, timeout: done.append(f"stop {ids}"))
    monkeypatch.setattr(lifecycle, "start_again", lambda run, ids: done.append(f"start {ids}"))
    for wait in ("wait_servers_active", "wait_dispatchers"):
        monkeypatch.setattr(lifecycle, wait, lambda *args, **kw: "ok")
    monkeypatch.setattr(lifecycle.router, "wait_answering", lambda *args: "ok")
    dispatchers = ["Dispatcher-1", "Dispatcher-2"]
    if fails:
        with pytest.raises(RuntimeError):
            lifecycle.deploy(RunDir(str(tmp_path)), progress=lambda *_: None)
    else:
        lifecycle.deploy(RunDir(str(tmp_path)), progress=lambda *_: None)
    assert done == [f"stop {dispatchers}", "deploy", f"start {dispatchers}"]
    restarted[:] = ["STC-node1-1"]  # an update that leaves the dispatchers running: nothing to hand over
    done.clear()
    monkeypatch.setattr(lifecycle.icegrid, "deploy", lambda run: done.append("deploy") or "updated")
    lifecycle.deploy(RunDir(str(tmp_path)), progress=lambda *_: None)
    assert done == ["deploy"]
