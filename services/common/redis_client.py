"""The one Redis client factory: redis-py's own cluster client (redis-py-cluster is retired)."""

from __future__ import annotations

from redis.cluster import ClusterNode, RedisCluster

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
