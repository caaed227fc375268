"""TagAlias against a real Redis Cluster (the session fixture `redis_settings` of tests/conftest.py).

Every test works in an app key of its own, so tests can share the cluster. Audience results are
checked against the same audience computed in Python over a few thousand devices in every bucket.
"""

from __future__ import annotations

import random
import secrets
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from services.common import limits, platforms
from services.common.config import RedisSettings
from services.common.contract import PushGrid
from services.tagalias import cursor as cursors
from services.tagalias import keys
from services.tagalias.audience import query
from services.tagalias.servant import TagAliasI
from services.tagalias.store import TagAliasStore
from tools import tagalias_load

pytestmark = pytest.mark.integration

A = PushGrid.Audience
P = PushGrid.Platform
PLATFORMS = list(platforms.ALL)
TAG_POOL = [f"t{i}" for i in range(8)] + ["vip:gold", "city.bj"]
ALIAS_POOL = [f"user{i}" for i in range(120)]


def new_app() -> str:
    return secrets.token_hex(12)


@pytest.fixture(scope="module")
def store(redis_settings: RedisSettings) -> Iterator[TagAliasStore]:
    s = TagAliasStore(redis_settings)
    yield s
    s.close()


@pytest.fixture(scope="module")
def replica(redis_settings: RedisSettings) -> Iterator[TagAliasStore]:
    """A second store, as another TagAlias replica would have."""
    s = TagAliasStore(redis_settings)
    yield s
    s.close()


@pytest.fixture
def app() -> str:
    return new_app()


# ---------------------------------------------------------------- the shared world (read-only)


@dataclass
class Device:
    platform: P | None  # None: tagged but never added with addDevice
    tags: set[str] = field(default_factory=set)
    alias: str = ""


@dataclass
class World:
    app: str
    devices: dict[str, Device]

    def expect(self, aud: PushGrid.Audience, platforms: list[P] = ()) -> set[str]:
        """The audience computed in Python, as Types.ice's Audience comment defines it."""
        devs = self.devices
        named = set(aud.registrationIds or ()) | {r for r, d in devs.items() if aud.aliases and d.alias in aud.aliases}
        named = {r for r in named if r in devs and devs[r].platform is not None}  # only the app's own devices
        if aud.tags:
            base = {r for r, d in devs.items() if d.tags & set(aud.tags)}
            if aud.aliases or aud.registrationIds:
                base &= named
        elif aud.aliases or aud.registrationIds:
            base = named
        else:
            base = {r for r, d in devs.items() if d.platform is not None}
        out = set()
        for r in base:
            d = devs.get(r, Device(platform=None))
            if aud.tagsAnd and not set(aud.tagsAnd) <= d.tags:
                continue
            if platforms and d.platform not in platforms:
                continue
            if aud.tagsNot and d.tags & set(aud.tagsNot):
                continue
            out.add(r)
        return out


def _rid(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(10, 20)))


@pytest.fixture(scope="module")
def world(store: TagAliasStore) -> World:
    """3000 added devices and 40 tagged-only ones, tags of varied popularity, 400 with aliases."""
    rng = random.Random(20240611)
    app = new_app()
    devices: dict[str, Device] = {}
    while len(devices) < 3000:
        devices[_rid(rng)] = Device(platform=rng.choice(PLATFORMS))
    while len(devices) < 3040:
        devices[_rid(rng)] = Device(platform=None)
    weights = {t: 0.5 / (i + 1) for i, t in enumerate(TAG_POOL)}
    for d in devices.values():
        d.tags = {t for t, w in weights.items() if rng.random() < w}
    rids = list(devices)
    for rid in rng.sample(rids, 400):
        alias = rng.choice(ALIAS_POOL)
        if sum(1 for d in devices.values() if d.alias == alias) < limits.ALIAS_MAX_DEVICES:
            devices[rid].alias = alias

    store.add_devices(app, [(r, d.platform.value) for r, d in devices.items() if d.platform is not None])
    bulk, single = rids[:2500], rids[2500:]
    for tag in TAG_POOL:
        assert tagalias_load.tag_devices(store._r(), app, tag, [r for r in bulk if tag in devices[r].tags]) == []
    for r in single:
        store.add_tags(app, r, sorted(devices[r].tags))
    for r, d in devices.items():
        if d.alias:
            store.set_alias(app, r, d.alias)
    assert {keys.bucket(r) for r in devices} == set(range(keys.BUCKETS))
    return World(app=app, devices=devices)


def walk(fetch: Callable[[str], PushGrid.AudiencePage], cursor: str = "") -> list[str]:
    """Pages through to done; returns every id seen (duplicates kept)."""
    out: list[str] = []
    for _ in range(100000):
        page = fetch(cursor)
        out += page.registrationIds
        if page.done:
            assert page.cursor == ""
            return out
        assert page.cursor
        cursor = page.cursor
    raise AssertionError("walk did not finish")


def resolve_all(
    stores: list[TagAliasStore], app: str, aud: PushGrid.Audience, platforms: list[P] = (), limit: int = 97
) -> list[str]:
    """Resolves page by page, each page on the next store in turn (round-robin replicas)."""
    turn = iter(range(10**9))
    return walk(lambda c: stores[next(turn) % len(stores)].resolve(app, aud, list(platforms), c, limit))


AUDIENCES = [
    ("all", A(all=True), []),
    ("one tag", A(tags=["t0"]), []),
    ("rare tag", A(tags=["t7"]), []),
    ("tag OR", A(tags=["t1", "t3", "vip:gold"]), []),
    ("tag AND", A(tagsAnd=["t0", "t1"]), []),
    ("tag NOT alone", A(tagsNot=["t0"]), []),
    ("tag OR AND NOT", A(tags=["t1", "t2"], tagsAnd=["t0"], tagsNot=["t3"]), []),
    ("alias", A(aliases=ALIAS_POOL[:50]), []),
    ("registration ids", None, []),  # filled from the world below
    ("ids and aliases", None, []),
    ("ids with tags", None, []),
    ("ids with tag not", None, [P.Ios]),
    ("a page of ids", None, []),  # fewer than a page: answered by one read, no set built
    ("a page of ids on two platforms", None, [P.Ios, P.Web]),
    ("all on one platform", A(all=True), [P.Ios]),
    ("all on two platforms", A(all=True), [P.Ios, P.Web]),
    ("all on every platform", A(all=True), PLATFORMS),
    ("tag on a platform", A(tags=["t0"]), [P.Android]),
    ("tag OR on two platforms", A(tags=["t0", "t5"]), [P.Android, P.Web]),
    ("tag NOT on a platform", A(tagsNot=["t0", "t1"]), [P.Web]),
    ("unknown tag", A(tags=["nobody"]), []),
    ("tag AND with unknown", A(tags=["t0"], tagsAnd=["nobody"]), []),
]


def _named_audience(world: World, name: str) -> PushGrid.Audience:
    rids = sorted(world.devices)
    rng = random.Random(name)
    picked = rng.sample(rids, 900) + ["unknownDevice1", "unknownDevice2"]
    if name == "registration ids":
        return A(registrationIds=picked)
    if name.startswith("a page of ids"):
        return A(registrationIds=picked[:60] + picked[-2:] + picked[:3])  # unknown ones and repeats
    if name == "ids and aliases":
        return A(registrationIds=picked[:300], aliases=ALIAS_POOL[40:90])
    if name == "ids with tags":
        return A(registrationIds=picked, aliases=ALIAS_POOL[:30], tags=["t0", "t2"], tagsAnd=["t1"])
    return A(registrationIds=picked, tagsNot=["t0"])


@pytest.mark.parametrize("name, aud, platforms", AUDIENCES, ids=[a[0] for a in AUDIENCES])
def test_resolve_matches_python(
    world: World,
    store: TagAliasStore,
    replica: TagAliasStore,
    name: str,
    aud: PushGrid.Audience | None,
    platforms: list[P],
) -> None:
    aud = aud or _named_audience(world, name)
    want = world.expect(aud, platforms)
    got = resolve_all([store, replica], world.app, aud, platforms)
    if name.startswith("a page of ids"):
        assert store.resolve(world.app, aud, platforms, "", 97).done  # one page, whole
    assert len(got) == len(set(got)), "a walk hands each device out once"
    assert set(got) == want
    if name not in ("unknown tag", "tag AND with unknown"):
        assert want, "the world should make every audience non-empty"


@pytest.mark.parametrize("limit", [1, 13, 1000, limits.PAGE_MAX])
def test_paging_is_complete_at_any_page_size(world: World, store: TagAliasStore, limit: int) -> None:
    for aud in (A(tags=["t0"]), A(tags=["t0", "t1"], tagsNot=["t2"]), A(aliases=ALIAS_POOL)):
        got = resolve_all([store], world.app, aud, limit=limit)
        assert set(got) == world.expect(aud)


def test_a_retried_page_answers_the_same(world: World, store: TagAliasStore, replica: TagAliasStore) -> None:
    aud = A(tags=["t0", "t1"])
    first = store.resolve(world.app, aud, [], "", 50)
    second = store.resolve(world.app, aud, [], first.cursor, 50)
    again = replica.resolve(world.app, aud, [], first.cursor, 50)
    assert second.registrationIds == again.registrationIds and second.cursor == again.cursor


def test_temporary_sets_expire_and_are_dropped_after_the_walk(world: World, store: TagAliasStore) -> None:
    r = store._r()
    aud = A(tags=["t0", "t1"], tagsNot=["t2"])
    page = store.resolve(world.app, aud, [], "", 5)
    digest = query(world.app, aud, []).digest()
    cur = cursors.decode(page.cursor, digest[:8])
    temp = keys.temp(world.app, cur.bucket, digest[:16] + cur.run)
    assert 0 < r.pttl(temp) <= 10 * 60 * 1000
    # finish this walk: every temporary set it made is gone
    cursor = page.cursor
    while True:
        page = store.resolve(world.app, aud, [], cursor, 500)
        if page.done:
            break
        cursor = page.cursor
    for b in range(keys.BUCKETS):
        assert not r.exists(keys.temp(world.app, b, digest[:16] + cur.run))


def test_a_named_audience_rebuilds_when_its_sets_expired(world: World, store: TagAliasStore) -> None:
    aud = A(aliases=ALIAS_POOL[:60], registrationIds=sorted(world.devices)[:200])
    page = store.resolve(world.app, aud, [], "", 10)
    seen = list(page.registrationIds)
    # drop every temporary set of this app, as expiry would
    r = store._r()
    for b in range(keys.BUCKETS):
        for k in list(r.scan_iter(match=keys.temp_pattern(world.app, b))):
            r.delete(k)
    seen += walk(lambda c: store.resolve(world.app, aud, [], c, 10), cursor=page.cursor)
    assert set(seen) == world.expect(aud)


def test_a_walk_reads_on_past_its_last_device_when_its_result_is_computed_again(store: TagAliasStore, app: str) -> None:
    """As after a failover that lost the temporary result with its master: the next page computes
    the bucket again and reads on past the last device handed out, none skipped, none twice."""
    rids = [f"w{i:05d}" for i in range(3000)]
    tagalias_load.tag_devices(store._r(), app, "w", rids)
    first = store.tag_members(app, "w", "", 500)
    digest = query(app, A(tags=["w"]), []).digest()
    cur = cursors.decode(first.cursor, digest[:8])
    assert cur.after, "the page should stop inside a bucket"
    temp = keys.temp(app, cur.bucket, digest[:16] + cur.run)
    assert store._r().delete(temp) == 1
    rest = walk(lambda c: store.tag_members(app, "w", c, 500), cursor=first.cursor)
    got = list(first.registrationIds) + rest
    assert len(got) == len(set(got)) and sorted(got) == rids


def test_bad_cursors_are_invalid_argument(world: World, store: TagAliasStore) -> None:
    aud = A(tags=["t0", "t1"])
    page = store.resolve(world.app, aud, [], "", 10)
    for bad in ("garbage", "MTo5OTk6MDo6MDAwMDAwMDA", page.cursor[:-3] + "zzz", page.cursor[:-12]):
        with pytest.raises(PushGrid.InvalidArgument):
            store.resolve(world.app, aud, [], bad, 10)
    with pytest.raises(PushGrid.InvalidArgument):  # another audience's cursor
        store.resolve(world.app, A(tags=["t0", "t2"]), [], page.cursor, 10)
    with pytest.raises(PushGrid.InvalidArgument):  # another app's cursor
        store.resolve(new_app(), aud, [], page.cursor, 10)


def test_tag_members_pages_through_the_tag(world: World, store: TagAliasStore, replica: TagAliasStore) -> None:
    want = {r for r, d in world.devices.items() if "t0" in d.tags}
    for limit in (7, 1000):
        turn = iter(range(10**9))
        got = walk(
            lambda c, turn=turn, limit=limit: (store, replica)[next(turn) % 2].tag_members(world.app, "t0", c, limit)
        )
        assert set(got) == want and len(got) == len(want)
    page = store.tag_members(world.app, "t0", "", 10)
    with pytest.raises(PushGrid.InvalidArgument):
        store.tag_members(world.app, "t1", page.cursor, 10)
    with pytest.raises(PushGrid.InvalidArgument):
        store.tag_members(world.app, "t0", "%%%", 10)


def test_tag_queries_of_the_world(world: World, store: TagAliasStore) -> None:
    used = sorted({t for d in world.devices.values() for t in d.tags})
    assert store.list_tags(world.app) == used
    for tag in used:
        assert store.tag_size(world.app, tag) == sum(1 for d in world.devices.values() if tag in d.tags)
    rid, dev = next((r, d) for r, d in world.devices.items() if d.tags and d.alias)
    assert store.get_tags(world.app, rid) == sorted(dev.tags)
    assert store.get_alias(world.app, rid) == dev.alias
    assert store.is_member(world.app, sorted(dev.tags)[0], rid)
    assert not store.is_member(world.app, "nobody", rid)
    assert store.alias_devices(world.app, dev.alias) == sorted(
        r for r, d in world.devices.items() if d.alias == dev.alias
    )


# ---------------------------------------------------------------- operations (own app each)


def test_add_device_moves_between_platforms(store: TagAliasStore, app: str) -> None:
    store.add_devices(app, [("dev1", P.Ios.value)])
    store.add_devices(app, [("dev1", P.Web.value)])
    store.add_devices(app, [("dev1", P.Web.value)])  # idempotent
    assert resolve_all([store], app, A(all=True), [P.Ios]) == []
    assert resolve_all([store], app, A(all=True), [P.Web]) == ["dev1"]
    assert resolve_all([store], app, A(all=True)) == ["dev1"]


def test_tags_add_remove_clear(store: TagAliasStore, app: str) -> None:
    store.add_tags(app, "dev1", ["a", "b", "c"])
    store.add_tags(app, "dev2", ["a"])
    store.add_tags(app, "dev1", ["a"])  # idempotent
    assert store.get_tags(app, "dev1") == ["a", "b", "c"]
    assert store.list_tags(app) == ["a", "b", "c"] and store.tag_size(app, "a") == 2
    store.remove_tags(app, "dev1", ["b", "nothere"])
    assert store.get_tags(app, "dev1") == ["a", "c"] and store.list_tags(app) == ["a", "c"]
    store.clear_tags(app, "dev1")
    assert store.get_tags(app, "dev1") == [] and store.list_tags(app) == ["a"]
    assert store.tag_size(app, "a") == 1 and store.tag_size(app, "c") == 0
    assert not store.is_member(app, "a", "dev1") and store.is_member(app, "a", "dev2")


def test_remove_device_forgets_everything(store: TagAliasStore, app: str) -> None:
    store.add_devices(app, [("dev1", P.Android.value), ("dev2", P.Ios.value)])
    store.add_tags(app, "dev1", ["shared", "mine"])
    store.add_tags(app, "dev2", ["shared"])
    store.set_alias(app, "dev1", "al")
    store.set_alias(app, "dev2", "al")
    store.remove_device(app, "dev1")
    store.remove_device(app, "dev1")  # idempotent
    assert store.get_tags(app, "dev1") == [] and store.get_alias(app, "dev1") == ""
    assert store.list_tags(app) == ["shared"] and store.tag_size(app, "shared") == 1
    assert store.alias_devices(app, "al") == ["dev2"]
    assert store._r().smembers(keys.alias_devices(app, "al")) == {"dev2"}
    assert resolve_all([store], app, A(all=True)) == ["dev2"]
    assert resolve_all([store], app, A(all=True), [P.Android]) == []


def test_alias_set_move_clear_delete(store: TagAliasStore, app: str) -> None:
    store.set_alias(app, "dev1", "old")
    store.set_alias(app, "dev1", "new")
    assert store.get_alias(app, "dev1") == "new"
    assert store.alias_devices(app, "old") == [] and store.alias_devices(app, "new") == ["dev1"]
    store.set_alias(app, "dev2", "new")
    store.clear_alias(app, "dev2")
    assert store.get_alias(app, "dev2") == "" and store.alias_devices(app, "new") == ["dev1"]
    for i in range(3):
        store.set_alias(app, f"x{i}", "gone")
    store.delete_alias(app, "gone")
    assert store.alias_devices(app, "gone") == []
    assert [store.get_alias(app, f"x{i}") for i in range(3)] == ["", "", ""]
    assert store.get_alias(app, "dev1") == "new"


def test_delete_tag_untags_every_member(store: TagAliasStore, app: str) -> None:
    members = [f"m{i}" for i in range(1500)]
    assert tagalias_load.tag_devices(store._r(), app, "big", members) == []
    store.add_tags(app, "m1", ["keep"])
    store.add_tags(app, "other", ["keep"])
    assert store.tag_size(app, "big") == 1500
    store.delete_tag(app, "big")
    assert store.tag_size(app, "big") == 0 and store.list_tags(app) == ["keep"]
    assert store.get_tags(app, "m1") == ["keep"] and store.get_tags(app, "m2") == []
    assert resolve_all([store], app, A(tags=["big"])) == []
    store.delete_tag(app, "big")  # idempotent


# ---------------------------------------------------------------- limits: refused, nothing changed


def test_device_tag_limit(store: TagAliasStore, app: str) -> None:
    full = [f"tag{i}" for i in range(limits.DEVICE_MAX_TAGS)]
    for i in range(0, len(full), limits.TAGS_PER_CALL):
        store.add_tags(app, "dev1", full[i : i + limits.TAGS_PER_CALL])
    store.add_tags(app, "dev1", full[:5])  # nothing new: allowed at the limit
    with pytest.raises(PushGrid.LimitExceeded) as e:
        store.add_tags(app, "dev1", ["tag0", "one-more"])
    assert (e.value.limit, e.value.max) == ("device.tags", limits.DEVICE_MAX_TAGS)
    assert store.get_tags(app, "dev1") == sorted(full)
    assert store.tag_size(app, "one-more") == 0 and "one-more" not in store.list_tags(app)
    assert tagalias_load.tag_devices(store._r(), app, "bulk", ["dev1", "dev2"]) == ["dev1"]
    assert store.get_tags(app, "dev2") == ["bulk"] and store.tag_size(app, "bulk") == 1


def test_alias_device_limit(store: TagAliasStore, app: str) -> None:
    for i in range(limits.ALIAS_MAX_DEVICES):
        store.set_alias(app, f"dev{i}", "family")
    store.set_alias(app, "dev0", "family")  # already a member: allowed when full
    store.set_alias(app, "extra", "mine")
    with pytest.raises(PushGrid.LimitExceeded) as e:
        store.set_alias(app, "extra", "family")
    assert (e.value.limit, e.value.max) == ("alias.devices", limits.ALIAS_MAX_DEVICES)
    assert store.get_alias(app, "extra") == "mine" and store.alias_devices(app, "mine") == ["extra"]
    assert len(store.alias_devices(app, "family")) == limits.ALIAS_MAX_DEVICES


def test_full_alias_drops_stale_index_entries(store: TagAliasStore, app: str) -> None:
    for i in range(limits.ALIAS_MAX_DEVICES - 1):
        store.set_alias(app, f"dev{i}", "family")
    # a crash between the index write and the device write leaves an entry no device backs
    store._r().sadd(keys.alias_devices(app, "family"), "ghost")
    assert store.alias_devices(app, "family") == sorted(f"dev{i}" for i in range(limits.ALIAS_MAX_DEVICES - 1))
    store.set_alias(app, "late", "family")
    assert "late" in store.alias_devices(app, "family")
    assert "ghost" not in store._r().smembers(keys.alias_devices(app, "family"))


def test_resolve_ignores_stale_alias_index_entries(store: TagAliasStore, app: str) -> None:
    store.add_devices(app, [("dev1", P.Ios.value), ("ghost", P.Ios.value)])
    store.set_alias(app, "dev1", "family")
    store.set_alias(app, "ghost", "other")
    store._r().sadd(keys.alias_devices(app, "family"), "ghost")  # stale: ghost's alias is "other"
    assert resolve_all([store], app, A(aliases=["family"])) == ["dev1"]
    assert resolve_all([store], app, A(aliases=["family"]), [P.Ios]) == ["dev1"]
    assert sorted(resolve_all([store], app, A(aliases=["family", "other"]))) == ["dev1", "ghost"]


def test_bad_input_through_the_servant_changes_nothing(store: TagAliasStore, app: str) -> None:
    servant = TagAliasI(store)
    servant.addDevice(app, "dev1", P.Ios)
    servant.addTags(app, "dev1", ["a"])
    servant.setAlias(app, "dev1", "al")
    before = (servant.getTags(app, "dev1"), servant.getAlias(app, "dev1"), servant.listTags(app))
    bad_calls: list[tuple[Callable[[], object], type]] = [
        (lambda: servant.addTags(app, "dev1", ["b", "bad tag"]), PushGrid.InvalidArgument),
        (lambda: servant.addTags(app, "dev1", ["x" * 41]), PushGrid.InvalidArgument),
        (lambda: servant.addTags(app, "dev1", [f"n{i}" for i in range(101)]), PushGrid.LimitExceeded),
        (lambda: servant.removeTags(app, "dev1", ["a", "bad/tag"]), PushGrid.InvalidArgument),
        (lambda: servant.setAlias(app, "dev1", "bad alias"), PushGrid.InvalidArgument),
        (lambda: servant.setAlias(app, "dev1", ""), PushGrid.InvalidArgument),
        (lambda: servant.clearAlias(app, "dev-1"), PushGrid.InvalidArgument),
        (lambda: servant.removeDevice("NOTANAPP", "dev1"), PushGrid.InvalidArgument),
        (lambda: servant.deleteTag(app, "a b"), PushGrid.InvalidArgument),
        (lambda: servant.resolve(app, A(tags=[f"t{i}" for i in range(21)]), [], "", 10), PushGrid.LimitExceeded),
        (lambda: servant.resolve(app, A(aliases=[f"a{i}" for i in range(1001)]), [], "", 10), PushGrid.LimitExceeded),
        (lambda: servant.resolve(app, A(), [], "", 10), PushGrid.InvalidArgument),
        (lambda: servant.resolve(app, A(tags=["a"]), [], "bogus", 10), PushGrid.InvalidArgument),
    ]
    for call, exc in bad_calls:
        with pytest.raises(exc):
            call()
        assert (servant.getTags(app, "dev1"), servant.getAlias(app, "dev1"), servant.listTags(app)) == before
    assert servant.resolve(app, A(all=True), [], "", 10).registrationIds == ["dev1"]


# ---------------------------------------------------------------- an unreachable cluster


def test_unreachable_cluster_is_unavailable_quickly(app: str) -> None:
    dead = TagAliasStore(RedisSettings(nodes=(("127.0.0.1", 1),), timeout=1.0))
    servant = TagAliasI(dead)
    calls: list[Callable[[], object]] = [
        lambda: dead.add_devices(app, [("dev1", 0)]),
        lambda: dead.add_tags(app, "dev1", ["a"]),
        lambda: dead.get_tags(app, "dev1"),
        lambda: dead.set_alias(app, "dev1", "al"),
        lambda: dead.list_tags(app),
        lambda: dead.delete_tag(app, "a"),
        lambda: dead.resolve(app, A(tags=["a", "b"]), [], "", 10),
        lambda: servant.tagMembers(app, "a", "", 10),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(PushGrid.Unavailable) as e:
            call()
        assert e.value.backend == "redis"
        assert time.monotonic() - started < 3.0


def test_another_apps_devices_never_resolve_by_id_or_alias(store: TagAliasStore) -> None:
    """App A naming app B's registration ids, or aliasing B's devices, reaches none of them."""
    app_a, app_b = new_app(), new_app()
    theirs = [f"theirs{i}" for i in range(20)]
    for rid in theirs:
        store.add_devices(app_b, [(rid, P.Android.value)])
    store.add_devices(app_a, [("mine1", P.Android.value)])
    store.set_alias(app_a, theirs[0], "stolen")  # A tags/aliases an id it does not own
    for aud in (
        PushGrid.Audience(registrationIds=theirs + ["mine1"]),
        PushGrid.Audience(aliases=["stolen"]),
        PushGrid.Audience(registrationIds=theirs, tagsNot=["x"]),
    ):
        assert set(resolve_all([store], app_a, aud)) <= {"mine1"}
    assert set(resolve_all([store], app_b, PushGrid.Audience(registrationIds=theirs))) == set(theirs)
