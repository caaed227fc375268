"""Node hosts over SSH: three hosts in network namespaces joined by a bridge, each with its own
sshd (key login only) on its own address and its own directory as its disk. Fabric checks them
all at once, then installs and starts an IceGrid node on each and places servers there: a grid
that spans the hosts, whose calls fail over when one host's processes die, and whose releases
reach every host's disk through IcePatch2."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import Ice
import paramiko
import pytest

from patch.distribution import IcePatch2Distribution
from services.common import release
from services.common.contract import PushGrid
from services.common.ice import client_communicator, dbagent, tagalias
from tests.integration.netns import Bridge, Unavailable
from tests.integration.sshhosts import SSHD, SshHost, hosts_cmd, keygen, pushgrid
from tests.integration.waiting import until
from tools.grid import icegrid
from tools.grid.rundir import RunDir

pytestmark = pytest.mark.integration


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed (tools/bootstrap.sh installs it)")
    try:
        with Bridge() as br:
            yield br
    except Unavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")


@pytest.fixture
def three_hosts(tmp_path: Path, bridge: Bridge) -> Iterator[list[SshHost]]:
    key = keygen(tmp_path / "client_key")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(SshHost(f"host{i}", tmp_path, key, bridge)) for i in (1, 2, 3)]


def test_hosts_are_recorded_and_checked_over_ssh_all_at_once(three_hosts: list[SshHost], tmp_path: Path) -> None:
    run = tmp_path / "run"
    for h in three_hosts:
        added = hosts_cmd(run, "add", h.name, h.ns.address, "--key", str(h.client_key), "--root", str(h.disk))
        assert added.returncode == 0, added.stderr
    listed = json.loads(hosts_cmd(run, "list", "--json").stdout)
    assert [(h["name"], h["address"]) for h in listed] == [(h.name, h.ns.address) for h in three_hosts]

    checked = hosts_cmd(run, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = dict(line.split(None, 1) for line in checked.stdout.splitlines())
    for h in three_hosts:
        assert lines[h.name].startswith("ok: ice 3.7"), lines
        assert f"root {h.disk}" in lines[h.name]
        assert h.disk.is_dir()  # made over SSH: the host's disk is ready for its node

    three_hosts[1].stop_sshd()  # one host goes dark: the others still answer, and the command says so
    checked = hosts_cmd(run, "check")
    assert checked.returncode == 1
    lines = dict(line.split(None, 1) for line in checked.stdout.splitlines())
    assert lines["host2"].startswith("FAILED") and "not reached over ssh" in lines["host2"]
    assert lines["host1"].startswith("ok") and lines["host3"].startswith("ok")

    assert hosts_cmd(run, "remove", "host2").returncode == 0
    assert [h["name"] for h in json.loads(hosts_cmd(run, "list", "--json").stdout)] == ["host1", "host3"]
    unknown = hosts_cmd(run, "check", "host2")
    assert unknown.returncode == 1 and "no host host2" in unknown.stderr


def test_sshd_on_a_host_takes_keys_only(three_hosts: list[SshHost]) -> None:
    host = three_hosts[0]
    with paramiko.Transport((host.ns.address, 22)) as transport:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("root", "a guess")
        assert refused.value.allowed_types == ["publickey"]


def test_hosts_on_the_bridge_reach_each_other_and_the_namespaces_are_gone_afterwards(
    tmp_path: Path, bridge: Bridge
) -> None:
    key = keygen(tmp_path / "k")
    with SshHost("hostx", tmp_path, key, bridge) as x, SshHost("hosty", tmp_path, key, bridge) as y:
        names = {x.ns.name, y.ns.name}
        assert names <= set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        assert x.ns.probe([(y.ns.address, 22)]) == {(y.ns.address, 22): "open"}  # y's sshd, across the bridge
        assert x.ns.ping(bridge.address)  # and the root namespace
    listed = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    assert not names & listed


# ---------------------------------------------------------------- a grid over the three hosts

APP = "0123456789abcdef01234567"
CALLS = 30


def status(run_dir: Path) -> dict[str, Any]:
    shown = pushgrid(run_dir, "status", "--json")
    assert shown.returncode in (0, 1), shown.stderr  # 1: something is down
    return dict(json.loads(shown.stdout))


def manifest_version(server_dir: Path) -> str:
    return str(json.loads((server_dir / release.MANIFEST).read_text())["version"])


def where_served(communicator: Ice.Communicator, count: int) -> tuple[list[str], float]:
    """count calls each to TagAlias and DBAgent, each resolved afresh through its replica group
    on a connection of its own: the address of the replica that answered each, and the slowest
    call's seconds."""
    served, slowest = [], 0.0
    for i in range(count):
        for make in (tagalias, dbagent):
            fresh = make(communicator).ice_locatorCacheTimeout(0).ice_connectionId(f"c{time.monotonic_ns()}")
            started = time.monotonic()
            if make is tagalias:
                assert fresh.getTags(APP, f"device{i}") == []
            else:
                with pytest.raises(PushGrid.UnknownApp):  # an answer from DBAgent: no such app
                    fresh.getApp(APP)
            slowest = max(slowest, time.monotonic() - started)
            served.append(fresh.ice_getCachedConnection().getInfo().remoteAddress)
    return served, slowest


@pytest.fixture
def spanning_grid(three_hosts: list[SshHost], bridge: Bridge, tmp_path: Path) -> Iterator[Path]:
    """A grid whose backends and registries listen on the bridge, with a node and DBAgent,
    TagAlias and Push on each of the three hosts, deployed over SSH; taken down afterwards
    (before the hosts' namespaces go), also when the test fails."""
    run_dir = tmp_path / "spanning"
    try:
        up = pushgrid(run_dir, "up", "--internal-host", bridge.address, timeout=300)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        for h in three_hosts:
            added = hosts_cmd(run_dir, "add", h.name, h.ns.address, "--key", str(h.client_key), "--root", str(h.disk))
            assert added.returncode == 0, added.stderr
        deployed = pushgrid(run_dir, "hosts", "deploy", *(h.name for h in three_hosts), timeout=600)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        print(deployed.stdout)
        yield run_dir
    finally:
        down = pushgrid(run_dir, "down", timeout=300)
        print(time.strftime("%X"), down.stdout, down.stderr)


def test_a_grid_spans_three_hosts_patches_each_disk_and_fails_over_when_hosts_are_lost(
    spanning_grid: Path, three_hosts: list[SshHost]
) -> None:
    run_dir, by_name = spanning_grid, {h.name: h for h in three_hosts}
    published = IcePatch2Distribution(RunDir(str(run_dir)).patch_data).published()

    def on_hosts() -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in status(run_dir)["servers"] if s["node"] in by_name}

    def check_running(version: str) -> None:
        """Every host server runs version from the copy its node patched onto its host's disk."""
        servers = on_hosts()
        assert len(servers) == 9 and {s["node"] for s in servers.values()} == set(by_name)
        for sid, s in servers.items():
            host = by_name[s["node"]]
            assert (s["state"], s["release"]) == ("Active", version), s
            cwd = Path(os.readlink(f"/proc/{s['pid']}/cwd"))
            assert cwd == host.disk / "node" / "data" / "servers" / sid / "distrib" / "pushgrid"
            assert manifest_version(cwd) == version
            assert s["pid"] in host.ns.pids()  # it runs on its host, not in this namespace

    check_running(published)

    # an upgrade patches the code onto every host's own disk through IcePatch2
    built = pushgrid(run_dir, "release", "build", "--version", "hosts-2")
    assert built.returncode == 0, built.stderr
    upgraded = pushgrid(run_dir, "upgrade", "hosts-2", "--soak", "1", "--stage", "30", timeout=600)
    assert upgraded.returncode == 0, upgraded.stdout[-3000:] + upgraded.stderr[-3000:]
    check_running("hosts-2")

    # TagAlias and DBAgent served by the hosts alone: the grid's own replicas are disabled and stopped
    run = RunDir(str(run_dir))
    with icegrid.admin_session(run) as admin:
        for sid in ("TagAlias-1", "TagAlias-2", "DBAgent-1", "DBAgent-2"):
            admin.enableServer(sid, False)
            admin.stopServer(sid)
    communicator = client_communicator(run.client_config)
    try:
        served, _ = where_served(communicator, CALLS)
        assert set(served) == {h.ns.address for h in three_hosts}  # spread over the three hosts

        killed = by_name["host2"].kill_everything()  # its sshd, node and servers: the host is lost
        assert killed
        until(lambda: not by_name["host2"].ns.pids(), "host2's processes gone", 10)
        served, slowest = where_served(communicator, CALLS)  # every call answered, none by host2
        assert set(served) == {by_name["host1"].ns.address, by_name["host3"].ns.address}
        print(f"{2 * CALLS} calls after host2 died: slowest {slowest * 1000:.0f} ms")

        # host3 drops off the network (its link goes down; its processes run on, unreachable)
        by_name["host3"].ns.run(["ip", "link", "set", "veth0", "down"], check=True)
        served, slowest = where_served(communicator, CALLS // 3)  # every call answered, by host1 alone
        assert set(served) == {by_name["host1"].ns.address}
        print(f"{2 * (CALLS // 3)} calls after host3 vanished: slowest {slowest * 1000:.0f} ms")
    finally:
        communicator.destroy()
    shown = status(run_dir)  # the operator sees which hosts are gone
    assert shown["nodes"]["host1"] and not shown["nodes"].get("host2") and not shown["nodes"].get("host3")
    assert {s["state"] for s in shown["servers"] if s["node"] in ("host2", "host3")} == {"NodeDown"}
