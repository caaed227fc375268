"""The audience walk: one page of resolve or tagMembers at a time, bucket after bucket.

A walk reads an app's BUCKETS buckets in order. In each, resolve_step.lua computes the query's
result as a temporary sorted set in the bucket's slot (the set expression of audience.py; every
score 0) and hands out members in lexicographic order, up to the page's limit, before the walk
stops and answers a cursor (cursor.py) naming the last member handed out; the next page, on any
replica, reads on from just past it.

Why a sorted copy rather than an SSCAN of the stored sets: a position by value survives a Redis
failover. An SSCAN cursor is a position in one process's hash table; the replica that takes over
(or a master restarted from its AOF) lays the same members out in another order, so a cursor
from before can skip members. A lex range over a sorted set means the same on every node, and
if the temporary set itself was lost with its master, the next page computes it again and reads
on past the same member: nothing present throughout the walk is skipped or handed out twice.

The temporary set holds SENTINEL (sorted before every registration id, never handed out), so an
empty result still exists; it expires TEMP_TTL_MS after its last page and is deleted once read to
its end, so a retried page finds the same set and an abandoned walk leaves nothing for long. A
query that names devices (ids, aliases) cannot be computed from a cursor alone, so when a page
finds its set missing (the first page, or after expiry) the sets of every bucket left are built
at once: the alias indexes are read once, not once per bucket.

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
from services.tagalias import cursor as cursors
from services.tagalias import keys
from services.tagalias.audience import Query, query

SENTINEL = "-"  # marks a built temporary set; sorts before every registration id (those are alnum)
TEMP_TTL_MS = 10 * 60 * 1000  # a resolve's temporary set lives this long after its last page

# A page step: (bucket, last member read, how many wanted) -> (members, whether the bucket is done)
Step = Callable[[int, str, int], tuple[list[str], bool]]

# KEYS and ARGV of one resolve_step.lua call
Call = tuple[list[str], list[Any]]


class Sets(Protocol):
    """The Redis reads a walk makes (the store's)."""

    def resolve_step(self, call: Call) -> tuple[str, list[str]]:
        """resolve_step.lua in 'read' mode: '1' (more to come), '0' (bucket done) or '-1' (set
        missing and not computable from the call), and the members."""
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
    return _walk(sets, Query(app=app, tags=(tag,)), cursor, limit)


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
    return _walk(sets, q, cursor, limit)


def _ids_only(q: Query) -> bool:
    """An audience of registration ids alone: its answer is those ids that are the app's devices
    (of the platforms asked for), as resolve_step.lua computes it, with no set to build."""
    return bool(q.registration_ids) and not (q.tags or q.tags_and or q.tags_not or q.aliases)


def _walk(sets: Sets, q: Query, cursor: str, limit: int) -> PushGrid.AudiencePage:
    digest = q.digest()
    cur = start(cursor, digest[:8])
    return page(cur, limit, _step(sets, q, digest[:16] + cur.run))


def start(text: str, check: str) -> cursors.Cursor:
    """The cursor a page starts from: a fresh walk for "", else the one the client sent back
    (checked against the walk's digest)."""
    if not text:
        return cursors.Cursor(bucket=0, after="", run=secrets.token_hex(6), check=check)
    return cursors.decode(text, check)


def page(cur: cursors.Cursor, limit: int, step: Step) -> PushGrid.AudiencePage:
    """Fills one page from consecutive buckets, starting where the cursor stands."""
    out: list[str] = []
    b, after = cur.bucket, cur.after
    while b < keys.BUCKETS and len(out) < limit:
        members, done = step(b, after, limit - len(out))
        out.extend(members)
        if done:
            b, after = b + 1, ""
        elif members:
            after = members[-1]
    if b >= keys.BUCKETS:
        return PushGrid.AudiencePage(registrationIds=out, cursor="", done=True)
    nxt = cursors.Cursor(bucket=b, after=after, run=cur.run, check=cur.check)
    return PushGrid.AudiencePage(registrationIds=out, cursor=cursors.encode(nxt), done=False)


def _step(sets: Sets, q: Query, query_id: str) -> Step:
    def step(b: int, after: str, count: int) -> tuple[list[str], bool]:
        for _ in range(2):
            state, members = sets.resolve_step(_step_call(q, query_id, b, "read", after, count, None))
            if state != "-1":
                return members, state == "0"
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
            _step_call(q, query_id, b, "build", "", 0, (ids.get(b, []), pairs.get(b, [])))
            for b in range(first, keys.BUCKETS)
        ]
    )


def _step_call(
    q: Query,
    query_id: str,
    b: int,
    mode: str,
    after: str,
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
        after,
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
