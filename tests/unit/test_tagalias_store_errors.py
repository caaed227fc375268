"""The store's error mapping and the page walk, without a cluster (a fake client, a stub step)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ClusterDownError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.config import RedisSettings
from services.common.contract import PushGrid
from services.tagalias import cursor as cursors
from services.tagalias import keys, scripts, walk
from services.tagalias import store as store_module
from services.tagalias.store import TagAliasStore
from tests.unit.fakes import APP


class FakeClient:
    """A cluster client whose every command and script raises exc, but for the scripts given a
    reply in replies (by script name)."""

    def __init__(self, exc: Exception, replies: dict[str, Any] | None = None) -> None:
        self.exc = exc
        self.replies = replies or {}

    def register_script(self, src: str) -> Any:
        name = next(n for n, text in scripts.SOURCES.items() if text == src)

        def run(keys: Any = None, args: Any = None) -> Any:
            if name in self.replies:
                return self.replies[name]
            raise self.exc

        return run

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.exc

        return fail


def stub_store(monkeypatch: pytest.MonkeyPatch, client: FakeClient) -> TagAliasStore:
    monkeypatch.setattr(store_module, "cluster", lambda settings: client)
    return TagAliasStore(RedisSettings(nodes=(("127.0.0.1", 1),), timeout=0.1))


@pytest.mark.parametrize(
    "exc",
    [
        RedisConnectionError("refused"),
        RedisTimeoutError("slow"),
        ClusterDownError("down"),
        RedisClusterException("cannot be connected"),
    ],
)
def test_redis_errors_become_unavailable(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    store = stub_store(monkeypatch, FakeClient(exc))
    calls = [
        lambda: store.get_tags(APP, "dev1"),
        lambda: store.add_tags(APP, "dev1", ["a"]),
        lambda: store.list_tags(APP),
        lambda: store.resolve(APP, PushGrid.Audience(tags=["a", "b"]), [], "", 10),
        lambda: store.tag_members(APP, "a", "", 10),
    ]
    for call in calls:
        with pytest.raises(PushGrid.Unavailable) as e:
            call()
        assert e.value.backend == "redis" and type(exc).__name__ in e.value.reason


def test_a_client_that_cannot_be_made_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(settings: RedisSettings) -> Any:
        raise RedisClusterException("cannot be connected")

    monkeypatch.setattr(store_module, "cluster", connect)
    store = TagAliasStore(RedisSettings(nodes=(("127.0.0.1", 1),), timeout=0.1))
    with pytest.raises(PushGrid.Unavailable) as e:
        store.get_alias(APP, "dev1")
    assert e.value.backend == "redis"


def test_slice_errors_are_not_rewrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    store = stub_store(monkeypatch, FakeClient(RedisConnectionError("unused"), {scripts.ADD_TAGS: [-1, 1000]}))
    with pytest.raises(PushGrid.LimitExceeded) as e:
        store.add_tags(APP, "dev1", ["one-more"])
    assert (e.value.limit, e.value.max) == ("device.tags", 1000)


def walk_all(step: Any, limit: int) -> tuple[list[str], int]:
    return walk_all_from(cursors.Cursor(0, "", "abcdefabcdef", "00000000"), step, limit)


def test_walk_covers_every_bucket_in_order() -> None:
    data = {b: sorted(f"b{b}m{i}" for i in range(b % 5)) for b in range(keys.BUCKETS)}

    def step(b: int, after: str, count: int) -> tuple[list[str], bool]:
        items = [m for m in data[b] if m > after][:count]
        return items, len(items) < count

    want = [m for b in range(keys.BUCKETS) for m in data[b]]
    for limit in (1, 3, 1000):
        got, pages = walk_all(step, limit)
        assert got == want
        assert pages >= len(want) // limit


def test_walk_reads_on_past_the_last_member_when_a_bucket_changes_between_pages() -> None:
    """What a failover looks like to the walk: the bucket's result is computed again between two
    pages (members joined and left meanwhile). Members there throughout are read exactly once."""
    data = {b: [] for b in range(keys.BUCKETS)}
    data[0] = ["a1", "a3", "a5", "a7"]

    def step(b: int, after: str, count: int) -> tuple[list[str], bool]:
        items = [m for m in data[b] if m > after][:count]
        return items, len(items) < count

    first = walk.page(cursors.Cursor(0, "", "abcdefabcdef", "00000000"), 2, step)
    assert first.registrationIds == ["a1", "a3"]
    data[0] = ["a0", "a1", "a4", "a5", "a7"]  # a0 and a4 joined, a3 left
    rest, _ = walk_all_from(cursors.decode(first.cursor, "00000000"), step, 2)
    assert rest == ["a4", "a5", "a7"]


def walk_all_from(cur: cursors.Cursor, step: Any, limit: int) -> tuple[list[str], int]:
    out: list[str] = []
    pages = 0
    while True:
        page = walk.page(cur, limit, step)
        pages += 1
        out += page.registrationIds
        if page.done:
            assert page.cursor == ""
            return out, pages
        cur = cursors.decode(page.cursor, "00000000")
