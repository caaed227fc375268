"""Node hosts: the machines a grid spans, reached over SSH with Fabric.

`pushgrid hosts add NAME ADDRESS` records a host (its SSH user, port and key, and the directory
that is its grid's disk there); `hosts list` and `hosts remove` show and forget them; `hosts
check` logs in to every host at once (Fabric's ThreadingGroup) and reports what a node host
needs (every host at once, a thread each): the Ice 3.7 binding for Debian's /usr/bin/python3,
icegridnode, and a writable root.
Commands over SSH name /usr/bin/python3 by its path: a login shell's profile may put another
python3 first on PATH.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from fabric import Connection

from tools.grid.rundir import RunDir

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
DEFAULT_ROOT = "/var/lib/pushgrid"
CONNECT_TIMEOUT_SECONDS = 10
# What a node host must have; each line prints one fact, or fails the command with its reason.
CHECK = " && ".join(
    [
        "/usr/bin/python3 -c 'import Ice; print(\"ice\", Ice.stringVersion())'",
        "echo icegridnode $(command -v icegridnode || echo missing)",
        "command -v icegridnode >/dev/null",
        "mkdir -p {root} && test -w {root} && echo root {root}",
    ]
)


class HostError(Exception):
    """A host cannot be added, found or reached; the message says which and why."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    user: str = "root"
    port: int = 22
    key: str = ""  # a private key file; empty: the SSH agent's or ~/.ssh's
    root: str = DEFAULT_ROOT  # this grid's directory on the host: its node's config, data and code
    index: int = 0  # the number its servers carry (DBAgent-3, Push-3...), given when first deployed
    servers: tuple[str, ...] = ()  # the kinds of server placed on it (tools/grid/hostnode.py)

    def connection(self) -> Connection:
        kwargs = {"key_filename": self.key, "look_for_keys": False, "allow_agent": False} if self.key else {}
        return Connection(
            self.address,
            user=self.user,
            port=self.port,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            connect_kwargs=kwargs,
        )


def _checked(host: Host) -> Host:
    if not NAME_RE.fullmatch(host.name):
        raise HostError(f"host name {host.name!r} must be 1-32 lowercase letters, digits or dashes")
    try:
        ipaddress.ip_address(host.address)
    except ValueError:
        raise HostError(f"host address {host.address!r} is not an IP address") from None
    if not 0 < host.port < 65536:
        raise HostError(f"ssh port {host.port} is not a port")
    if host.key and not Path(host.key).is_file():
        raise HostError(f"ssh key {host.key} is not a file")
    if not host.root.startswith("/"):
        raise HostError(f"host root {host.root!r} must be an absolute path")
    return host


def add(run: RunDir, host: Host) -> Host:
    """Records host (replacing one of the same name); HostError for a malformed one."""
    host = _checked(host)
    if any(h["address"] == host.address and n != host.name for n, h in run.hosts.items()):
        raise HostError(f"another host has address {host.address}")
    placed = run.hosts.get(host.name, {})
    run.hosts[host.name] = {**asdict(host), "index": placed.get("index", 0), "servers": placed.get("servers", [])}
    run.save_hosts()
    return host


def remove(run: RunDir, name: str) -> None:
    if name not in run.hosts:
        raise HostError(f"no host {name!r} (pushgrid hosts list)")
    del run.hosts[name]
    run.save_hosts()


def all_hosts(run: RunDir) -> list[Host]:
    return [Host(**{**h, "servers": tuple(h.get("servers", ()))}) for _, h in sorted(run.hosts.items())]


def find(run: RunDir, names: list[str]) -> list[Host]:
    """The named hosts, or every host when names is empty."""
    hosts = all_hosts(run)
    if not names:
        return hosts
    unknown = sorted(set(names) - {h.name for h in hosts})
    if unknown:
        raise HostError(f"no host {', '.join(unknown)} (pushgrid hosts list)")
    return [h for h in hosts if h.name in names]


def put(host: Host, files: Sequence[tuple[str | IO[str], str]], mode: int = 0o644) -> None:
    """Copies local files (a path, or a file object's text) to their remote paths on host over
    SFTP, all on one connection."""
    remote = ""
    try:
        with host.connection() as c:
            for source, remote in files:
                c.put(source, remote)
                c.sftp().chmod(remote, mode)
    except Exception as exc:  # noqa: BLE001 - paramiko, socket and SFTP errors: all mean "not copied"
        raise HostError(f"{host.name}: could not copy to {remote}: {type(exc).__name__}: {exc}") from None


def run_on(host: Host, command: str, timeout: float = 60) -> str:
    """Runs command on host over SSH; its stdout, or HostError with the host's own words."""
    try:
        with host.connection() as c:
            result = c.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
    except Exception as exc:  # noqa: BLE001 - paramiko and socket errors: all mean "not reached"
        raise HostError(f"{host.name} ({host.address}) not reached over ssh: {type(exc).__name__}: {exc}") from None
    if result.failed:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise HostError(f"{host.name}: {said[-1] if said else f'exit status {result.exited}'}")
    return str(result.stdout)


def check(hosts: list[Host]) -> dict[str, str]:
    """Runs CHECK on every host at once; each host's facts on one line, or why it failed."""

    def one(host: Host) -> str:
        try:
            facts = run_on(host, f"sh -c {shlex.quote(CHECK.format(root=shlex.quote(host.root)))}")
            return "ok: " + "; ".join(line for line in facts.splitlines() if line)
        except HostError as exc:
            return f"FAILED: {exc}"

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))
