"""TagAlias's Lua scripts: each in its own file under lua/, read once when this module is imported.

Every script touches keys of one slot only (keys.py says which), so Redis Cluster runs it on one
node, atomically. The files document their KEYS and ARGV; the callers are store.py, walk.py (the
KEYS and ARGV of resolve_step) and the bulk loaders in tools/tagalias_load.py, which share
add_devices_call with the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script

from services.common import platforms
from services.common.lua import load_scripts
from services.common.redis_client import queue_eval
from services.tagalias import keys

ADD_DEVICES = "add_devices"
ADD_TAGS = "add_tags"
REMOVE_TAGS = "remove_tags"
FORGET_DEVICE = "forget_device"
TAG_DEVICES = "tag_devices"
UNTAG_DEVICES = "untag_devices"
ALIAS_JOIN = "alias_join"
CLEAR_ALIAS_IF = "clear_alias_if"
RESOLVE_STEP = "resolve_step"

# name -> Lua source
SOURCES: dict[str, str] = load_scripts(
    "services.tagalias",
    (
        ADD_DEVICES,
        ADD_TAGS,
        REMOVE_TAGS,
        FORGET_DEVICE,
        TAG_DEVICES,
        UNTAG_DEVICES,
        ALIAS_JOIN,
        CLEAR_ALIAS_IF,
        RESOLVE_STEP,
    ),
)


# A platform's 0-based place among a bucket's platform sets (keys.platform_sets): add_devices.lua
# takes it so one argument says which set the device joins and which it leaves.
_POSITION: dict[int, int] = {p.value: i for i, p in enumerate(platforms.ALL)}


def add_devices_call(app: str, b: int, devices: Sequence[tuple[str, int]]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of add_devices.lua for devices (registration id, Platform value) of bucket b."""
    args: list[Any] = []
    for rid, plat in devices:
        args += [rid, _POSITION[plat]]
    return [keys.all_devices(app, b), *keys.platform_sets(app, b)], args


class Registered:
    """A cluster client with every script registered: run() sends EVALSHA, loading the script on
    a node that lacks it."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {name: client.register_script(src) for name, src in SOURCES.items()}

    def run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        """Runs one script; answers its reply (decoded: str, int, lists of them, or None)."""
        return self._scripts[name](keys=list(keys_), args=list(args))

    def close(self) -> None:
        self.client.close()


def queue(pipe: ClusterPipeline, name: str, keys_: Sequence[str], args: Sequence[Any]) -> None:
    """Queues a script in a cluster pipeline. EVAL with the text: redis-py's cluster pipeline has
    no script registry, and EVAL never fails with NOSCRIPT on a fresh replica."""
    queue_eval(pipe, SOURCES[name], keys_, args)
