"""Every Redis call of TagAlias, over the layout of keys.py and the scripts of lua/ (scripts.py).

What is atomic and why:
- Everything about one device (its tags, the tag sets it is in, the bucket's tag-name set, all,
  platform sets, its alias string) lives in the device's bucket slot, so each device change is
  one Lua script: the 1000-tags limit is checked and applied in the same script, and a failing
  call changes nothing.
- An alias's forward set lives in the alias's own slot. The 10-devices limit is checked and
  applied by one script there, before the device's alias string is written. The device's string
  is the truth; the forward set is an index that may, after a crash between the two writes, hold
  a stale entry. Writers therefore add to the index before setting the string and clear the
  string before removing from the index, readers keep only members whose string still names the
  alias, and a full alias drops its stale members before refusing.

Why an app's tag list is kept per bucket rather than as one hash of member counts under the
app's own hash tag ({<appKey>}): counting members there would take a second write in another
slot after each device script; a failure between the two (or an idempotent retry, which sees
"nothing new") would leave the count wrong for good, and a count that reaches 0 early hides a
tag that still has members. Instead each bucket keeps the set of tag names that have members in
it, updated in the same script as the membership, so it is exact: listTags unions 32 small sets,
tagSize sums 32 SCARDs.

resolve and tagMembers page through the buckets as walk.py decides, making their reads through
_Sets here. deleteTag and deleteAlias work in small batches, so no single script holds Redis
for long. Loading many tags at once (benchmarks, tests) is tools/tagalias_load.py's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from redis.cluster import RedisCluster

from services.common import limits
from services.common.backends import REDIS
from services.common.batching import chunks
from services.common.config import RedisSettings
from services.common.contract import PushGrid
from services.common.lazy import Lazy
from services.common.redis_client import cluster, queue
from services.tagalias import keys, scripts, walk

DELETE_BATCH = 500  # devices untagged per script call in deleteTag
RETRIES = 10  # rounds of read-then-write before giving up on a device that keeps changing

# The client decodes replies (redis_client.cluster sets decode_responses), so the casts below
# only tell mypy what redis-py's generic reply types cannot: these replies are str.


@REDIS.guarded
def add_devices(client: RedisCluster, app: str, devices: Sequence[tuple[str, int]]) -> None:
    """Adds devices (registration id, Platform value) of app to all and their platform set: one
    script call per bucket, all in one pipeline (addDevice and addDevices)."""
    groups: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for rid, plat in devices:
        groups[keys.bucket(rid)].append((rid, plat))
    pipe = client.pipeline()
    for b, group in groups.items():
        for chunk in chunks(group, limits.DEVICE_BATCH):
            scripts.queue(pipe, scripts.ADD_DEVICES, *scripts.add_devices_call(app, b, chunk))
    pipe.execute()


class _Sets:
    """The reads of an audience walk (walk.Sets) over the store's client."""

    def __init__(self, redis: Lazy[scripts.Registered]) -> None:
        self._redis = redis

    def resolve_step(self, call: walk.Call) -> tuple[str, list[str]]:
        nxt, members = self._redis().run(scripts.RESOLVE_STEP, *call)
        return cast(str, nxt), cast(list[str], members)

    def build(self, calls: Sequence[walk.Call]) -> None:
        pipe = self._redis().client.pipeline()
        for keys_, args in calls:
            scripts.queue(pipe, scripts.RESOLVE_STEP, keys_, args)
        pipe.execute()

    def members(self, keys_: Sequence[str]) -> list[set[str]]:
        pipe = self._redis().client.pipeline()
        for key in keys_:
            pipe.smembers(key)
        return cast(list[set[str]], pipe.execute())

    def devices_of(self, app: str, registration_ids: Sequence[str], platforms: Sequence[int]) -> list[str]:
        pipe = self._redis().client.pipeline()
        sets = [(rid, keys.bucket(rid)) for rid in registration_ids]
        for rid, b in sets:
            for key in [keys.all_devices(app, b), *(keys.platform(app, b, p) for p in platforms)]:
                queue(pipe, key, "SISMEMBER", key, rid)
        answers = iter(pipe.execute())
        out = []
        for rid, _ in sets:
            known = next(answers)
            of_platform = [next(answers) for _ in platforms]
            if known and (not platforms or any(of_platform)):
                out.append(rid)
        return out


class TagAliasStore:
    """TagAlias's data in a Redis Cluster. Thread-safe; connects on first use, so a server starts
    (and answers Unavailable) while Redis is down. Every public method turns a Redis failure into
    PushGrid.Unavailable (backend "redis"), so callers can retry another time."""

    def __init__(self, settings: RedisSettings) -> None:
        self._redis: Lazy[scripts.Registered] = Lazy(
            lambda: scripts.Registered(cluster(settings)), close=scripts.Registered.close
        )
        self._sets = _Sets(self._redis)

    # ------------------------------------------------------------ plumbing

    def _r(self) -> RedisCluster:
        return self._redis().client

    def _run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        """Runs one script (EVALSHA, loading it where a node lacks it)."""
        return self._redis().run(name, keys_, args)

    def _members(self, key: str) -> set[str]:
        return cast(set[str], self._r().smembers(key))

    def _get(self, key: str) -> str | None:
        return cast("str | None", self._r().get(key))

    def close(self) -> None:
        self._redis.close()

    # ------------------------------------------------------------ devices

    @REDIS.guarded
    def add_devices(self, app: str, devices: Sequence[tuple[str, int]]) -> None:
        """Adds each device (registration id, Platform value) to all and its platform set (out
        of any other platform's)."""
        add_devices(self._r(), app, devices)

    @REDIS.guarded
    def remove_device(self, app: str, registration_id: str) -> None:
        """Drops the device's tags, then (atomically, once no tag is left) its alias, all and
        platform membership; then takes it out of its alias's index."""
        k = keys.device(app, registration_id)
        for _ in range(RETRIES):
            self._clear_tags(app, registration_id)
            alias = self._run(
                scripts.FORGET_DEVICE,
                [k.tags, k.alias, k.all, *keys.platform_sets(app, k.bucket)],
                [registration_id],
            )
            if alias is not None:
                if alias:
                    self._r().srem(keys.alias_devices(app, alias), registration_id)
                return
        raise PushGrid.Unavailable(reason="device's tags kept changing while it was removed; retry", backend=REDIS.name)

    # ------------------------------------------------------------ tags of a device

    @REDIS.guarded
    def add_tags(self, app: str, registration_id: str, tags: Sequence[str]) -> None:
        if not tags:
            return
        k = keys.device(app, registration_id)
        new, have = self._run(
            scripts.ADD_TAGS,
            [k.tags, k.names, *(k.tag(t) for t in tags)],
            [registration_id, limits.DEVICE_MAX_TAGS, *tags],
        )
        if new == -1:
            raise PushGrid.LimitExceeded(
                reason=f"device {registration_id} has {have} tags; adding these would pass {limits.DEVICE_MAX_TAGS}",
                limit="device.tags",
                max=limits.DEVICE_MAX_TAGS,
            )

    @REDIS.guarded
    def remove_tags(self, app: str, registration_id: str, tags: Sequence[str]) -> None:
        if tags:
            k = keys.device(app, registration_id)
            self._run(scripts.REMOVE_TAGS, [k.tags, k.names, *(k.tag(t) for t in tags)], [registration_id, *tags])

    @REDIS.guarded
    def clear_tags(self, app: str, registration_id: str) -> None:
        self._clear_tags(app, registration_id)

    def _clear_tags(self, app: str, registration_id: str) -> None:
        """Removes the tags the device has, again if one was added meanwhile."""
        k = keys.device(app, registration_id)
        for _ in range(RETRIES):
            tags = list(self._members(k.tags))
            if not tags:
                return
            left = self._run(
                scripts.REMOVE_TAGS, [k.tags, k.names, *(k.tag(t) for t in tags)], [registration_id, *tags]
            )
            if left == 0:
                return
        raise PushGrid.Unavailable(
            reason="device's tags kept changing while they were cleared; retry", backend=REDIS.name
        )

    @REDIS.guarded
    def get_tags(self, app: str, registration_id: str) -> list[str]:
        return sorted(self._members(keys.device(app, registration_id).tags))

    # ------------------------------------------------------------ aliases

    @REDIS.guarded
    def set_alias(self, app: str, registration_id: str, alias: str) -> None:
        index = keys.alias_devices(app, alias)
        k = keys.device(app, registration_id)
        joined = self._run(scripts.ALIAS_JOIN, [index], [registration_id, limits.ALIAS_MAX_DEVICES])
        if joined == -1:
            live, stale = self._alias_members(app, alias)
            if stale:
                joined = self._run(scripts.ALIAS_JOIN, [index], [registration_id, limits.ALIAS_MAX_DEVICES, *stale])
            if joined == -1:
                raise PushGrid.LimitExceeded(
                    reason=f"alias {alias!r} already names {len(live)} devices",
                    limit="alias.devices",
                    max=limits.ALIAS_MAX_DEVICES,
                )
        # No undo of the index entry if this fails: the SET may have happened (a timeout is
        # ambiguous), and a stale entry is harmless, filtered by readers and pruned by writers.
        old = cast("str | None", self._r().set(k.alias, alias, get=True))
        if old and old != alias:
            self._r().srem(keys.alias_devices(app, old), registration_id)

    def _alias_members(self, app: str, alias: str) -> tuple[list[str], list[str]]:
        """The alias index's members, split into live ones and stale ones (whose device no longer
        names this alias)."""
        members = sorted(self._members(keys.alias_devices(app, alias)))
        if not members:
            return [], []
        pipe = self._r().pipeline()
        for rid in members:
            pipe.get(keys.device(app, rid).alias)
        names = cast(list["str | None"], pipe.execute())
        live = [rid for rid, name in zip(members, names, strict=True) if name == alias]
        stale = [rid for rid, name in zip(members, names, strict=True) if name != alias]
        return live, stale

    @REDIS.guarded
    def get_alias(self, app: str, registration_id: str) -> str:
        return self._get(keys.device(app, registration_id).alias) or ""

    @REDIS.guarded
    def clear_alias(self, app: str, registration_id: str) -> None:
        old = cast("str | None", self._r().getdel(keys.device(app, registration_id).alias))
        if old:
            self._r().srem(keys.alias_devices(app, old), registration_id)

    @REDIS.guarded
    def alias_devices(self, app: str, alias: str) -> list[str]:
        return self._alias_members(app, alias)[0]

    @REDIS.guarded
    def delete_alias(self, app: str, alias: str) -> None:
        """Clears the alias on each device that has it, then drops those index entries."""
        index = keys.alias_devices(app, alias)
        for _ in range(RETRIES):
            members = list(self._members(index))
            if not members:
                return
            for rid in members:
                self._run(scripts.CLEAR_ALIAS_IF, [keys.device(app, rid).alias], [alias])
            self._r().srem(index, *members)
        raise PushGrid.Unavailable(reason="alias kept gaining devices while it was deleted; retry", backend=REDIS.name)

    # ------------------------------------------------------------ tags of an app

    @REDIS.guarded
    def list_tags(self, app: str) -> list[str]:
        names: set[str] = set()
        for part in self._sets.members([keys.tag_names(app, b) for b in range(keys.BUCKETS)]):
            names |= part
        return sorted(names)

    @REDIS.guarded
    def tag_size(self, app: str, tag: str) -> int:
        pipe = self._r().pipeline()
        for b in range(keys.BUCKETS):
            pipe.scard(keys.tag(app, b, tag))
        return sum(cast(list[int], pipe.execute()))

    @REDIS.guarded
    def is_member(self, app: str, tag: str, registration_id: str) -> bool:
        return bool(self._r().sismember(keys.device(app, registration_id).tag(tag), registration_id))

    @REDIS.guarded
    def tag_members(self, app: str, tag: str, cursor: str, limit: int) -> PushGrid.AudiencePage:
        return walk.tag_members(self._sets, app, tag, cursor, limit)

    @REDIS.guarded
    def delete_tag(self, app: str, tag: str) -> None:
        """Untags the members bucket by bucket, DELETE_BATCH devices per script."""
        r = self._r()
        for b in range(keys.BUCKETS):
            tag_key, names = keys.tag(app, b, tag), keys.tag_names(app, b)
            while True:
                members = cast("list[str] | None", r.srandmember(tag_key, DELETE_BATCH)) or []
                self._run(
                    scripts.UNTAG_DEVICES,
                    [tag_key, names, *(keys.device_tags(app, b, rid) for rid in members)],
                    [tag, *members],
                )
                if not members:
                    break

    # ------------------------------------------------------------ audiences

    @REDIS.guarded
    def resolve(
        self, app: str, audience: PushGrid.Audience, platforms: Sequence[PushGrid.Platform], cursor: str, limit: int
    ) -> PushGrid.AudiencePage:
        """One page of a validated audience (walk.py)."""
        return walk.resolve(self._sets, app, audience, platforms, cursor, limit)
