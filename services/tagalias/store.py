"""Every Redis call and Lua script of TagAlias, over the layout of keys.py.

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

Deviation from the design brief: the app's tag list is not one counted hash under {<appKey>}.
Counting members there would take a second write in another slot after each device script; a
failure between the two (or an idempotent retry, which sees "nothing new") would leave the count
wrong for good, and a count that reaches 0 early hides a tag that still has members. Instead each
bucket keeps the set of tag names that have members in it, updated in the same script as the
membership, so it is exact: listTags unions 32 small sets, tagSize sums 32 SCARDs.

Resolve builds, per bucket, a temporary set in the bucket's slot with one script (see
audience.py and the cursor module for how the walk stays stateless), and deletes it when its
SSCAN is done; abandoned ones expire after TEMP_TTL_MS. deleteTag and deleteAlias work in small
batches, so no single script holds Redis for long.
"""

from __future__ import annotations

import functools
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from services.common import limits
from services.common.config import RedisSettings
from services.common.contract import PushGrid
from services.common.redis_client import cluster
from services.common.validation import invalid
from services.tagalias import cursor as cursors
from services.tagalias import keys
from services.tagalias.audience import PLATFORM_VALUES, Direct, Query, tag_digest
from services.tagalias.audience import query as make_query

SENTINEL = "-"  # marks a built temporary set; never a registration id (those are alnum)
TEMP_TTL_MS = 10 * 60 * 1000  # a resolve's temporary set lives this long after its last page
DELETE_BATCH = 500  # devices untagged per script call in deleteTag
BULK_BATCH = 1000  # devices per script call in the bulk loaders
RETRIES = 10  # rounds of read-then-write before giving up on a device that keeps changing

F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------- Lua (one slot each)

ADD_DEVICES = """
-- KEYS: all, platform sets...   ARGV: regid1, platform index1 (0-based), regid2, index2, ...
for i = 1, #ARGV, 2 do
  local id, pos = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('SADD', KEYS[1], id)
  for p = 2, #KEYS do
    if p - 2 == pos then redis.call('SADD', KEYS[p], id) else redis.call('SREM', KEYS[p], id) end
  end
end
return #ARGV / 2
"""

ADD_TAGS = """
-- KEYS: device tags, bucket tag names, tag sets...   ARGV: regid, max, tags... (ARGV[i] <-> KEYS[i])
local id, max = ARGV[1], tonumber(ARGV[2])
local new = 0
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
local have = redis.call('SCARD', KEYS[1])
if new > 0 and have + new > max then return {-1, have} end
for i = 3, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
  redis.call('SADD', KEYS[i], id)
  redis.call('SADD', KEYS[2], ARGV[i])
end
return {new, have + new}
"""

REMOVE_TAGS = """
-- KEYS: device tags, bucket tag names, tag sets...   ARGV: regid, tags... (ARGV[i] <-> KEYS[i + 1])
local id = ARGV[1]
for i = 2, #ARGV do
  local tk = KEYS[i + 1]
  redis.call('SREM', KEYS[1], ARGV[i])
  redis.call('SREM', tk, id)
  if redis.call('EXISTS', tk) == 0 then redis.call('SREM', KEYS[2], ARGV[i]) end
end
return redis.call('SCARD', KEYS[1])
"""

FORGET_DEVICE = """
-- KEYS: device tags, device alias, all, platform sets...   ARGV: regid
-- Runs once the device has no tags left; answers false if a tag came back meanwhile.
if redis.call('SCARD', KEYS[1]) > 0 then return false end
local alias = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[2])
for i = 3, #KEYS do redis.call('SREM', KEYS[i], ARGV[1]) end
return alias or ''
"""

TAG_DEVICES = """
-- KEYS: tag set, bucket tag names, device tags...   ARGV: tag, max, regids... (ARGV[i] <-> KEYS[i])
-- Answers the devices refused because they already have max tags.
local tag, max = ARGV[1], tonumber(ARGV[2])
local refused = {}
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[i], tag) == 1 or redis.call('SCARD', KEYS[i]) < max then
    redis.call('SADD', KEYS[i], tag)
    redis.call('SADD', KEYS[1], ARGV[i])
  else
    refused[#refused + 1] = ARGV[i]
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SADD', KEYS[2], tag) end
return refused
"""

UNTAG_DEVICES = """
-- KEYS: tag set, bucket tag names, device tags...   ARGV: tag, regids... (ARGV[i] <-> KEYS[i + 1])
for i = 2, #ARGV do
  redis.call('SREM', KEYS[i + 1], ARGV[1])
  redis.call('SREM', KEYS[1], ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return redis.call('SCARD', KEYS[1])
"""

ALIAS_JOIN = """
-- KEYS: alias forward set   ARGV: regid, max, stale regids to drop first...
-- Answers 0 already there, 1 added, -1 full.
for i = 3, #ARGV do redis.call('SREM', KEYS[1], ARGV[i]) end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""

CLEAR_ALIAS_IF = """
-- KEYS: device alias   ARGV: alias.  Clears the device's alias only if it is still this one.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

RESOLVE_STEP = (
    """
-- One bucket of a resolve. KEYS: dest, union scratch, platform scratch, all, then the tag sets
-- of tags (nu), tagsAnd (na), the platform sets (np), tagsNot (nn), then the alias keys of the
-- alias candidates (npairs).
-- ARGV: mode ('scan'|'build'), ttl ms, sscan cursor, count, explicit ('0' none, '1' ids given,
-- '2' named devices but ids not given), nu, na, np, nn, nids, npairs, ids..., alias1, regid1, ...
local dest, su, sp, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, ttl, scan, count, explicit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local nu, na, np, nn = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local nids, npairs = tonumber(ARGV[10]), tonumber(ARGV[11])
local k = 5
local function take(n)
  local t = {}
  for i = k, k + n - 1 do t[#t + 1] = KEYS[i] end
  k = k + n
  return t
end
local union, ands, plats, nots = take(nu), take(na), take(np), take(nn)
local alias_keys = take(npairs)

local function compute()
  local inter = {}
  for _, key in ipairs(ands) do inter[#inter + 1] = key end
  if np == 1 then
    inter[#inter + 1] = plats[1]
  elseif np > 1 then
    redis.call('SUNIONSTORE', sp, unpack(plats))
    inter[#inter + 1] = sp
  end
  redis.call('DEL', dest)
  if explicit == '1' then
    local a = 12
    for _ = 1, nids do redis.call('SADD', dest, ARGV[a]); a = a + 1 end
    for i = 1, npairs do
      if redis.call('GET', alias_keys[i]) == ARGV[a] then redis.call('SADD', dest, ARGV[a + 1]) end
      a = a + 2
    end
    -- a registration id from the caller counts only if it is a device of this app
    redis.call('SINTERSTORE', dest, dest, all)
    if nu > 0 then
      redis.call('SUNIONSTORE', su, unpack(union))
      redis.call('SINTERSTORE', dest, dest, su)
    end
    if #inter > 0 then redis.call('SINTERSTORE', dest, dest, unpack(inter)) end
  elseif nu > 0 then
    redis.call('SUNIONSTORE', dest, unpack(union))
    if #inter > 0 then redis.call('SINTERSTORE', dest, dest, unpack(inter)) end
  elseif #inter > 0 then
    redis.call('SINTERSTORE', dest, all, unpack(inter))
  else
    redis.call('SUNIONSTORE', dest, all)
  end
  if nn > 0 then redis.call('SDIFFSTORE', dest, dest, unpack(nots)) end
  redis.call('DEL', su, sp)
  redis.call('SADD', dest, '"""
    + SENTINEL
    + """')
  redis.call('PEXPIRE', dest, ttl)
end

if mode == 'build' then
  if redis.call('EXISTS', dest) == 0 then compute() end
  return {'0', {}}
end
if redis.call('EXISTS', dest) == 0 then
  if explicit == '2' then return {'-1', {}} end
  compute()
end
local res = redis.call('SSCAN', dest, scan, 'COUNT', count)
if res[1] == '0' then redis.call('DEL', dest) else redis.call('PEXPIRE', dest, ttl) end
return res
"""
)

_SCRIPTS = {
    "add_devices": ADD_DEVICES,
    "add_tags": ADD_TAGS,
    "remove_tags": REMOVE_TAGS,
    "forget_device": FORGET_DEVICE,
    "tag_devices": TAG_DEVICES,
    "untag_devices": UNTAG_DEVICES,
    "alias_join": ALIAS_JOIN,
    "clear_alias_if": CLEAR_ALIAS_IF,
    "resolve_step": RESOLVE_STEP,
}

# A page step: (bucket, sscan cursor, how many wanted) -> (next sscan cursor, members)
Step = Callable[[int, int, int], tuple[int, list[str]]]


def _guarded(fn: F) -> F:
    """Turns any Redis failure into PushGrid.Unavailable, so callers can retry another time."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RedisError, RedisClusterException) as e:
            raise PushGrid.Unavailable(reason=f"redis: {type(e).__name__}: {e}"[:500], backend="redis") from e

    return wrapper  # type: ignore[return-value]


def _platform_keys(app: str, b: int) -> list[str]:
    return [keys.platform(app, b, v) for v in PLATFORM_VALUES]


def _by_bucket(registration_ids: Iterable[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for rid in registration_ids:
        out[keys.bucket(rid)].append(rid)
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class TagAliasStore:
    """TagAlias's data in a Redis Cluster. Thread-safe; connects on first use, so a server starts
    (and answers Unavailable) while Redis is down."""

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._client: RedisCluster | None = None
        self._scripts: dict[str, Any] = {}

    # ------------------------------------------------------------ plumbing

    def _r(self) -> RedisCluster:
        with self._lock:
            if self._client is None:
                client = cluster(self._settings)
                self._scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}
                self._client = client
            return self._client

    def _run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        """Runs one script (EVALSHA, loading it where a node lacks it)."""
        self._r()
        return self._scripts[name](keys=list(keys_), args=list(args))

    @staticmethod
    def _queue(pipe: Any, name: str, keys_: Sequence[str], args: Sequence[Any]) -> None:
        """Queues a script in a cluster pipeline. EVAL with the text: redis-py's cluster pipeline
        has no script registry, and EVAL never fails with NOSCRIPT on a fresh replica."""
        pipe.execute_command("EVAL", _SCRIPTS[name], len(keys_), *keys_, *args)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ------------------------------------------------------------ devices

    @_guarded
    def add_device(self, app: str, registration_id: str, platform: int) -> None:
        self.add_devices(app, [(registration_id, platform)])

    @_guarded
    def add_devices(self, app: str, devices: Sequence[tuple[str, int]]) -> None:
        """Adds devices (registration id, Platform value) to all and their platform set, one
        pipelined script call per bucket and BULK_BATCH devices."""
        groups: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for rid, plat in devices:
            groups[keys.bucket(rid)].append((rid, plat))
        pipe = self._r().pipeline()
        for b, group in groups.items():
            for chunk in _chunks(group, BULK_BATCH):
                args: list[Any] = []
                for rid, plat in chunk:
                    args += [rid, PLATFORM_VALUES.index(plat)]
                self._queue(pipe, "add_devices", [keys.all_devices(app, b), *_platform_keys(app, b)], args)
        pipe.execute()

    @_guarded
    def remove_device(self, app: str, registration_id: str) -> None:
        """Drops the device's tags, then (atomically, once no tag is left) its alias, all and
        platform membership; then takes it out of its alias's index."""
        k = keys.device(app, registration_id)
        for _ in range(RETRIES):
            self._clear_tags(app, registration_id)
            alias = self._run(
                "forget_device", [k.tags, k.alias, k.all, *_platform_keys(app, k.bucket)], [registration_id]
            )
            if alias is not None:
                if alias:
                    self._r().srem(keys.alias_devices(app, alias), registration_id)
                return
        raise PushGrid.Unavailable(reason="device's tags kept changing while it was removed; retry", backend="redis")

    # ------------------------------------------------------------ tags of a device

    @_guarded
    def add_tags(self, app: str, registration_id: str, tags: Sequence[str]) -> None:
        if not tags:
            return
        k = keys.device(app, registration_id)
        new, have = self._run(
            "add_tags", [k.tags, k.names, *(k.tag(t) for t in tags)], [registration_id, limits.DEVICE_MAX_TAGS, *tags]
        )
        if new == -1:
            raise PushGrid.LimitExceeded(
                reason=f"device {registration_id} has {have} tags; adding these would pass {limits.DEVICE_MAX_TAGS}",
                limit="device.tags",
                max=limits.DEVICE_MAX_TAGS,
            )

    @_guarded
    def remove_tags(self, app: str, registration_id: str, tags: Sequence[str]) -> None:
        if tags:
            k = keys.device(app, registration_id)
            self._run("remove_tags", [k.tags, k.names, *(k.tag(t) for t in tags)], [registration_id, *tags])

    @_guarded
    def clear_tags(self, app: str, registration_id: str) -> None:
        self._clear_tags(app, registration_id)

    def _clear_tags(self, app: str, registration_id: str) -> None:
        """Removes the tags the device has, again if one was added meanwhile."""
        k = keys.device(app, registration_id)
        for _ in range(RETRIES):
            tags = list(self._r().smembers(k.tags))
            if not tags:
                return
            left = self._run("remove_tags", [k.tags, k.names, *(k.tag(t) for t in tags)], [registration_id, *tags])
            if left == 0:
                return
        raise PushGrid.Unavailable(reason="device's tags kept changing while they were cleared; retry", backend="redis")

    @_guarded
    def get_tags(self, app: str, registration_id: str) -> list[str]:
        return sorted(self._r().smembers(keys.device(app, registration_id).tags))

    @_guarded
    def tag_devices(self, app: str, tag: str, registration_ids: Sequence[str]) -> list[str]:
        """Bulk: gives one tag to many devices, one pipelined script per bucket and BULK_BATCH
        devices; answers the devices refused because they already have the most tags allowed."""
        pipe = self._r().pipeline()
        for b, group in _by_bucket(registration_ids).items():
            for chunk in _chunks(group, BULK_BATCH):
                self._queue(
                    pipe,
                    "tag_devices",
                    [keys.tag(app, b, tag), keys.tag_names(app, b), *(keys.device_tags(app, b, rid) for rid in chunk)],
                    [tag, limits.DEVICE_MAX_TAGS, *chunk],
                )
        refused: list[str] = []
        for result in pipe.execute():
            refused += result
        return refused

    # ------------------------------------------------------------ aliases

    @_guarded
    def set_alias(self, app: str, registration_id: str, alias: str) -> None:
        index = keys.alias_devices(app, alias)
        k = keys.device(app, registration_id)
        joined = self._run("alias_join", [index], [registration_id, limits.ALIAS_MAX_DEVICES])
        if joined == -1:
            live, stale = self._alias_members(app, alias)
            if stale:
                joined = self._run("alias_join", [index], [registration_id, limits.ALIAS_MAX_DEVICES, *stale])
            if joined == -1:
                raise PushGrid.LimitExceeded(
                    reason=f"alias {alias!r} already names {len(live)} devices",
                    limit="alias.devices",
                    max=limits.ALIAS_MAX_DEVICES,
                )
        # No undo of the index entry if this fails: the SET may have happened (a timeout is
        # ambiguous), and a stale entry is harmless, filtered by readers and pruned by writers.
        old = self._r().set(k.alias, alias, get=True)
        if old and old != alias:
            self._r().srem(keys.alias_devices(app, old), registration_id)

    def _alias_members(self, app: str, alias: str) -> tuple[list[str], list[str]]:
        """The alias index's members, split into live ones and stale ones (whose device no longer
        names this alias)."""
        members = sorted(self._r().smembers(keys.alias_devices(app, alias)))
        if not members:
            return [], []
        pipe = self._r().pipeline()
        for rid in members:
            pipe.get(keys.device(app, rid).alias)
        names = pipe.execute()
        live = [rid for rid, name in zip(members, names, strict=True) if name == alias]
        stale = [rid for rid, name in zip(members, names, strict=True) if name != alias]
        return live, stale

    @_guarded
    def get_alias(self, app: str, registration_id: str) -> str:
        return self._r().get(keys.device(app, registration_id).alias) or ""

    @_guarded
    def clear_alias(self, app: str, registration_id: str) -> None:
        old = self._r().getdel(keys.device(app, registration_id).alias)
        if old:
            self._r().srem(keys.alias_devices(app, old), registration_id)

    @_guarded
    def alias_devices(self, app: str, alias: str) -> list[str]:
        return self._alias_members(app, alias)[0]

    @_guarded
    def delete_alias(self, app: str, alias: str) -> None:
        """Clears the alias on each device that has it, then drops those index entries."""
        index = keys.alias_devices(app, alias)
        for _ in range(RETRIES):
            members = list(self._r().smembers(index))
            if not members:
                return
            for rid in members:
                self._run("clear_alias_if", [keys.device(app, rid).alias], [alias])
            self._r().srem(index, *members)
        raise PushGrid.Unavailable(reason="alias kept gaining devices while it was deleted; retry", backend="redis")

    # ------------------------------------------------------------ tags of an app

    @_guarded
    def list_tags(self, app: str) -> list[str]:
        pipe = self._r().pipeline()
        for b in range(keys.BUCKETS):
            pipe.smembers(keys.tag_names(app, b))
        names: set[str] = set()
        for part in pipe.execute():
            names |= part
        return sorted(names)

    @_guarded
    def tag_size(self, app: str, tag: str) -> int:
        pipe = self._r().pipeline()
        for b in range(keys.BUCKETS):
            pipe.scard(keys.tag(app, b, tag))
        return sum(pipe.execute())

    @_guarded
    def is_member(self, app: str, tag: str, registration_id: str) -> bool:
        return bool(self._r().sismember(keys.device(app, registration_id).tag(tag), registration_id))

    @_guarded
    def tag_members(self, app: str, tag: str, cursor: str, limit: int) -> PushGrid.AudiencePage:
        check = tag_digest(app, tag)[:8]
        cur = self._start_or_decode(cursor, check, builds=False)
        return self._walk(cur, limit, self._direct_step(app, Direct("tag", name=tag)))

    @_guarded
    def delete_tag(self, app: str, tag: str) -> None:
        """Untags the members bucket by bucket, DELETE_BATCH devices per script."""
        r = self._r()
        for b in range(keys.BUCKETS):
            tag_key, names = keys.tag(app, b, tag), keys.tag_names(app, b)
            while True:
                members = r.srandmember(tag_key, DELETE_BATCH) or []
                self._run(
                    "untag_devices",
                    [tag_key, names, *(keys.device_tags(app, b, rid) for rid in members)],
                    [tag, *members],
                )
                if not members:
                    break

    # ------------------------------------------------------------ audiences

    @_guarded
    def resolve(
        self, app: str, audience: PushGrid.Audience, platforms: Sequence[PushGrid.Platform], cursor: str, limit: int
    ) -> PushGrid.AudiencePage:
        """One page of a validated audience; see audience.py for the set expression."""
        q = make_query(app, audience, list(platforms))
        digest = q.digest()
        direct = q.direct()
        cur = self._start_or_decode(cursor, digest[:8], builds=direct is None)
        if direct is not None:
            return self._walk(cur, limit, self._direct_step(app, direct))
        return self._walk(cur, limit, self._resolve_step(q, digest[:16] + cur.run))

    def _start_or_decode(self, text: str, check: str, builds: bool) -> cursors.Cursor:
        if not text:
            return cursors.Cursor(bucket=0, scan=0, run=secrets.token_hex(6) if builds else "", check=check)
        cur = cursors.decode(text, check)
        if bool(cur.run) != builds:
            raise invalid("cursor", "cursor belongs to another kind of query; start with an empty cursor")
        return cur

    def _walk(self, cur: cursors.Cursor, limit: int, step: Step) -> PushGrid.AudiencePage:
        """Fills one page from consecutive buckets, starting where the cursor stands."""
        out: list[str] = []
        b, scan = cur.bucket, cur.scan
        while b < keys.BUCKETS and len(out) < limit:
            scan, members = step(b, scan, limit - len(out))
            out.extend(m for m in members if m != SENTINEL)
            if scan == 0:
                b += 1
        if b >= keys.BUCKETS:
            return PushGrid.AudiencePage(registrationIds=out, cursor="", done=True)
        nxt = cursors.Cursor(bucket=b, scan=scan, run=cur.run, check=cur.check)
        return PushGrid.AudiencePage(registrationIds=out, cursor=cursors.encode(nxt), done=False)

    def _direct_step(self, app: str, direct: Direct) -> Step:
        def key(b: int) -> str:
            if direct.kind == "tag":
                return keys.tag(app, b, direct.name)
            if direct.kind == "platform":
                return keys.platform(app, b, direct.platform)
            return keys.all_devices(app, b)

        def step(b: int, scan: int, count: int) -> tuple[int, list[str]]:
            nxt, members = self._r().sscan(key(b), scan, count=count)
            return int(nxt), list(members)

        return step

    def _resolve_step(self, q: Query, query_id: str) -> Step:
        def step(b: int, scan: int, count: int) -> tuple[int, list[str]]:
            for _ in range(2):
                ks, args = self._step_call(q, query_id, b, "scan", scan, count, None)
                nxt, members = self._run("resolve_step", ks, args)
                if nxt != "-1":
                    return int(nxt), list(members)
                self._build_named(q, query_id, b)
            raise PushGrid.Unavailable(
                reason="temporary audience set vanished while it was read; retry", backend="redis"
            )

        return step

    def _build_named(self, q: Query, query_id: str, first: int) -> None:
        """Builds the temporary sets of an audience that names devices, for every bucket from
        first on: the alias indexes are read once, not once per bucket."""
        ids = _by_bucket(q.registration_ids)
        pairs: dict[int, list[tuple[str, str]]] = defaultdict(list)
        if q.aliases:
            pipe = self._r().pipeline()
            for alias in q.aliases:
                pipe.smembers(keys.alias_devices(q.app, alias))
            for alias, members in zip(q.aliases, pipe.execute(), strict=True):
                for rid in members:
                    pairs[keys.bucket(rid)].append((alias, rid))
        pipe = self._r().pipeline()
        for b in range(first, keys.BUCKETS):
            ks, args = self._step_call(q, query_id, b, "build", 0, 0, (ids.get(b, []), pairs.get(b, [])))
            self._queue(pipe, "resolve_step", ks, args)
        pipe.execute()

    @staticmethod
    def _step_call(
        q: Query,
        query_id: str,
        b: int,
        mode: str,
        scan: int,
        count: int,
        named: tuple[list[str], list[tuple[str, str]]] | None,
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of RESOLVE_STEP for one bucket; named is (ids, (alias, id) pairs) when
        building a query that names devices."""
        app = q.app
        ids, pairs = named if named is not None else ([], [])
        explicit = "0" if not q.explicit else ("1" if named is not None else "2")
        plats = [keys.platform(app, b, v) for v in q.platforms]
        ks = [
            keys.temp(app, b, query_id),
            keys.temp_scratch(app, b, query_id, "u"),
            keys.temp_scratch(app, b, query_id, "p"),
            keys.all_devices(app, b),
            *(keys.tag(app, b, t) for t in q.tags),
            *(keys.tag(app, b, t) for t in q.tags_and),
            *plats,
            *(keys.tag(app, b, t) for t in q.tags_not),
            *(keys.device_alias(app, b, rid) for _, rid in pairs),
        ]
        args: list[Any] = [
            mode,
            TEMP_TTL_MS,
            scan,
            count,
            explicit,
            len(q.tags),
            len(q.tags_and),
            len(plats),
            len(q.tags_not),
            len(ids),
            len(pairs),
            *ids,
        ]
        for alias, rid in pairs:
            args += [alias, rid]
        return ks, args
