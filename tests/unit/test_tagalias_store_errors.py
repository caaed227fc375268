"""The store's error mapping and page walk, without a cluster (a stub client)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ClusterDownError, ConnectionError, RedisClusterException, TimeoutError

from services.common.config import RedisSettings
from services.common.contract import PushGrid
from services.tagalias import cursor as cursors
from services.tagalias import keys
from services.tagalias.store import SENTINEL, TagAliasStore, _guarded

APP = "0123456789abcdef01234567"


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("refused"),
        TimeoutError("slow"),
        ClusterDownError("down"),
        RedisClusterException("cannot be connected"),
    ],
)
def test_redis_errors_become_unavailable(exc: Exception) -> None:
    @_guarded
    def op() -> None:
        raise exc

    with pytest.raises(PushGrid.Unavailable) as e:
        op()
    assert e.value.backend == "redis" and type(exc).__name__ in e.value.reason


def test_slice_errors_are_not_rewrapped() -> None:
    @_guarded
    def op() -> None:
        raise PushGrid.LimitExceeded(reason="x", limit="device.tags", max=1000)

    with pytest.raises(PushGrid.LimitExceeded):
        op()


def walk_all(store: TagAliasStore, step: Any, limit: int) -> tuple[list[str], int]:
    cur = cursors.Cursor(0, 0, "", "00000000")
    out: list[str] = []
    pages = 0
    while True:
        page = store._walk(cur, limit, step)
        pages += 1
        out += page.registrationIds
        if page.done:
            assert page.cursor == ""
            return out, pages
        cur = cursors.decode(page.cursor, "00000000")


def test_walk_covers_every_bucket_and_drops_the_sentinel() -> None:
    store = TagAliasStore(RedisSettings(nodes=(("127.0.0.1", 1),), timeout=0.1))
    data = {b: [f"b{b}m{i}" for i in range(b % 5)] + [SENTINEL] for b in range(keys.BUCKETS)}

    def step(b: int, scan: int, count: int) -> tuple[int, list[str]]:
        items = data[b][scan : scan + count]
        nxt = scan + count
        return (0 if nxt >= len(data[b]) else nxt), items

    want = sorted(m for ms in data.values() for m in ms if m != SENTINEL)
    for limit in (1, 3, 1000):
        got, pages = walk_all(store, step, limit)
        assert sorted(got) == want
        assert pages >= len(want) // limit
