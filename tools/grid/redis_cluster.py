"""A Redis Cluster of three masters on the grid's internal address, each with its own directory.

Every node asks for the grid's Redis password (run.secrets["redis"]): on a private address other
hosts can reach, Redis refuses clients that do not authenticate."""

from __future__ import annotations

import functools
import os
import subprocess

import redis

from tools.grid import procs
from tools.grid.rundir import REDIS_NODES, RunDir


def _node_paths(run: RunDir, name: str) -> tuple[str, str, str]:
    base = run.dir("redis", name)
    return base, os.path.join(base, "redis.pid"), os.path.join(base, "redis.log")


def start(run: RunDir) -> None:
    ports, host, password = run.ports, run.internal_host, run.secrets["redis"]
    for name in REDIS_NODES:
        base, pid_file, log = _node_paths(run, name)
        procs.start(
            [
                "redis-server",
                "--port",
                str(ports[name]),
                "--cluster-port",
                str(ports[name + "-bus"]),
                "--bind",
                host,
                "--protected-mode",
                "yes",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "3000",
                "--dir",
                base,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--maxclients",
                "10000",
                "--requirepass",
                password,
                "--masterauth",
                password,
            ],
            pid_file,
            log,
        )
    for name in REDIS_NODES:
        _, pid_file, log = _node_paths(run, name)
        procs.wait_for(functools.partial(_pings, host, ports[name], password), f"Redis {name}", 30, log, pid_file)
    if _cluster_info(host, ports[REDIS_NODES[0]], password)["cluster_slots_assigned"] == "0":
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"{host}:{ports[n]}" for n in REDIS_NODES], "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": password},  # not on the command line, where ps shows it
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    procs.wait_for(
        lambda: all(_cluster_ok(host, ports[n], password) for n in REDIS_NODES), "Redis Cluster state ok", 30
    )


def _client(host: str, port: int, password: str) -> redis.Redis:
    return redis.Redis(host, port, password=password, decode_responses=True, socket_timeout=1)


def _cluster_info(host: str, port: int, password: str) -> dict[str, str]:
    return _client(host, port, password).execute_command("CLUSTER INFO")


def _cluster_ok(host: str, port: int, password: str) -> bool:
    return _cluster_info(host, port, password)["cluster_state"] == "ok"


def stop_node(run: RunDir, name: str) -> bool:
    """Stops one master (fault tests); start() brings it back into the cluster."""
    _, pid_file, _ = _node_paths(run, name)
    return procs.stop(pid_file, timeout=10)


def stop(run: RunDir) -> bool:
    stopped = False
    for name in REDIS_NODES:
        stopped |= stop_node(run, name)
    return stopped


def _pings(host: str, port: int, password: str) -> bool:
    return bool(_client(host, port, password).ping())
