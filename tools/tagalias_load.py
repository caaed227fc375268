"""Bulk loaders of TagAlias's data, for benchmarks and tests: many devices per Redis round trip.

The TagAlias service changes one device per call (services/tagalias/store.py). These write the
same keys with the same scripts (services/tagalias/lua/), but group the devices by bucket and
send one pipelined script call per bucket and BATCH devices, so a million devices load in
seconds. They take a client of redis_client.cluster(), such as a TagAliasStore's own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from redis.cluster import RedisCluster

from services.common import limits
from services.common.backends import REDIS
from services.common.batching import chunks
from services.tagalias import keys, scripts

BATCH = 1000  # devices per script call


@REDIS.guarded
def add_devices(client: RedisCluster, app: str, devices: Sequence[tuple[str, int]]) -> None:
    """Adds devices (registration id, Platform value) to all and their platform set, as addDevice
    does for each."""
    groups: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for rid, plat in devices:
        groups[keys.bucket(rid)].append((rid, plat))
    pipe = client.pipeline()
    for b, group in groups.items():
        for chunk in chunks(group, BATCH):
            scripts.queue(pipe, scripts.ADD_DEVICES, *scripts.add_devices_call(app, b, chunk))
    pipe.execute()


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
