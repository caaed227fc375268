"""A Redis Cluster of three masters on loopback ports, each with its own directory."""

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
    ports = run.ports
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
                "127.0.0.1",
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
            ],
            pid_file,
            log,
        )
    for name in REDIS_NODES:
        _, pid_file, log = _node_paths(run, name)
        procs.wait_for(functools.partial(_pings, ports[name]), f"Redis {name}", 30, log, pid_file)
    if _cluster_info(ports[REDIS_NODES[0]])["cluster_slots_assigned"] == "0":
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{ports[n]}" for n in REDIS_NODES], "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    procs.wait_for(lambda: all(_cluster_ok(ports[n]) for n in REDIS_NODES), "Redis Cluster state ok", 30)


def _cluster_info(port: int) -> dict[str, str]:
    return redis.Redis(port=port, decode_responses=True, socket_timeout=1).execute_command("CLUSTER INFO")


def _cluster_ok(port: int) -> bool:
    return _cluster_info(port)["cluster_state"] == "ok"


def stop_node(run: RunDir, name: str) -> bool:
    """Stops one master (fault tests); start() brings it back into the cluster."""
    _, pid_file, _ = _node_paths(run, name)
    return procs.stop(pid_file, timeout=10)


def stop(run: RunDir) -> bool:
    stopped = False
    for name in REDIS_NODES:
        stopped |= stop_node(run, name)
    return stopped


def _pings(port: int) -> bool:
    return bool(redis.Redis(port=port, socket_timeout=1).ping())
