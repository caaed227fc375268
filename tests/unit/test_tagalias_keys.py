"""Key layout: the sets a script or SINTERSTORE combines share a slot; an app spreads out."""

from __future__ import annotations

import zlib

from redis.crc import key_slot

from services.tagalias import keys
from tests.unit.fakes import APP


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_bucket_is_crc32_mod_buckets() -> None:
    for rid in ("a", "1a0018970a5c1b2d4d3", "zzzz"):
        assert keys.bucket(rid) == zlib.crc32(rid.encode()) % keys.BUCKETS
    assert keys.BUCKETS == 32


def test_every_key_of_a_bucket_shares_the_bucket_slot() -> None:
    rid = "abc123"
    d = keys.device(APP, rid)
    b = d.bucket
    want = slot(keys.all_devices(APP, b))
    same = [
        d.tags,
        d.alias,
        d.all,
        d.names,
        d.tag("vip:gold"),
        d.platform(2),
        keys.tag(APP, b, "x"),
        keys.tag_names(APP, b),
        keys.temp(APP, b, "ab" * 14),
        keys.temp_scratch(APP, b, "ab" * 14, "u"),
        keys.temp_scratch(APP, b, "ab" * 14, "p"),
    ]
    assert {slot(k) for k in same} == {want}


def test_buckets_of_one_app_spread_over_many_slots() -> None:
    slots = {slot(keys.all_devices(APP, b)) for b in range(keys.BUCKETS)}
    assert len(slots) == keys.BUCKETS
    # and over all three thirds of the slot space a 3-master cluster splits
    assert {s * 3 // 16384 for s in slots} == {0, 1, 2}


def test_alias_index_lives_in_the_alias_bucket_slot() -> None:
    alias = "user:42"
    b = keys.alias_bucket(alias)
    assert b == zlib.crc32(alias.encode()) % keys.BUCKETS
    k = keys.alias_devices(APP, alias)
    assert k.endswith(":al:" + alias)
    assert f"{{{APP}:a{b}}}" in k
    assert slot(k) == slot(f"{{{APP}:a{b}}}")


def test_names_with_colons_stay_last_and_apps_do_not_collide() -> None:
    assert keys.tag(APP, 3, "a:b").endswith(":t:a:b")
    other = "f" * 24
    assert keys.tag(APP, 3, "x") != keys.tag(other, 3, "x")
    assert keys.device(APP, "r1").tags != keys.device(other, "r1").tags


def test_temp_pattern_matches_temp_keys() -> None:
    import fnmatch

    assert fnmatch.fnmatchcase(keys.temp(APP, 5, "0a" * 14), keys.temp_pattern(APP, 5))
