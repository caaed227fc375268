"""Placing servers on node hosts: kinds, server numbers, and the descriptor a grid with hosts
deploys (no SSH here; tests/integration/test_hosts.py deploys for real)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from tools.grid import hostnode, hosts, icegrid
from tools.grid.rundir import RunDir


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    run = RunDir(str(tmp_path / "run"))
    hosts.add(run, hosts.Host("host1", "10.77.0.1", root="/srv/pg"))
    hosts.add(run, hosts.Host("host2", "10.77.0.2", user="deploy"))
    return run


def test_kinds_are_named_case_blind_and_unknown_ones_refused() -> None:
    assert hostnode.parse_kinds("dbagent, Push,stc,push") == ("DBAgent", "Push", "STC")
    for bad in ("", "dbagent,router", "glacier2router"):
        with pytest.raises(hosts.HostError, match="comma-separated list of DBAgent"):
            hostnode.parse_kinds(bad)


def test_each_host_keeps_a_server_number_no_other_host_has(run: RunDir) -> None:
    (h1,) = hostnode.place(run, ["host1"], ("DBAgent", "Push"))
    (h2,) = hostnode.place(run, ["host2"], ("Push",))
    (again,) = hostnode.place(run, ["host1"], ("TagAlias",))  # re-placing keeps the number
    assert (h1.index, h2.index, again.index) == (3, 4, 3)  # node1 and node2 have 1 and 2
    assert hostnode.server_ids(again) == ["TagAlias-3"]
    assert [h.servers for h in hosts.all_hosts(RunDir(run.path))] == [("TagAlias",), ("Push",)]
    hosts.add(run, hosts.Host("host1", "10.77.0.1", root="/srv/other"))  # re-adding keeps placement
    assert hosts.find(run, ["host1"])[0].servers == ("TagAlias",)


def test_without_placed_hosts_the_checked_in_descriptor_is_deployed(run: RunDir) -> None:
    assert icegrid.application_descriptor(run) == icegrid.DESCRIPTOR


def test_placed_hosts_get_a_node_with_their_own_python_address_and_user(run: RunDir) -> None:
    hostnode.place(run, ["host1"], ("DBAgent", "STC"))
    hostnode.place(run, ["host2"], ("Push",))
    path = icegrid.application_descriptor(run)
    assert path != icegrid.DESCRIPTOR and path.startswith(run.path)
    app = ElementTree.parse(path).getroot().find("application")
    assert app is not None
    nodes = {n.get("name"): n for n in app.findall("node")}
    assert set(nodes) == {"node1", "node2", "host1", "host2"}  # the grid's own nodes stay

    def variables(node: ElementTree.Element) -> dict[str | None, str | None]:
        return {v.get("name"): v.get("value") for v in node.findall("variable")}

    assert variables(nodes["host1"]) == {
        "python": "/srv/pg/venv/bin/python",
        "bind": "10.77.0.1",
        "server.user": "root",
    }
    assert variables(nodes["host2"])["server.user"] == ""  # a node not run as root runs servers as itself
    assert [(s.get("template"), s.get("index"), s.get("port")) for s in nodes["host1"].findall("server-instance")] == [
        ("DBAgent", "3", None),
        ("STC", "1", str(hostnode.HOST_DEVICE_PORT)),
    ]
    for include in app.findall("include"):  # the copy sits in the run directory: includes are absolute
        assert Path(include.get("file", "")).is_file()
    assert run.device_url("host1") == f"ws://10.77.0.1:{hostnode.HOST_DEVICE_PORT}/v1/device"


def test_hosts_get_only_the_pins_of_what_servers_import() -> None:
    pins = hostnode.requirements()
    assert sorted(p.split("==")[0] for p in pins) == sorted(hostnode.SERVER_DISTRIBUTIONS)
    assert all("==" in p for p in pins)


def test_a_hosts_node_joins_both_registries_on_the_internal_address_and_gives_up_on_lost_peers_fast(
    run: RunDir,
) -> None:
    run.set_internal_host("10.77.0.254")
    host1, host2 = hosts.all_hosts(run)
    config = hostnode.node_config(run, host1)
    assert config["Ice.Default.Locator"].count("tcp -h 10.77.0.254 ") == 2
    assert config["IceGrid.Node.Endpoints"].startswith("tcp -h 10.77.0.1 ")
    assert config["IceGrid.Node.Data"] == "/srv/pg/node/data"
    assert int(config["Ice.Override.ConnectTimeout"]) <= 2000
    assert config["IceGrid.Node.AllowRunningServersAsRoot"] == "1"
    assert "IceGrid.Node.AllowRunningServersAsRoot" not in hostnode.node_config(run, host2)
