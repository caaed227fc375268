"""IceGrid on loopback: a registry master and one replica, two nodes, and the admin session.

Operators use plain `icegridadmin --Ice.Config=RUN/pushgrid.cfg` against the same grid; this
module uses the same registry through IceGrid's Admin interface for deploy and status.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import Ice
import IceGrid

from services import console
from services.common import gridadmin, limits, paths
from services.common.gridadmin import server_property as server_property
from services.common.gridadmin import server_release as server_release
from services.common.gridadmin import server_states as server_states
from services.common.ice import client_communicator
from tools.grid import procs, router
from tools.grid.rundir import INSTANCE_NAME, NODES, RunDir, write_config

REGISTRIES = ("master", "replica")
APPLICATION = "pushgrid"
DESCRIPTOR = str(paths.ROOT / "icegrid" / "pushgrid.xml")


def _files(run: RunDir, name: str) -> tuple[str, str, str]:
    base = run.dir("icegrid", name)
    return os.path.join(base, "config"), os.path.join(base, "pid"), os.path.join(base, "log")


def _admin_passwords(run: RunDir) -> str:
    """IceGrid's admin crypt-passwords file: the admin password is kept only as a SHA-512 crypt."""
    path = run.sub("icegrid", "admin-passwords")
    if not os.path.exists(path):
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"],
            input=run.secrets["admin"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        write_config(path, {})
        with open(path, "w") as f:
            f.write(f"admin {hashed}\n")
    return path


def _registry_config(run: RunDir, name: str) -> dict[str, str]:
    port, host = run.ports[f"registry-{name}"], run.internal_host
    props = {
        "IceGrid.InstanceName": INSTANCE_NAME,
        "IceGrid.Registry.Client.Endpoints": f"tcp -h {host} -p {port}",
        "IceGrid.Registry.Server.Endpoints": f"tcp -h {host}",
        "IceGrid.Registry.Internal.Endpoints": f"tcp -h {host}",
        "IceGrid.Registry.LMDB.Path": run.dir("icegrid", name, "db"),
        "IceGrid.Registry.LMDB.MapSize": "64",
        "IceGrid.Registry.AdminCryptPasswords": _admin_passwords(run),
        "IceGrid.Registry.DynamicRegistration": "0",
        "IceGrid.Registry.Discovery.Enabled": "0",
        # a node host that vanishes: the registry gives up connecting in 2 s, closes a node's
        # connection that heard no heartbeat for 5 s (failing the calls waiting on it), and
        # drops the node's session after 10 s instead of the default 30
        "Ice.Override.ConnectTimeout": "2000",
        "Ice.Override.CloseTimeout": "2000",
        "Ice.ACM.Client.Timeout": "5",
        "IceGrid.Registry.NodeSessionTimeout": "10",
        "Ice.ProgramName": f"pushgrid-registry-{name}",
    }
    if name != "master":
        props["IceGrid.Registry.ReplicaName"] = name.capitalize()
        props["Ice.Default.Locator"] = f"{INSTANCE_NAME}/Locator:tcp -h {host} -p {run.ports['registry-master']}"
    return props


# Every node heartbeats its connections often enough for the registry's 5 s ACM timeout.
NODE_HEARTBEATS = {"Ice.ACM.Server.Timeout": "5", "Ice.ACM.Server.Heartbeat": "3"}  # 3: HeartbeatAlways


def _node_config(run: RunDir, node: str) -> dict[str, str]:
    # A node started as root runs its servers as nobody, who cannot use this checkout or run
    # directory; on a machine where everything runs as root (this one, CI) the descriptor's
    # server.user asks for root, which the node must allow.
    as_root = {"IceGrid.Node.AllowRunningServersAsRoot": "1"} if os.geteuid() == 0 else {}
    return {
        **as_root,
        "IceGrid.Node.Name": node,
        "IceGrid.Node.Endpoints": f"tcp -h {run.internal_host}",
        "IceGrid.Node.Data": run.dir("icegrid", node, "data"),
        "IceGrid.Node.Output": run.dir("icegrid", node, "logs"),
        "IceGrid.Node.RedirectErrToOut": "1",
        "IceGrid.Node.CollocateRegistry": "0",
        # re-enable a server that crashed after 5 s instead of leaving it disabled for good
        "IceGrid.Node.DisableOnFailure": "5",
        "IceGrid.Node.Trace.Activator": "1",
        **NODE_HEARTBEATS,
        "Ice.Default.Locator": run.locator,
        "Ice.ProgramName": f"pushgrid-{node}",
    }


def start_registries(run: RunDir) -> None:
    for name in REGISTRIES:
        cfg, pid_file, log = _files(run, name)
        write_config(cfg, _registry_config(run, name))
        procs.start(["icegridregistry", f"--Ice.Config={cfg}"], pid_file, log)
        port = run.ports[f"registry-{name}"]
        procs.wait_for(
            functools.partial(procs.port_open, port, run.internal_host), f"IceGrid registry {name}", 30, log, pid_file
        )


def start_node(run: RunDir, node: str) -> None:
    cfg, pid_file, log = _files(run, node)
    write_config(cfg, _node_config(run, node))
    procs.start(["icegridnode", f"--Ice.Config={cfg}"], pid_file, log)


def wait_nodes(run: RunDir, nodes: Sequence[str] = NODES, timeout: float = 30) -> None:
    with admin_session(run) as admin:
        for node in nodes:
            _, pid_file, log = _files(run, node)
            procs.wait_for(functools.partial(admin.pingNode, node), f"IceGrid node {node}", timeout, log, pid_file)


def stop_node(run: RunDir, node: str) -> bool:
    """Stops a node; it deactivates its servers gracefully first."""
    _, pid_file, _ = _files(run, node)
    return procs.stop(pid_file, timeout=60)


def stop_registry(run: RunDir, name: str) -> bool:
    """Stops one registry replica ("master" or "replica"); start_registries brings it back."""
    _, pid_file, _ = _files(run, name)
    return procs.stop(pid_file, timeout=20)


def stop_registries(run: RunDir) -> bool:
    stopped = False
    for name in reversed(REGISTRIES):
        stopped |= stop_registry(run, name)
    return stopped


@contextlib.contextmanager
def operator_session(run: RunDir) -> Iterator[IceGrid.AdminSessionPrx]:
    """An IceGrid admin session on the master registry, or on the replica while the master is
    down: the session itself, for what only it does (servers' output files)."""
    communicator = client_communicator(run.client_config)
    try:
        registry = gridadmin.registry(communicator)
        session = registry.createAdminSession("admin", run.secrets["admin"])
        gridadmin.keep_alive(registry)
        try:
            yield session
        finally:
            with contextlib.suppress(Ice.LocalException):
                session.destroy()
    finally:
        communicator.destroy()


@contextlib.contextmanager
def admin_session(run: RunDir) -> Iterator[IceGrid.AdminPrx]:
    """The admin interface of an operator_session: servers, nodes, applications."""
    with operator_session(run) as session:
        yield session.getAdmin()


def icegridadmin(run: RunDir, command: str) -> str:
    """Runs one icegridadmin command against the grid, as an operator would."""
    result = subprocess.run(
        ["icegridadmin", f"--Ice.Config={run.client_config}", "-e", command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"icegridadmin {command!r} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def descriptor_variables(run: RunDir) -> dict[str, str]:
    """The values `application add/update` substitutes into icegrid/pushgrid.xml."""
    props = run.backend_properties()
    return {
        "grid.python": str(paths.ROOT / ".venv" / "bin" / "python"),
        "patch.dir": str(run.patch_data),
        "grid.bind": run.internal_host,
        "mysql.host": props["PushGrid.MySQL.Host"],
        "grid.server.user": "root" if os.geteuid() == 0 else "",
        "mysql.port": props["PushGrid.MySQL.Port"],
        "mysql.password.file": props["PushGrid.MySQL.PasswordFile"],
        "redis.nodes": props["PushGrid.Redis.Nodes"],
        "redis.password.file": props["PushGrid.Redis.PasswordFile"],
        "kafka.bootstrap": props["PushGrid.Kafka.Bootstrap"],
        "metrics": run.metrics,
        **{f"stc.port.{node}": str(run.ports[f"stc-{node}"]) for node in NODES},
        "console.port": str(run.ports["console"]),
        # the partners' door (glacier2/router.xml)
        "partner.host": run.partner_host,
        "partner.tcp.port": str(run.ports["partner-tcp"]),
        "partner.ssl.port": str(run.ports["partner-ssl"]),
        "certs": run.certs_dir,
        "partner.session.timeout": str(limits.PARTNER_SESSION_TIMEOUT_SECONDS),
        "partner.request.max.kib": str(limits.PARTNER_REQUEST_MAX_KIB),
    }


def application_descriptor(run: RunDir) -> str:
    """The descriptor to deploy: icegrid/pushgrid.xml itself, or, once servers are placed on node
    hosts (tools/grid/hostnode.py), a copy in the run directory with a <node> for each host."""
    from tools.grid import hostnode, hosts

    placed = [h for h in hosts.all_hosts(run) if h.servers]
    if not placed:
        return DESCRIPTOR
    tree = ElementTree.parse(DESCRIPTOR)
    app = tree.getroot().find("application")
    assert app is not None, f"{DESCRIPTOR} has no <application>"
    for include in app.iter("include"):  # the copy lives elsewhere: make its includes absolute
        include.set("file", str((Path(DESCRIPTOR).parent / include.get("file", "")).resolve()))
    for host in placed:
        app.append(ElementTree.fromstring(hostnode.node_element(host, hostnode.node_variables(host))))
    path = run.sub("icegrid", "pushgrid.xml")
    tree.write(path, encoding="UTF-8", xml_declaration=True)
    return path


def restarted_by_deploy(run: RunDir) -> list[str]:
    """The servers deploy() would restart, as IceGrid itself instantiates the descriptor with this
    run directory's variables (`application diff --servers`); none if nothing is deployed yet."""
    with admin_session(run) as admin:
        if APPLICATION not in admin.getAllApplicationNames():
            return []
    variables = " ".join(f"{k}={v}" for k, v in descriptor_variables(run).items())
    diff = icegridadmin(run, f"application diff --servers '{application_descriptor(run)}' {variables}")
    return sorted(re.findall(r"server `([^']+)': .*\(restart required\)", diff))


def deploy(run: RunDir) -> str:
    """Adds the application, or updates it if the registry has it already; returns which."""
    with admin_session(run) as admin:
        exists = APPLICATION in admin.getAllApplicationNames()
    variables = " ".join(f"{k}={v}" for k, v in descriptor_variables(run).items())
    verb = "update" if exists else "add"
    icegridadmin(run, f"application {verb} '{application_descriptor(run)}' {variables}")
    return verb + "d" if verb == "update" else "added"


def on_demand(admin: IceGrid.AdminPrx, server_id: str) -> bool:
    """Whether the node starts server_id only when it is called (activation="on-demand")."""
    return admin.getServerInfo(server_id).descriptor.activation == "on-demand"


def status(run: RunDir) -> dict[str, Any]:
    """Registries, nodes, replica groups, every server with its node, state and replica group
    (services.common.gridadmin), where partners reach the router, and where the console is."""
    with admin_session(run) as admin:
        st = gridadmin.status(admin, APPLICATION)
        try:
            router_info = admin.getServerInfo(router.SERVER_ID)
        except IceGrid.ServerNotExistException:
            router_info = None
        endpoints = router_info and gridadmin.descriptor_property(router_info, "Glacier2.Client.Endpoints")
        st["partner"] = {"endpoints": endpoints, "config": run.partner_config}
        st["console"] = gridadmin.server_property(admin, console.SERVER_ID, console.URL_PROPERTY)
    return st
