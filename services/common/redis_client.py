"""The one Redis client factory: redis-py's own cluster client (redis-py-cluster is retired)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster

from services.common.config import RedisSettings


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


def queue_eval(pipe: ClusterPipeline, script: str, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queues EVAL of script in a cluster pipeline (which has no script registry), sent to the
    node of its first key: left to route it, redis-py asks Redis for the command's keys
    (COMMAND GETKEYS), one round trip per call. Every key must share that slot."""
    node = pipe.get_node_from_key(keys[0]) if keys else None
    if node is None:
        pipe.execute_command("EVAL", script, len(keys), *keys, *args)
    else:
        pipe.execute_command("EVAL", script, len(keys), *keys, *args, target_nodes=node)
