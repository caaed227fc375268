"""The one Redis client factory: redis-py's own cluster client (redis-py-cluster is retired)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster

from services.common.config import RedisSettings


def digest(value: str) -> str:
    """A value a partner or device chose, as it may appear in a key: hashed, so what they send
    cannot shape our keys (no braces to pick a slot, no length to bloat them)."""
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def cluster(settings: RedisSettings) -> RedisCluster:
    """A cluster client with short timeouts, so a dead shard is an error, not a hung thread."""
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in settings.nodes],
        decode_responses=True,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        require_full_coverage=True,
        password=settings.password or None,
    )


def queue(pipe: ClusterPipeline, key: str, *command: Any) -> None:
    """Queues command in a cluster pipeline, sent to the node of key (every key of the command
    must share its slot). Left to route it, redis-py finds the keys of each command itself: in
    Python for most (twice the CPU of the command), and with a round trip to Redis
    (COMMAND GETKEYS) for EVAL."""
    pipe.execute_command(*command, target_nodes=pipe.get_node_from_key(key))


def queue_eval(pipe: ClusterPipeline, script: str, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queues EVAL of script in a cluster pipeline (which has no script registry), sent to the
    node of its first key; every key must share that slot."""
    if keys:
        queue(pipe, keys[0], "EVAL", script, len(keys), *keys, *args)
    else:
        pipe.execute_command("EVAL", script, 0, *args)


def by_node(client: RedisCluster, keys: Sequence[str]) -> dict[ClusterNode, list[str]]:
    """keys grouped by the node that serves each, for commands whose keys may be in several of
    a node's slots (scripts flagged allow-cross-slot-keys)."""
    groups: dict[ClusterNode, list[str]] = {}
    for key in keys:
        groups.setdefault(client.get_node_from_key(key), []).append(key)
    return groups
