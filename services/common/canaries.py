"""Canary keys: how the grid tells that Redis lost data.

Keys no one deletes, planted once when the cluster is made, spread over its slots (a hash tag
each, so every master holds some). A master that came back empty, its replica lost too, lacks
its canaries. Then `pushgrid status` says DATA LOST, and the dispatcher notes on the report of
every message it finishes meanwhile that devices may have been missed (tags, aliases and
presence on that node are gone), instead of a silent Done. Planting them again is the
operator's word that the loss has been dealt with (`pushgrid redis-replant`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from redis.cluster import RedisCluster

from services.common.backends import REDIS

KEYS = tuple(f"pg:canary:{{c{i}}}" for i in range(32))
CHECK_SECONDS = 1.0  # a dispatcher asks at most this often


def plant(client: RedisCluster) -> None:
    for key in KEYS:
        client.set(key, "1")


@REDIS.guarded
def lost(client: RedisCluster) -> list[str]:
    """The canaries that are gone: each says the master of its slot lost its data."""
    return [key for key, value in zip(KEYS, client.mget_nonatomic(list(KEYS)), strict=True) if value is None]


def lost_data_error(missing: int) -> str:
    """What a message's report says when it was finished while canaries were missing."""
    return (
        f"Redis lost data while this message was sent ({missing} of {len(KEYS)} canary keys gone: a node came "
        "back empty); tags, aliases and presence it held may be gone, so devices may have been missed"
    )


class Watch:
    """lost() for a busy caller: asked at most once every CHECK_SECONDS, the answer shared."""

    def __init__(self, client: RedisCluster, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._missing = 0

    def missing(self) -> int:
        """How many canaries were gone when last checked (0: no data lost)."""
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= CHECK_SECONDS:
                self._missing = len(lost(self._client))
                self._checked_at = now
            return self._missing
