"""Turning a recorded host into an IceGrid node of this grid, over SSH, and placing servers on it.

`pushgrid hosts deploy NAME... [--servers KINDS]` runs, on every named host at once:

  packages   Debian's Ice 3.7 node, its Python binding and venv, installed where missing
  wheels     the servers' pinned Python packages, uploaded (a host need not reach PyPI)
  venv       ROOT/venv from /usr/bin/python3, seeing Debian's Ice binding, with those packages
  config     ROOT/node/config: the node's name, its endpoints on the host's address, the
             registries (every replica, wherever it runs), data and logs under ROOT
  node       icegridnode --daemon, which returns once the node is ready

then records which servers the host runs and redeploys the application (icegrid.deploy adds a
<node> for each placed host), and rolls the published release onto the new servers as an
upgrade does (tools/grid/rollouts.py): each is patched from the IcePatch2 server onto the host's
own disk (ROOT/node/data/servers/ID/distrib), started and health-checked. Every later
`pushgrid upgrade` patches them the same way.
"""

from __future__ import annotations

import importlib.metadata
import io
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from patch import health
from tools.grid import hosts, icegrid
from tools.grid.hosts import Host, HostError
from tools.grid.rundir import HOST_DEVICE_PORT, NODES, RunDir

Progress = Callable[[str], None]

# What a node host needs from Debian: the node itself, and the Python that runs the servers.
PACKAGES = ("zeroc-icegrid", "python3-zeroc-ice", "python3-venv")
# The distributions the servers import (services/, glacier2/); pinned in setup.cfg.
SERVER_DISTRIBUTIONS = (
    "kafka-python",
    "crc32c",
    "redis",
    "hiredis",
    "pymysql",
    "uvloop",
    "orjson",
    "prometheus-client",
)
# what a host can run: a template of icegrid/pushgrid.xml each; the console stays node1's alone
KINDS = tuple(k for k in health.KINDS if k != "Console")
DEFAULT_KINDS = ("DBAgent", "TagAlias", "Push")
FIRST_INDEX = len(NODES) + 1  # node1 and node2 number their servers 1 and 2
NODE_READY_SECONDS = 30


def requirements() -> list[str]:
    """The pins of the distributions the servers import, as this checkout's package declares them."""
    wanted = {d.lower() for d in SERVER_DISTRIBUTIONS}
    pins = [r for r in importlib.metadata.requires("pushgrid") or [] if ";" not in r]
    return [r for r in pins if r.split("==")[0].strip().lower() in wanted]


def parse_kinds(text: str) -> tuple[str, ...]:
    """Kinds from a comma-separated list ("dbagent,push"); HostError naming what is not one."""
    by_name = {k.lower(): k for k in KINDS}
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in by_name]
    if unknown or not kinds:
        raise HostError(f"servers must be a comma-separated list of {', '.join(KINDS)}; not {text!r}")
    return tuple(dict.fromkeys(by_name[k] for k in kinds))


def server_ids(host: Host) -> list[str]:
    """The ids of the servers placed on host, as the application names them."""
    return [f"STC-{host.name}-1" if k == "STC" else f"{k}-{host.index}" for k in host.servers]


def node_element(host: Host, variables: dict[str, str]) -> str:
    """The <node> of icegrid/pushgrid.xml's shape for host: its variables, then its servers."""
    lines = [f'<node name="{host.name}">']
    lines += [f'  <variable name="{k}" value="{v}"/>' for k, v in variables.items()]
    for kind in host.servers:
        params = f'index="1" port="{HOST_DEVICE_PORT}"' if kind == "STC" else f'index="{host.index}"'
        lines.append(f'  <server-instance template="{kind}" {params}/>')
    lines.append("</node>")
    return "\n".join(lines)


def node_variables(host: Host) -> dict[str, str]:
    """What differs on a host: the Python of its venv, the address its servers listen on, and
    whom its node runs them as (root only where the node itself runs as root)."""
    return {
        "python": f"{host.root}/venv/bin/python",
        "bind": host.address,
        "server.user": "root" if host.user == "root" else "",
    }


def _paths(host: Host) -> dict[str, str]:
    node = f"{host.root}/node"
    return {
        "venv": f"{host.root}/venv",
        "wheels": f"{host.root}/wheels",
        "node": node,
        "config": f"{node}/config",
        "pid": f"{node}/pid",
        "log": f"{node}/log",
        "data": f"{node}/data",
        "logs": f"{node}/logs",
    }


def node_config(run: RunDir, host: Host) -> dict[str, str]:
    """The host's icegridnode configuration. Short connect and ACM timeouts, so that a host that
    vanishes costs its peers seconds, not the minute a default TCP connect waits."""
    p = _paths(host)
    as_root = {"IceGrid.Node.AllowRunningServersAsRoot": "1"} if host.user == "root" else {}
    return {
        **as_root,
        "IceGrid.Node.Name": host.name,
        "IceGrid.Node.Endpoints": f"tcp -h {host.address} -t 5000",
        "IceGrid.Node.Data": p["data"],
        "IceGrid.Node.Output": p["logs"],
        "IceGrid.Node.RedirectErrToOut": "1",
        "IceGrid.Node.CollocateRegistry": "0",
        "IceGrid.Node.DisableOnFailure": "5",
        "Ice.Default.Locator": run.locator,
        "Ice.Override.ConnectTimeout": "2000",
        **icegrid.NODE_HEARTBEATS,
        "Ice.LogFile": p["log"],
        "Ice.ProgramName": f"pushgrid-{host.name}",
    }


def wheelhouse(run: RunDir, progress: Progress = print) -> list[Path]:
    """The servers' pinned wheels, downloaded once into the run directory (the hosts get them
    from here: a node host need not reach a package registry)."""
    wanted = requirements()
    target = Path(run.dir("wheelhouse"))
    stamp = target / "requirements.txt"
    if not stamp.exists() or stamp.read_text().split() != wanted:
        progress(f"    downloading wheels: {' '.join(wanted)}")
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:"]
            + ["-d", str(target), *wanted],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if got.returncode != 0:
            raise HostError(f"could not download the servers' wheels: {got.stderr.strip()[-400:]}")
        stamp.write_text("\n".join(wanted) + "\n")
    return sorted(target.glob("*.whl"))


def install(run: RunDir, host: Host, wheels: Sequence[Path], say: Progress) -> None:
    """Packages, wheels, venv and node config on host; then its node, started unless it runs."""
    from tools.grid.lifecycle import step

    p, reqs = _paths(host), requirements()

    def packages() -> str:
        query = " ".join(
            f"dpkg-query -W -f='${{Status}}' {pkg} 2>/dev/null | grep -q 'install ok installed' || echo {pkg};"
            for pkg in PACKAGES
        )
        missing = hosts.run_on(host, f"sh -c {shlex.quote(query)}").split()
        if not missing:
            return "present"
        sudo = "" if host.user == "root" else "sudo -n "  # another user needs passwordless sudo for this
        hosts.run_on(
            host,
            f"{sudo}apt-get update -q && {sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
            + " ".join(missing),
            timeout=900,
        )
        return "installed " + " ".join(missing)

    def upload() -> str:
        hosts.run_on(host, f"mkdir -p {p['wheels']} {p['data']} {p['logs']}")
        hosts.put(host, [(str(wheel), f"{p['wheels']}/{wheel.name}") for wheel in wheels])
        return f"{len(wheels)} uploaded"

    def venv() -> str:
        hosts.run_on(
            host,
            f"test -x {p['venv']}/bin/python || /usr/bin/python3 -m venv --system-site-packages {p['venv']}; "
            f"{p['venv']}/bin/python -m pip install -q --disable-pip-version-check --no-index "
            f"--find-links {p['wheels']} {' '.join(shlex.quote(r) for r in reqs)}",
            timeout=600,
        )
        return f"{p['venv']} ({len(reqs)} packages)"

    def config() -> str:
        text = "".join(f"{k}={v}\n" for k, v in node_config(run, host).items())
        hosts.put(host, [(io.StringIO(text), p["config"])], mode=0o600)
        return p["config"]

    def node() -> str:
        running = _node_pid(host)
        if running:
            return f"running (pid {running})"
        hosts.run_on(
            host,
            f"icegridnode --Ice.Config={p['config']} --daemon --pidfile {p['pid']} --nochdir",
            timeout=NODE_READY_SECONDS,
        )
        return f"started (pid {_node_pid(host)})"

    for what, fn in (
        ("packages", packages),
        ("wheels", upload),
        ("venv", venv),
        ("node config", config),
        ("IceGrid node", node),
    ):
        step(say, f"  {host.name}: {what}", fn)


def _node_pid(host: Host) -> int:
    """The pid of host's node if it runs, else 0."""
    pid_file = _paths(host)["pid"]
    out = hosts.run_on(host, f"test -f {pid_file} && kill -0 $(cat {pid_file}) 2>/dev/null && cat {pid_file} || true")
    return int(out.strip()) if out.strip().isdigit() else 0


def stop_node(host: Host, timeout: float = 60) -> bool:
    """Stops host's node (it stops its servers first); False if none ran."""
    pid = _node_pid(host)
    if not pid:
        return False
    hosts.run_on(
        host,
        f"kill {pid}; for i in $(seq {int(timeout * 10)}); do kill -0 {pid} 2>/dev/null || exit 0; sleep 0.1; done; "
        f"echo 'node {pid} did not stop' >&2; exit 1",
        timeout=timeout + 10,
    )
    return True


def _next_index(run: RunDir, name: str) -> int:
    """A server number no other host uses (Push numbers its msg ids with it), kept per host."""
    current = run.hosts[name].get("index", 0)
    if current:
        return int(current)
    taken = {int(h.get("index", 0)) for h in run.hosts.values()}
    return next(i for i in range(FIRST_INDEX, FIRST_INDEX + 1000) if i not in taken)


def place(run: RunDir, names: Sequence[str], kinds: Sequence[str]) -> list[Host]:
    """Records that each named host runs one server of each kind (replacing what it ran)."""
    placed = []
    for name in names:
        host = replace(hosts.find(run, [name])[0], index=_next_index(run, name), servers=tuple(kinds))
        run.hosts[name] = {**run.hosts[name], "index": host.index, "servers": list(host.servers)}
        placed.append(host)
    run.save_hosts()
    return placed


def deploy(
    run: RunDir, names: Sequence[str], kinds: Sequence[str] = DEFAULT_KINDS, progress: Progress = print
) -> list[str]:
    """Installs and starts a node on each named host (all at once), places kinds on them and
    rolls the published release onto those servers; returns their ids."""
    from patch.distribution import IcePatch2Distribution
    from patch.rollout import Options, RolloutFailed
    from tools.grid.rollouts import open_rollout

    targets = hosts.find(run, list(names))
    if not targets:
        raise HostError("no hosts to deploy (pushgrid hosts add NAME ADDRESS)")
    if run.upgrade_state.exists():
        raise HostError("an upgrade is under way: finish it (run it again) before deploying hosts")
    started = time.monotonic()
    progress(f"pushgrid hosts deploy: {', '.join(h.name for h in targets)}")
    wheels = wheelhouse(run, progress)
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        for future in [pool.submit(install, run, h, wheels, progress) for h in targets]:
            future.result()
    icegrid.wait_nodes(run, [h.name for h in targets], timeout=NODE_READY_SECONDS)
    progress("  nodes registered with the registry")
    placed = place(run, [h.name for h in targets], kinds)
    progress(f"  application pushgrid: {icegrid.deploy(run)}")
    published = IcePatch2Distribution(run.patch_data).published()
    try:
        with open_rollout(run, Options(canary=0, soak_seconds=0, drain_seconds=0), progress) as rollout:
            rollout.upgrade(published)
    except RolloutFailed as exc:
        # nothing to roll back to: the hosts' servers are new; take them out of the grid again
        run.upgrade_state.unlink(missing_ok=True)
        for h in placed:
            run.hosts[h.name] = {**run.hosts[h.name], "servers": []}
        run.save_hosts()
        progress(f"  application pushgrid: {icegrid.deploy(run)} without the new servers")
        raise HostError(
            f"servers placed on {', '.join(names)} did not come up healthy, and are taken out again: {exc} "
            f"(their logs: ROOT/node/logs on each host)"
        ) from None
    ids = [sid for h in placed for sid in server_ids(h)]
    progress(f"hosts deployed in {time.monotonic() - started:.1f}s: {', '.join(ids)}")
    return ids


def undeploy(run: RunDir, name: str, progress: Progress = print) -> None:
    """Takes host name's servers out of the application, then stops its node (best effort)."""
    host = hosts.find(run, [name])[0]
    if host.servers:
        run.hosts[name] = {**run.hosts[name], "servers": []}
        run.save_hosts()
        progress(f"  application pushgrid: {icegrid.deploy(run)} without {name}'s servers")
    try:
        if stop_node(host):
            progress(f"  stopped {name}'s IceGrid node")
    except HostError as exc:
        progress(f"  {name}'s node not stopped: {exc}")


def stop_all(run: RunDir, progress: Progress = print) -> None:
    """Stops the node of every host that runs servers (pushgrid down), all at once."""
    placed = [h for h in hosts.all_hosts(run) if h.servers]

    def one(host: Host) -> str:
        try:
            return f"stopped IceGrid node on {host.name}" if stop_node(host, timeout=30) else ""
        except HostError as exc:
            return f"node on {host.name} not stopped: {exc}"

    if placed:
        with ThreadPoolExecutor(max_workers=len(placed)) as pool:
            for said in pool.map(one, placed):
                if said:
                    progress(f"  {said}")
