"""The one Redis client factory: redis-py's own cluster client (redis-py-cluster is retired)."""

from __future__ import annotations

import threading
from collections.abc import Callable

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
    )


class Lazy:
    """A cluster client made on first use: a server starts, and answers, while Redis is still
    coming up or down, and connects once it is back."""

    def __init__(self, connect: Callable[[], RedisCluster]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._redis: RedisCluster | None = None

    def __call__(self) -> RedisCluster:
        with self._lock:
            if self._redis is None:
                self._redis = self._connect()
            return self._redis
