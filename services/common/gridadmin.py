"""What the grid looks like through IceGrid's admin: registries, nodes, replica groups, servers,
the properties servers set themselves, and their metrics.

One copy for every reader: `pushgrid status`, `release list`, `metrics` and the upgrade tool
(tools/, patch/) read through an admin session of the run directory's operator, the console
(services/console, which runs from a release: only services/ is there) through the session of
the operator logged in. Each function takes the AdminPrx and opens nothing.
"""

from __future__ import annotations

import concurrent.futures
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

import Ice
import IceGrid

from services.common import metrics, release

FETCH_SECONDS = 5.0
PROPERTY_TIMEOUT_MS = 5000
FETCH_THREADS = 8


def registry(communicator: Ice.Communicator) -> IceGrid.RegistryPrx:
    """The master registry, or a replica while the master is down (it can read, not deploy).

    The instance name is the default locator's category (IceGrid gives every server its locator;
    tools have the run directory's), so no caller names it."""
    instance = communicator.getDefaultLocator().ice_getIdentity().category
    names = ["Registry", "Registry-Replica"]
    for i, name in enumerate(names):
        try:
            return IceGrid.RegistryPrx.checkedCast(communicator.stringToProxy(f"{instance}/{name}"))
        except Ice.LocalException:
            if i == len(names) - 1:
                raise
    raise AssertionError("unreachable")


def keep_alive(registry_prx: IceGrid.RegistryPrx) -> None:
    """The registry destroys a session whose connection goes quiet: heartbeat it, always."""
    registry_prx.ice_getConnection().setACM(registry_prx.getACMTimeout(), Ice.Unset, Ice.ACMHeartbeat.HeartbeatAlways)


def server_states(admin: IceGrid.AdminPrx) -> dict[str, IceGrid.ServerState | None]:
    """Each server's state; None where its node cannot be reached."""
    states = {}
    for sid in admin.getAllServerIds():
        try:
            states[sid] = admin.getServerState(sid)
        except IceGrid.NodeUnreachableException:
            states[sid] = None
    return states


def descriptor_property(info: IceGrid.ServerInfo, name: str) -> str | None:
    """A property of a deployed server, as the node gives it (variables substituted)."""
    for prop in info.descriptor.propertySet.properties:
        if prop.name == name:
            return prop.value
    return None


def distributed(info: IceGrid.ServerInfo) -> bool:
    """True for a server that runs a patched release (it has a <distrib>)."""
    return bool(info.descriptor.distrib and info.descriptor.distrib.directories)


def server_property(admin: IceGrid.AdminPrx, server_id: str, name: str) -> str:
    """A property an active server set itself (the release it runs, where its metrics are), read
    through its Properties admin facet; "" if it does not answer."""
    try:
        props = Ice.PropertiesAdminPrx.uncheckedCast(admin.getServerAdmin(server_id), "Properties")
        return str(props.ice_invocationTimeout(PROPERTY_TIMEOUT_MS).getProperty(name))
    except (Ice.Exception, IceGrid.ServerNotExistException, IceGrid.NodeUnreachableException):
        return ""


def server_release(admin: IceGrid.AdminPrx, server_id: str) -> str:
    """The release an active server says it runs (services.common.release)."""
    return server_property(admin, server_id, release.PROPERTY)


def registries(admin: IceGrid.AdminPrx) -> dict[str, bool]:
    """Each registry replica and whether it answers."""
    out = {}
    for name in admin.getAllRegistryNames():
        try:
            out[name] = admin.pingRegistry(name)
        except IceGrid.RegistryNotExistException:
            out[name] = False
    return out


def nodes(admin: IceGrid.AdminPrx) -> dict[str, bool]:
    """Each node and whether it answers."""
    out = {}
    for name in admin.getAllNodeNames():
        try:
            out[name] = admin.pingNode(name)
        except (IceGrid.NodeNotExistException, IceGrid.NodeUnreachableException):
            out[name] = False
    return out


def node_info(admin: IceGrid.AdminPrx, name: str) -> dict[str, Any] | None:
    """The host a node runs on (hostname, OS, processors); None while it is down."""
    try:
        info = admin.getNodeInfo(name)
    except (IceGrid.NodeNotExistException, IceGrid.NodeUnreachableException):
        return None
    return {
        "hostname": info.hostname,
        "os": f"{info.os} {info.release}",
        "machine": info.machine,
        "processors": info.nProcessors,
        "ice": info.version,
    }


def replica_groups(admin: IceGrid.AdminPrx, application: str) -> dict[str, dict[str, Any]]:
    """The application's replica groups: load-balancing policy and well-known objects."""
    groups: dict[str, dict[str, Any]] = {}
    if application not in admin.getAllApplicationNames():
        return groups
    for group in admin.getApplicationInfo(application).descriptor.replicaGroups:
        policy = (
            type(group.loadBalancing).__name__.replace("LoadBalancingPolicy", "").lower()
            if group.loadBalancing
            else "none"
        )
        groups[group.id] = {"policy": policy, "objects": [Ice.identityToString(o.id) for o in group.objects]}
    return groups


def servers(admin: IceGrid.AdminPrx) -> list[dict[str, Any]]:
    """Every server by id: node, state, pid, enabled, replica groups, whether it runs a patched
    release (distributed: the router and IcePatch2 are Ice's own binaries) and which."""
    out = []
    for sid in sorted(admin.getAllServerIds()):
        info = admin.getServerInfo(sid)
        try:
            state = str(admin.getServerState(sid))
            pid = admin.getServerPid(sid) if state == "Active" else 0
            enabled = admin.isServerEnabled(sid)
        except IceGrid.NodeUnreachableException:
            state, pid, enabled = "NodeDown", 0, True
        version = (server_release(admin, sid) or "?") if state == "Active" and distributed(info) else ""
        out.append(
            {
                "id": sid,
                "node": info.node,
                "state": state,
                "pid": pid,
                "enabled": enabled,
                "replica_groups": sorted({a.replicaGroupId for a in info.descriptor.adapters if a.replicaGroupId}),
                "distributed": distributed(info),
                "release": version,
            }
        )
    return out


def status(admin: IceGrid.AdminPrx, application: str) -> dict[str, Any]:
    """Registries, nodes, the application's replica groups, and every server."""
    return {
        "registries": registries(admin),
        "nodes": nodes(admin),
        "replica_groups": replica_groups(admin, application),
        "servers": servers(admin),
    }


def active_servers(admin: IceGrid.AdminPrx) -> list[str]:
    """The ids of the servers running now."""
    return sorted(sid for sid, state in server_states(admin).items() if state == IceGrid.ServerState.Active)


def metrics_urls(admin: IceGrid.AdminPrx, active: Iterable[str] | None = None) -> dict[str, str]:
    """Where each active server (those of `active`, if the caller read them already) serves its
    metrics (its PushGrid.Metrics.Url), by server id."""
    out = {}
    for sid in active_servers(admin) if active is None else active:
        url = server_property(admin, sid, metrics.URL_PROPERTY)
        if url:
            out[sid] = url
    return out


def _fetch(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return str(answer.read().decode("utf-8"))


def fetch_metrics(urls: Mapping[str, str], timeout: float = FETCH_SECONDS) -> tuple[dict[str, str], list[str]]:
    """Each server's metrics text, fetched side by side, and the servers that did not answer."""
    texts: dict[str, str] = {}
    silent: list[str] = []
    if not urls:
        return texts, silent
    with concurrent.futures.ThreadPoolExecutor(min(FETCH_THREADS, len(urls))) as pool:
        futures = {sid: pool.submit(_fetch, url, timeout) for sid, url in urls.items()}
        for sid, future in futures.items():
            try:
                texts[sid] = future.result()
            except (OSError, UnicodeDecodeError):
                silent.append(sid)
    return texts, sorted(silent)
