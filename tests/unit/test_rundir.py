"""The run directory's settings: ports, the kept partner and internal hosts, partner.cfg and the
descriptor variables router.xml gets."""

from __future__ import annotations

import json
import os
import socket

import Ice
import pytest

from services.common import limits
from services.common.config import InvalidInternalHost
from tools.grid import certs, mariadb
from tools.grid.icegrid import descriptor_variables
from tools.grid.rundir import PORT_NAMES, RunDir


def test_partner_ports_are_picked_and_added_to_an_older_run_directory(tmp_path):
    (tmp_path / "ports.json").write_text(json.dumps({n: 1000 + i for i, n in enumerate(PORT_NAMES[:-2])}))
    ports = RunDir(str(tmp_path)).ports
    assert {"partner-tcp", "partner-ssl"} <= set(ports) and ports["partner-tcp"] != ports["partner-ssl"]
    assert ports["mysql"] == 1000  # the others are kept
    assert json.loads((tmp_path / "ports.json").read_text()) == ports


def test_partner_host_defaults_to_loopback_and_is_kept_across_run_dir_objects(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.partner_host == "127.0.0.1"
    assert run.set_partner_host("10.77.0.1") is True
    assert run.set_partner_host("10.77.0.1") is False
    assert RunDir(str(tmp_path)).partner_host == "10.77.0.1"
    assert os.stat(tmp_path / "settings.json").st_mode & 0o777 == 0o600


def test_an_invalid_partner_host_is_refused_and_not_kept(tmp_path):
    run = RunDir(str(tmp_path))
    with pytest.raises(certs.InvalidHost):
        run.set_partner_host("::1")
    assert RunDir(str(tmp_path)).partner_host == "127.0.0.1"


def test_partner_config_names_the_router_ssl_first_with_the_grid_ca_and_no_locator(tmp_path):
    run = RunDir(str(tmp_path))
    run.set_partner_host("10.77.0.1")
    path = run.write_partner_config()
    props = Ice.createProperties()
    props.load(path)
    p = run.ports
    assert props.getProperty("Ice.Default.Router") == (
        f"PushGridRouter/router:ssl -h 10.77.0.1 -p {p['partner-ssl']}:tcp -h 10.77.0.1 -p {p['partner-tcp']}"
    )
    assert props.getProperty("Ice.Default.Locator") == ""
    assert props.getProperty("IceSSL.CAs") == os.path.join(run.certs_dir, "ca.pem")
    assert props.getProperty("IceSSL.CheckCertName") == "1"
    assert props.getProperty("Ice.Plugin.IceSSL") == "IceSSL:createIceSSL"
    assert props.getPropertyAsInt("Ice.ACM.Client.Timeout") == limits.PARTNER_SESSION_TIMEOUT_SECONDS
    text = open(path).read()
    assert run.secrets["admin"] not in text and run.secrets["mysql"] not in text  # meant to be handed out


def test_router_communicator_loads_partner_config_with_its_ssl_plugin(tmp_path):
    run = RunDir(str(tmp_path))
    certs.ensure(run.certs_dir, run.partner_host)
    init = Ice.InitializationData()
    init.properties = Ice.createProperties(["--Ice.Config=" + run.write_partner_config()])
    communicator = Ice.initialize(init)  # IceSSL loads the CA, or this raises
    try:
        router = communicator.getDefaultRouter()
        assert router.ice_getIdentity().category == "PushGridRouter"
        assert [e.toString().split()[0] for e in router.ice_getEndpoints()] == ["ssl", "tcp"]
    finally:
        communicator.destroy()


def test_descriptor_variables_carry_the_partner_door_and_its_limits(tmp_path):
    run = RunDir(str(tmp_path))
    run.set_partner_host("10.77.0.1")
    v = descriptor_variables(run)
    assert v["partner.host"] == "10.77.0.1"
    assert v["partner.tcp.port"] == str(run.ports["partner-tcp"])
    assert v["partner.ssl.port"] == str(run.ports["partner-ssl"])
    assert v["certs"] == run.certs_dir
    assert v["partner.session.timeout"] == str(limits.PARTNER_SESSION_TIMEOUT_SECONDS)
    assert v["partner.request.max.kib"] == str(limits.PARTNER_REQUEST_MAX_KIB)
    assert all(" " not in value for value in v.values())  # icegridadmin splits its command on spaces


def test_internal_host_defaults_to_loopback_and_moves_every_internal_endpoint(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.internal_host == "127.0.0.1"
    assert run.set_internal_host("10.77.0.254") is True
    moved = RunDir(str(tmp_path))
    assert moved.internal_host == "10.77.0.254"
    props = moved.backend_properties()
    assert props["PushGrid.MySQL.Host"] == "10.77.0.254"
    assert all(n.startswith("10.77.0.254:") for n in props["PushGrid.Redis.Nodes"].split(","))
    assert props["PushGrid.Kafka.Bootstrap"].startswith("10.77.0.254:")
    assert moved.locator.count("tcp -h 10.77.0.254 ") == 2
    assert moved.partner_host == "127.0.0.1"  # the public door is its own setting


@pytest.mark.parametrize("host", ["8.8.8.8", "0.0.0.0", "::1", "node1", "10.0.0.300"])
def test_an_internal_host_that_is_public_or_not_an_address_is_refused_and_not_kept(tmp_path, host):
    run = RunDir(str(tmp_path))
    with pytest.raises(InvalidInternalHost):
        run.set_internal_host(host)
    assert RunDir(str(tmp_path)).internal_host == "127.0.0.1"


def test_mysql_lets_the_pushgrid_user_in_from_the_node_hosts_subnet_only_when_internal_is_private():
    assert mariadb.client_hosts("127.0.0.1") == ["127.0.0.1"]
    assert mariadb.client_hosts("10.77.0.254") == ["10.77.0.%"]


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    """No port-0 endpoint or outgoing connection can take a port chosen before its server starts."""
    from tools.grid import rundir

    ports = [rundir.free_port() for _ in range(50)]
    assert len(set(ports)) == 50 and all(1024 <= p < rundir._ephemeral_start() for p in ports)
    for p in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
