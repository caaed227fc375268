"""The deployed grid as operators and internal clients see it: replica groups, failover, restarts."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import IceGrid
import pytest

from services.common.contract import PushGrid
from tools.grid import icegrid, lifecycle

pytestmark = pytest.mark.integration

# every server of icegrid/pushgrid.xml: its node and replica group ("-" for none)
EXPECTED_SERVERS = {
    "DBAgent-1": ("node1", "DBAgentGroup"),
    "DBAgent-2": ("node2", "DBAgentGroup"),
    "TagAlias-1": ("node1", "TagAliasGroup"),
    "TagAlias-2": ("node2", "TagAliasGroup"),
    "Push-1": ("node1", "PushGroup"),
    "Push-2": ("node2", "PushGroup"),
    "Dispatcher-1": ("node1", "-"),
    "Dispatcher-2": ("node2", "-"),
    **{f"STC-{node}-{i}": (node, "-") for node in ("node1", "node2") for i in (1, 2, 3)},
    "PartnerGateway-1": ("node1", "PartnerGatewayGroup"),
    "PartnerGateway-2": ("node2", "PartnerGatewayGroup"),
    "Console-1": ("node1", "-"),
    "Glacier2Router": ("node1", "-"),
    "pushgrid.IcePatch2": ("node1", "-"),
}


def _pushgrid(run, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", run.path, *args], capture_output=True, text=True, timeout=300
    )


def test_status_shows_every_server_active_with_node_and_group(grid):
    result = _pushgrid(grid, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for server, (node, group) in EXPECTED_SERVERS.items():
        row = next(line for line in lines if line.startswith(server + " "))
        assert row.split()[1:3] == [node, "Active"] and row.split()[-1] == group
    assert any(line.split()[:2] == ["DBAgentGroup", "adaptive"] for line in lines)
    assert any(line.split()[:2] == ["TagAliasGroup", "roundrobin"] for line in lines)
    assert any(line.split()[:2] == ["PushGroup", "roundrobin"] for line in lines)
    assert any(line.split()[:2] == ["PartnerGatewayGroup", "roundrobin"] for line in lines)
    assert f"PushGridRouter/router:ssl -h 127.0.0.1 -p {grid.ports['partner-ssl']}" in result.stdout
    assert f"config for partners: {grid.partner_config}" in result.stdout
    assert f"console:    http://127.0.0.1:{grid.ports['console']}/" in result.stdout
    assert "Master up" in result.stdout and "Replica up" in result.stdout
    redis_line = next(line for line in lines if line.startswith("redis:"))
    assert redis_line.count(" master") == 3 and redis_line.count(" replica") == 3 and redis_line.endswith(": ok")


def test_up_again_is_idempotent(grid):
    before = {s["id"]: s["pid"] for s in icegrid.status(grid)["servers"]}
    result = _pushgrid(grid, "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "application pushgrid: updated" in result.stdout
    after = {s["id"]: s["pid"] for s in icegrid.status(grid)["servers"]}
    assert after == before  # nothing restarted


def test_icegridadmin_lists_application_groups_and_servers(grid):
    assert icegrid.icegridadmin(grid, "application list").split() == ["pushgrid"]
    servers = icegrid.icegridadmin(grid, "server list").split()
    assert sorted(servers) == sorted(EXPECTED_SERVERS)
    for sid in servers:
        assert icegrid.icegridadmin(grid, f"server state {sid}").startswith("active")
    objects = icegrid.icegridadmin(grid, "object list")
    assert {
        "DBAgent",
        "TagAlias",
        "Push",
        "STC-node1-1",
        "STC-node2-3",
        "PartnerVerifier",
        "PartnerSessionManager",
    } <= set(objects.split())
    assert sorted(icegrid.icegridadmin(grid, "registry list").split()) == ["Master", "Replica"]


def test_round_robin_spreads_tagalias_over_both_replicas(tagalias):
    ports = set()
    for _ in range(8):
        prx = tagalias.ice_locatorCacheTimeout(0).ice_connectionCached(False)
        ports.add(prx.ice_getConnection().getInfo().remotePort)
    assert len(ports) == 2


def test_every_call_succeeds_while_a_dbagent_replica_stops(grid, dbagent):
    creds = dbagent.createApp("failover-" + uuid.uuid4().hex[:8], 600)
    # many short-lived proxies spread over both replicas, so the stopped one is really in use
    failures: list[BaseException] = []
    calls = 0
    stop = threading.Event()

    def loop():
        nonlocal calls
        while not stop.is_set():
            try:
                dev = dbagent.ice_locatorCacheTimeout(1).registerDevice(creds.appKey, PushGrid.Platform.Android)
                info = dbagent.ice_locatorCacheTimeout(1).verifyDevice(
                    creds.appKey, dev.registrationId, dev.deviceToken
                )
                assert info.registrationId == dev.registrationId
                calls += 2
            except BaseException as e:  # noqa: BLE001 - every failure is a test failure
                failures.append(e)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        # activation="always" restarts a stopped server at once: take it out as an operator would
        icegrid.icegridadmin(grid, "server disable DBAgent-1")
        icegrid.icegridadmin(grid, "server stop DBAgent-1")
        with icegrid.admin_session(grid) as admin:
            assert admin.getServerState("DBAgent-1") == IceGrid.ServerState.Inactive
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
        icegrid.icegridadmin(grid, "server enable DBAgent-1")
    assert failures == []
    assert calls > 50
    lifecycle.wait_servers_active(grid, 60, progress=lambda *_: None)


def test_restarted_node_brings_its_servers_back(grid, tagalias):
    with icegrid.admin_session(grid) as admin:
        old = {sid: admin.getServerPid(sid) for sid in ("DBAgent-2", "TagAlias-2")}
    assert icegrid.stop_node(grid, "node2")
    with icegrid.admin_session(grid) as admin:
        assert admin.pingNode("node2") is False
    tagalias.ice_locatorCacheTimeout(0).listTags("0" * 24)  # the other replica still answers
    icegrid.start_node(grid, "node2")
    icegrid.wait_nodes(grid, ["node2"])
    lifecycle.wait_servers_active(grid, 60, progress=lambda *_: None)
    with icegrid.admin_session(grid) as admin:
        new = {sid: admin.getServerPid(sid) for sid in old}
        assert all(admin.getServerState(sid) == IceGrid.ServerState.Active for sid in old)
    assert all(new[sid] and new[sid] != old[sid] for sid in old)


def test_clients_resolve_through_the_replica_while_the_master_registry_is_down(grid, dbagent, tagalias):
    creds = dbagent.createApp("registry-" + uuid.uuid4().hex[:8], 600)
    assert icegrid.stop_registry(grid, "master")
    try:
        for _ in range(5):  # every call asks the locator again, which only the replica answers
            assert dbagent.ice_locatorCacheTimeout(0).getApp(creds.appKey).appKey == creds.appKey
            tagalias.ice_locatorCacheTimeout(0).listTags(creds.appKey)
        st = icegrid.status(grid)  # operators still see the grid, through the replica
        assert st["registries"]["Replica"] and not st["registries"].get("Master", False)
        assert all(s["state"] == "Active" for s in st["servers"])
    finally:
        icegrid.start_registries(grid)
    icegrid.wait_nodes(grid)  # the nodes find the master again
    with icegrid.admin_session(grid) as admin:
        assert admin.pingRegistry("Master")
