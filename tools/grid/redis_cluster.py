"""A Redis Cluster of three masters, each with a replica, on the grid's internal address.

A killed master fails over to its replica within a few seconds (cluster-node-timeout 3 s), and
when it comes back it rejoins as a replica of the one that took its place. Every node keeps an
append-only file (fsync every second), so a node restarted alone, or the whole grid brought up
again, finds its data where it left it.

Every node asks for the grid's Redis password (run.secrets["redis"]): on a private address other
hosts can reach, Redis refuses clients that do not authenticate. The password is in each node's
redis.conf (mode 600), never on a command line where ps would show it."""

from __future__ import annotations

import functools
import os
import signal
import subprocess

import redis

from services.common import canaries, redis_client
from services.common.config import RedisSettings
from tools.grid import procs
from tools.grid.rundir import REDIS_NODES, RunDir

REPLICAS_PER_MASTER = 1
NODE_TIMEOUT_MS = 3000


def _node_paths(run: RunDir, name: str) -> tuple[str, str, str]:
    base = run.dir("redis", name)
    return base, os.path.join(base, "redis.pid"), os.path.join(base, "redis.log")


def _write_config(run: RunDir, name: str) -> str:
    base, _, _ = _node_paths(run, name)
    password = run.secrets["redis"]
    lines = {
        "port": run.ports[name],
        "cluster-port": run.ports[name + "-bus"],
        "bind": run.internal_host,
        "protected-mode": "yes",
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-node-timeout": NODE_TIMEOUT_MS,
        "dir": base,
        "save": '""',
        "appendonly": "yes",
        "appendfsync": "everysec",
        # a node that comes back syncs at once: there is one replica per master, none to wait for
        "repl-diskless-sync-delay": 0,
        "daemonize": "no",
        "maxclients": 10000,
        "requirepass": password,
        "masterauth": password,
    }
    path = os.path.join(base, "redis.conf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{key} {value}\n" for key, value in lines.items())
    return path


def start(run: RunDir) -> None:
    """Starts the nodes not running; makes the cluster the first time."""
    host, password = run.internal_host, run.secrets["redis"]
    for name in REDIS_NODES:
        _, pid_file, log = _node_paths(run, name)
        procs.start(["redis-server", _write_config(run, name)], pid_file, log)
    for name in REDIS_NODES:
        _, pid_file, log = _node_paths(run, name)
        procs.wait_for(functools.partial(_pings, host, run.ports[name], password), f"Redis {name}", 30, log, pid_file)
    if _cluster_info(host, run.ports[REDIS_NODES[0]], password)["cluster_slots_assigned"] == "0":
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"{host}:{run.ports[n]}" for n in REDIS_NODES],
                "--cluster-replicas",
                str(REPLICAS_PER_MASTER),
                "--cluster-yes",
            ],
            env={**os.environ, "REDISCLI_AUTH": password},  # not on the command line, where ps shows it
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    procs.wait_for(lambda: healthy(run), "Redis Cluster state ok, every master with a replica", 60)
    _plant_canaries(run)


def _cluster(run: RunDir) -> redis.RedisCluster:
    node = ((run.internal_host, run.ports[REDIS_NODES[0]]),)
    return redis_client.cluster(RedisSettings(nodes=node, timeout=2.0, password=run.secrets["redis"]))


def _plant_canaries(run: RunDir) -> None:
    """Once per cluster (a marker in the run directory): later, a missing canary is lost data."""
    marker = os.path.join(run.dir("redis"), "canaries")
    if os.path.exists(marker):
        return
    client = _cluster(run)
    canaries.plant(client)
    client.close()
    with open(marker, "w") as f:
        f.write("planted\n")


def replant_canaries(run: RunDir) -> int:
    """Plants the canaries again (the operator's word that a data loss was dealt with);
    returns how many were missing."""
    client = _cluster(run)
    try:
        missing = len(canaries.lost(client))
        canaries.plant(client)
        return missing
    finally:
        client.close()


def lost_canaries(run: RunDir) -> list[str]:
    """The canaries that are gone: each says the master of its slot lost its data."""
    if not os.path.exists(os.path.join(run.dir("redis"), "canaries")):
        return []
    client = _cluster(run)
    try:
        return canaries.lost(client)
    finally:
        client.close()


def _client(host: str, port: int, password: str) -> redis.Redis:
    return redis.Redis(host, port, password=password, decode_responses=True, socket_timeout=1)


def _cluster_info(host: str, port: int, password: str) -> dict[str, str]:
    return _client(host, port, password).execute_command("CLUSTER INFO")


def replication(run: RunDir) -> dict[str, dict[str, str]]:
    """Each running node's INFO replication: its role, and a replica's link to its master."""
    out = {}
    for name in REDIS_NODES:
        try:
            out[name] = _client(run.internal_host, run.ports[name], run.secrets["redis"]).info("replication")
        except redis.RedisError:
            continue
    return out


def roles(run: RunDir, known: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """Each running node's role: "master" or "slave" (Redis's word); known: what replication(run)
    just said, so it is not asked again."""
    return {name: info["role"] for name, info in (replication(run) if known is None else known).items()}


def healthy(run: RunDir, known: dict[str, dict[str, str]] | None = None) -> bool:
    """Every node answers, the cluster is ok, there are three masters and three replicas, and
    every replica has its master's data: one still syncing could not take over, so a master
    failing now would take its slots down (known: what replication(run) just said)."""
    host, password = run.internal_host, run.secrets["redis"]
    try:
        if not all(_cluster_info(host, run.ports[n], password)["cluster_state"] == "ok" for n in REDIS_NODES):
            return False
        infos = replication(run) if known is None else known
    except redis.RedisError:
        return False
    found = sorted(info["role"] for info in infos.values())
    masters = len(REDIS_NODES) // (1 + REPLICAS_PER_MASTER)
    if found != ["master"] * masters + ["slave"] * (len(REDIS_NODES) - masters):
        return False
    return all(
        info.get("master_link_status") == "up" and not int(info.get("master_sync_in_progress", 0))
        for info in infos.values()
        if info["role"] == "slave"
    )


def master_of(run: RunDir, key: str) -> str:
    """The node that serves key now (CLUSTER SLOTS lists each range's master first)."""
    client = _client(run.internal_host, run.ports[REDIS_NODES[0]], run.secrets["redis"])
    slot = client.execute_command("CLUSTER KEYSLOT", key)
    by_port = {run.ports[name]: name for name in REDIS_NODES}
    for first, last, master, *_replicas in client.execute_command("CLUSTER SLOTS"):
        if first <= slot <= last:
            return by_port[int(master[1])]
    raise LookupError(f"no master serves slot {slot}")


def stop_node(run: RunDir, name: str, kill: bool = False) -> bool:
    """Stops one node (fault tests): SIGTERM, or SIGKILL with kill; start() brings it back."""
    _, pid_file, _ = _node_paths(run, name)
    return procs.stop(pid_file, timeout=10, sig=signal.SIGKILL if kill else signal.SIGTERM)


def stop(run: RunDir) -> bool:
    stopped = False
    for name in REDIS_NODES:
        stopped |= stop_node(run, name)
    return stopped


def _pings(host: str, port: int, password: str) -> bool:
    return bool(_client(host, port, password).ping())
