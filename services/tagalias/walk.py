"""The audience walk: one page of resolve or tagMembers at a time, bucket after bucket.

A walk reads an app's BUCKETS buckets in order and, in each, SSCANs one set, handing out up to
the page's limit of members before it stops and answers a cursor (cursor.py) saying where it
stands; the next page, on any replica, carries on from there. Which set, per bucket:

- a query that equals one stored set (audience.Direct: one tag, all, all of one platform) walks
  that set itself;
- any other query walks a temporary set that resolve_step.lua computes in the bucket's slot (the
  set expression of audience.py), named by the query's digest and the walk's run. It holds
  SENTINEL, so an empty result still exists; it expires TEMP_TTL_MS after its last page and is
  deleted once its SSCAN ends, so a retried page finds the same set and an abandoned walk leaves
  nothing for long. A query that names devices (ids, aliases) cannot be computed from a cursor
  alone, so when a page finds its set missing (the first page, or after expiry) the sets of every
  bucket left are built at once: the alias indexes are read once, not once per bucket.

This module decides what is read and in which order; the reads themselves are the store's
(`Sets`), so every Redis call of TagAlias stays in store.py.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from services.common.backends import REDIS
from services.common.contract import PushGrid
from services.common.validation import invalid
from services.tagalias import cursor as cursors
from services.tagalias import keys
from services.tagalias.audience import Direct, Query, query, tag_digest

SENTINEL = "-"  # marks a built temporary set; never a registration id (those are alnum)
TEMP_TTL_MS = 10 * 60 * 1000  # a resolve's temporary set lives this long after its last page

# A page step: (bucket, sscan cursor, how many wanted) -> (next sscan cursor, members)
Step = Callable[[int, int, int], tuple[int, list[str]]]

# KEYS and ARGV of one resolve_step.lua call
Call = tuple[list[str], list[Any]]


class Sets(Protocol):
    """The Redis reads a walk makes (the store's)."""

    def scan(self, key: str, scan: int, count: int) -> tuple[int, list[str]]:
        """One SSCAN of a set: the next sscan cursor and the members."""
        ...

    def resolve_step(self, call: Call) -> tuple[str, list[str]]:
        """resolve_step.lua in 'scan' mode: the next sscan cursor ('-1': set missing) and members."""
        ...

    def build(self, calls: Sequence[Call]) -> None:
        """resolve_step.lua in 'build' mode, once per call, pipelined."""
        ...

    def members(self, keys_: Sequence[str]) -> list[set[str]]:
        """The members of each set, pipelined."""
        ...

    def devices_of(self, app: str, registration_ids: Sequence[str], platforms: Sequence[int]) -> list[str]:
        """Those of registration_ids that are app's devices (of one of platforms; empty: any)."""
        ...


def tag_members(sets: Sets, app: str, tag: str, cursor: str, limit: int) -> PushGrid.AudiencePage:
    """One page of a tag's members."""
    cur = start(cursor, tag_digest(app, tag)[:8], builds=False)
    return page(cur, limit, _direct_step(sets, app, Direct("tag", name=tag)))


def resolve(
    sets: Sets,
    app: str,
    audience: PushGrid.Audience,
    platforms: Sequence[PushGrid.Platform],
    cursor: str,
    limit: int,
) -> PushGrid.AudiencePage:
    """One page of a validated audience; see audience.py for the set expression."""
    q = query(app, audience, list(platforms))
    if not cursor and _ids_only(q) and len(q.registration_ids) <= limit:
        # a handful of ids (a targeted push): one read of their memberships answers it whole
        return PushGrid.AudiencePage(
            registrationIds=sets.devices_of(app, list(dict.fromkeys(q.registration_ids)), q.platforms),
            cursor="",
            done=True,
        )
    digest = q.digest()
    direct = q.direct()
    cur = start(cursor, digest[:8], builds=direct is None)
    if direct is not None:
        return page(cur, limit, _direct_step(sets, app, direct))
    return page(cur, limit, _built_step(sets, q, digest[:16] + cur.run))


def _ids_only(q: Query) -> bool:
    """An audience of registration ids alone: its answer is those ids that are the app's devices
    (of the platforms asked for), as resolve_step.lua computes it, with no set to build."""
    return bool(q.registration_ids) and not (q.tags or q.tags_and or q.tags_not or q.aliases)


def start(text: str, check: str, builds: bool) -> cursors.Cursor:
    """The cursor a page starts from: a fresh walk for "", else the one the client sent back
    (checked against the walk's digest and kind)."""
    if not text:
        return cursors.Cursor(bucket=0, scan=0, run=secrets.token_hex(6) if builds else "", check=check)
    cur = cursors.decode(text, check)
    if bool(cur.run) != builds:
        raise invalid("cursor", "cursor belongs to another kind of query; start with an empty cursor")
    return cur


def page(cur: cursors.Cursor, limit: int, step: Step) -> PushGrid.AudiencePage:
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


def _direct_key(app: str, direct: Direct, b: int) -> str:
    if direct.kind == "tag":
        return keys.tag(app, b, direct.name)
    if direct.kind == "platform":
        return keys.platform(app, b, direct.platform)
    return keys.all_devices(app, b)


def _direct_step(sets: Sets, app: str, direct: Direct) -> Step:
    def step(b: int, scan: int, count: int) -> tuple[int, list[str]]:
        return sets.scan(_direct_key(app, direct, b), scan, count)

    return step


def _built_step(sets: Sets, q: Query, query_id: str) -> Step:
    def step(b: int, scan: int, count: int) -> tuple[int, list[str]]:
        for _ in range(2):
            nxt, members = sets.resolve_step(_step_call(q, query_id, b, "scan", scan, count, None))
            if nxt != "-1":
                return int(nxt), members
            _build_named(sets, q, query_id, b)
        raise PushGrid.Unavailable(
            reason="temporary audience set vanished while it was read; retry", backend=REDIS.name
        )

    return step


def _build_named(sets: Sets, q: Query, query_id: str, first: int) -> None:
    """Builds the temporary sets of an audience that names devices, for every bucket from
    first on: the alias indexes are read once, not once per bucket."""
    ids = keys.by_bucket(q.registration_ids)
    pairs: dict[int, list[tuple[str, str]]] = defaultdict(list)
    if q.aliases:
        indexes = sets.members([keys.alias_devices(q.app, alias) for alias in q.aliases])
        for alias, members in zip(q.aliases, indexes, strict=True):
            for rid in members:
                pairs[keys.bucket(rid)].append((alias, rid))
    sets.build(
        [
            _step_call(q, query_id, b, "build", 0, 0, (ids.get(b, []), pairs.get(b, [])))
            for b in range(first, keys.BUCKETS)
        ]
    )


def _step_call(
    q: Query,
    query_id: str,
    b: int,
    mode: str,
    scan: int,
    count: int,
    named: tuple[list[str], list[tuple[str, str]]] | None,
) -> Call:
    """KEYS and ARGV of resolve_step.lua for one bucket; named is (ids, (alias, id) pairs) when
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
        SENTINEL,
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
