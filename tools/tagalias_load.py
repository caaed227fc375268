"""Bulk loaders of TagAlias's data, for benchmarks and tests: many devices per Redis round trip.

TagAlias tags one device per call (services/tagalias/store.py). These write the same keys with
the same scripts (services/tagalias/lua/), but group the devices by bucket and send one
pipelined script call per bucket and BATCH devices, so a million devices load in seconds. They
take a client of redis_client.cluster(), such as a TagAliasStore's own. Devices themselves are
loaded as addDevices loads them, by the store's add_devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.cluster import RedisCluster

from services.common import limits
from services.common.backends import REDIS
from services.common.batching import chunks
from services.tagalias import keys, scripts

BATCH = 1000  # devices per script call


@REDIS.guarded
def tag_devices(client: RedisCluster, app: str, tag: str, registration_ids: Sequence[str]) -> list[str]:
    """Gives one tag to many devices; answers the devices refused because they already have the
    most tags allowed (limits.DEVICE_MAX_TAGS), which are left as they were."""
    pipe = client.pipeline()
    for b, group in keys.by_bucket(registration_ids).items():
        for chunk in chunks(group, BATCH):
            args: list[Any] = [tag, limits.DEVICE_MAX_TAGS, *chunk]
            scripts.queue(
                pipe,
                scripts.TAG_DEVICES,
                [keys.tag(app, b, tag), keys.tag_names(app, b), *(keys.device_tags(app, b, rid) for rid in chunk)],
                args,
            )
    refused: list[str] = []
    for result in cast(list[list[str]], pipe.execute()):
        refused += result
    return refused
