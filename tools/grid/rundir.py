"""A run directory holds one local grid's state: data, logs, pid files, ports and configs.

Ports are picked free on first use and kept in ports.json, so a grid comes back on the same
ports and two grids in two run directories (a developer's and a test run's) never collide.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.config import check_internal_host

PORT_NAMES = (
    "mysql",
    "redis1",
    "redis2",
    "redis3",
    "redis4",
    "redis5",
    "redis6",
    "redis1-bus",
    "redis2-bus",
    "redis3-bus",
    "redis4-bus",
    "redis5-bus",
    "redis6-bus",
    "kafka",
    "registry-master",
    "registry-replica",
    "stc-node1",
    "stc-node2",
    "partner-tcp",
    "partner-ssl",
    "console",
)
REDIS_NODES = ("redis1", "redis2", "redis3", "redis4", "redis5", "redis6")  # three masters, a replica each
SECRET_NAMES = ("mysql", "redis", "admin")
NODES = ("node1", "node2")
HOST_DEVICE_PORT = 8090  # STC's device port on a node host's own address (tools/grid/hostnode.py)
INSTANCE_NAME = "PushGrid"
ROUTER_INSTANCE_NAME = "PushGridRouter"  # Glacier2.InstanceName in glacier2/router.xml
DEFAULT_SETTINGS = {"partner_host": "127.0.0.1", "internal_host": "127.0.0.1", "metrics": "on"}
METRICS_VALUES = ("on", "off")  # the descriptor's variable metrics (icegrid/pushgrid.xml)
CLIENT_CONFIG = "pushgrid.cfg"


_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    """The first port the kernel hands to sockets bound to port 0 (and to outgoing connections)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing listens on right now, below the kernel's ephemeral range.

    Ports are chosen before the servers that take them start; a port from the ephemeral range
    could meanwhile be given to another process's port-0 endpoint or outgoing connection (an
    IceGrid registry took an STC's port so). Below that range only a deliberate bind takes one,
    and none is handed out twice by this process."""
    top = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(max(1024, top - 20000), top)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def client_config_path(run_dir: str) -> str:
    """The client config `pushgrid up` writes into run_dir, named without creating anything."""
    return os.path.join(os.path.abspath(run_dir), CLIENT_CONFIG)


@dataclass
class RunDir:
    """Paths and persistent settings of one local grid."""

    path: str
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict[str, Any], init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = os.path.abspath(self.path)
        os.makedirs(self.path, exist_ok=True)

    def sub(self, *parts: str) -> str:
        p = os.path.join(self.path, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def dir(self, *parts: str) -> str:
        p = os.path.join(self.path, *parts)
        os.makedirs(p, exist_ok=True)
        return p

    def _save(self, name: str) -> None:
        """Writes a state file _state read back (mode 600), replacing it whole."""
        path = os.path.join(self.path, name)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._cache[name], f, indent=2)
        os.replace(tmp, path)

    def _state(self, name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Reads a JSON state file (once per RunDir), creating it with make() the first time."""
        if name in self._cache:
            return self._cache[name]
        path = os.path.join(self.path, name)
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
        else:
            data = make()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
        self._cache[name] = data
        return data

    @property
    def ports(self) -> dict[str, int]:
        ports = self._state("ports.json", lambda: {name: free_port() for name in PORT_NAMES})
        missing = [name for name in PORT_NAMES if name not in ports]
        if missing:  # a run directory from an older release: add the new ports, keep the rest
            ports.update({name: free_port() for name in missing})
            with open(os.path.join(self.path, "ports.json"), "w") as f:
                json.dump(ports, f, indent=2)
        return ports

    @property
    def secrets(self) -> dict[str, str]:
        """Generated passwords of this grid (MySQL user, Redis, IceGrid admin); the file is mode 600."""
        kept = self._state("secrets.json", dict)
        missing = [name for name in SECRET_NAMES if name not in kept]
        if missing:  # a new grid, or one from an older release: make the new ones, keep the rest
            kept.update({name: secrets.token_urlsafe(18) for name in missing})
            self._save("secrets.json")
        return kept

    def secret_file(self, name: str) -> str:
        """A file holding one of the grid's passwords (mode 600, the grid's user only): servers
        are given its path, so the password is on no command line and in no descriptor."""
        path = self.sub("secrets", name)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.secrets[name])
        os.replace(tmp, path)
        return path

    @property
    def locator(self) -> str:
        p, host = self.ports, self.internal_host
        return (
            f"{INSTANCE_NAME}/Locator:tcp -h {host} -p {p['registry-master']}:tcp -h {host} -p {p['registry-replica']}"
        )

    @property
    def settings(self) -> dict[str, str]:
        """Choices an operator made for this grid (the partner host, metrics), kept across `up`s."""
        return self._state("settings.json", lambda: {"partner_host": DEFAULT_SETTINGS["partner_host"]})

    @property
    def internal_host(self) -> str:
        """The address every internal endpoint listens on: backends, registries, nodes and
        servers. Loopback for a grid on one machine; a private address the node hosts reach
        when the grid spans hosts (pushgrid up --internal-host)."""
        return self._setting("internal_host")

    def set_internal_host(self, host: str) -> bool:
        """Keeps host as the internal host; True if that changed it. Only for a grid that is down:
        everything it started listens on the old address. InvalidInternalHost if not private."""
        return self._keep_setting("internal_host", check_internal_host(host))

    @property
    def partner_host(self) -> str:
        """The address the Glacier2 router listens on for partners (its client endpoints)."""
        return self._setting("partner_host")

    def set_partner_host(self, host: str) -> bool:
        """Keeps host as the partner host; True if that changed it. Deploying is the caller's.

        Raises certs.InvalidHost for a host a partner could not dial (checked before it is kept).
        """
        from tools.grid.certs import check_host

        return self._keep_setting("partner_host", check_host(host))

    @property
    def metrics(self) -> str:
        """Whether the grid's servers keep metrics, "on" or "off" (services/common/metrics.py);
        the descriptor's variable metrics."""
        return self._setting("metrics")

    def set_metrics(self, value: str) -> bool:
        """Keeps "on" or "off" for the next deploy; True if that changed it. ValueError otherwise."""
        if value not in METRICS_VALUES:
            raise ValueError(f"metrics is on or off, not {value!r}")
        return self._keep_setting("metrics", value)

    def _setting(self, name: str) -> str:
        return str(self.settings.get(name, DEFAULT_SETTINGS[name]))

    def _keep_setting(self, name: str, value: str) -> bool:
        """Keeps a checked setting in settings.json; True if that changed it."""
        if self._setting(name) == value:
            return False
        self.settings[name] = value
        self._save("settings.json")
        return True

    @property
    def partner_endpoints(self) -> str:
        """The router's client endpoints as partners dial them: SSL first, then plain TCP."""
        p, host = self.ports, self.partner_host
        return f"ssl -h {host} -p {p['partner-ssl']}:tcp -h {host} -p {p['partner-tcp']}"

    @property
    def certs_dir(self) -> str:
        """The grid CA and the router's certificate (tools/grid/certs.py)."""
        return self.dir("certs")

    @property
    def releases(self) -> Path:
        """The release repository: one directory per kept release (patch/release.py)."""
        return Path(self.dir("releases"))

    @property
    def patch_data(self) -> Path:
        """The IcePatch2 server's data directory: the published release (patch/distribution.py)."""
        return Path(self.dir("patch", "data"))

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        """The node hosts operators added (tools/grid/hosts.py), by name; kept in hosts.json."""
        return self._state("hosts.json", dict)

    def save_hosts(self) -> None:
        self._save("hosts.json")

    @property
    def upgrade_state(self) -> Path:
        """Where an upgrade in progress remembers its target and the release before it."""
        return Path(self.path) / "upgrade.json"

    @property
    def partner_config(self) -> str:
        """The Ice config a partner uses: the router only, never the registry."""
        return os.path.join(self.path, "partner.cfg")

    @property
    def device_urls(self) -> list[str]:
        """Where devices connect: one shared port per node, several STC processes behind each."""
        return [self.device_url(node) for node in NODES]

    def device_url(self, node: str) -> str:
        """The device port node's STC processes share (a node host's: on its own address)."""
        if node in self.hosts:
            return f"ws://{self.hosts[node]['address']}:{HOST_DEVICE_PORT}/v1/device"
        return f"ws://{self.internal_host}:{self.ports[f'stc-{node}']}/v1/device"

    @property
    def client_config(self) -> str:
        """The Ice config tools, tests and icegridadmin use (see services.common.config)."""
        return client_config_path(self.path)

    def backend_properties(self) -> dict[str, str]:
        """The PushGrid.* properties every service reads; the same values go into the descriptor."""
        p, host = self.ports, self.internal_host
        return {
            "PushGrid.MySQL.Host": host,
            "PushGrid.MySQL.Port": str(p["mysql"]),
            "PushGrid.MySQL.User": "pushgrid",
            "PushGrid.MySQL.PasswordFile": self.secret_file("mysql"),
            "PushGrid.MySQL.Database": "pushgrid",
            "PushGrid.Redis.Nodes": ",".join(f"{host}:{p[n]}" for n in REDIS_NODES),
            "PushGrid.Redis.PasswordFile": self.secret_file("redis"),
            "PushGrid.Kafka.Bootstrap": f"{host}:{p['kafka']}",
        }

    def write_client_config(self) -> str:
        props = {
            "Ice.Default.Locator": self.locator,
            "Ice.Default.LocatorCacheTimeout": "10",
            "Ice.RetryIntervals": "0 50 200 500 1000",
            "Ice.Override.ConnectTimeout": "2000",
            "Ice.Default.Timeout": "10000",
            "Ice.Default.InvocationTimeout": "60000",
            "Ice.MessageSizeMax": "4096",
            "IceGridAdmin.Username": "admin",
            "IceGridAdmin.Password": self.secrets["admin"],
            **self.backend_properties(),
        }
        write_config(self.client_config, props)
        return self.client_config

    def partner_properties(self) -> dict[str, str]:
        """What a partner's Ice client needs: the router (SSL first), the CA that signed its
        certificate and a name check, and ACM heartbeats that keep the session alive. There is
        no locator: partners never see the registry."""
        from services.common import limits
        from tools.grid.certs import CA_CERT

        return {
            "Ice.Default.Router": f"{ROUTER_INSTANCE_NAME}/router:{self.partner_endpoints}",
            "Ice.RetryIntervals": "0 100 500 1000",
            "Ice.Default.Timeout": "10000",
            "Ice.Default.InvocationTimeout": "30000",
            "Ice.Plugin.IceSSL": "IceSSL:createIceSSL",
            "IceSSL.CAs": os.path.join(self.certs_dir, CA_CERT),
            "IceSSL.CheckCertName": "1",
            "IceSSL.VerifyPeer": "2",
            "Ice.Default.PreferSecure": "1",  # Ice tries TCP first otherwise, whatever the order
            # the router closes a connection quiet for its session timeout: heartbeat within it
            "Ice.ACM.Client.Timeout": str(limits.PARTNER_SESSION_TIMEOUT_SECONDS),
            "Ice.ACM.Client.Heartbeat": "3",  # HeartbeatAlways
        }

    def write_partner_config(self) -> str:
        write_config(self.partner_config, self.partner_properties())
        os.chmod(self.partner_config, 0o644)  # no secret in it: it is meant to be handed out
        return self.partner_config


def write_config(path: str, props: dict[str, str]) -> None:
    """Writes an Ice config file (mode 600: some hold passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for k, v in props.items():
            f.write(f"{k}={v}\n")
