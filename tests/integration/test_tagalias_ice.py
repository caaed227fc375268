"""TagAlias through the deployed grid: the servant over the wire, replicas taking turns per page."""

from __future__ import annotations

import secrets

import pytest

from services.common import limits
from services.common.contract import PushGrid

pytestmark = pytest.mark.integration

A = PushGrid.Audience
P = PushGrid.Platform


@pytest.fixture(scope="module")
def rotating(tagalias: PushGrid.TagAliasPrx) -> PushGrid.TagAliasPrx:
    """A proxy that asks the locator on every call, so round-robin spreads the pages over replicas."""
    return tagalias.ice_connectionCached(False).ice_locatorCacheTimeout(0)


def test_calls_over_the_wire(rotating: PushGrid.TagAliasPrx) -> None:
    app = secrets.token_hex(12)
    rotating.addDevice(app, "dev1", P.Ios)
    rotating.addTags(app, "dev1", ["a", "b"])
    rotating.addTags(app, "dev1", [])
    rotating.setAlias(app, "dev1", "al")
    assert rotating.getTags(app, "dev1") == ["a", "b"]
    assert rotating.getAlias(app, "dev1") == "al" and rotating.getAlias(app, "dev2") == ""
    assert rotating.aliasDevices(app, "al") == ["dev1"]
    assert rotating.listTags(app) == ["a", "b"] and rotating.tagSize(app, "a") == 1
    assert rotating.isMember(app, "a", "dev1")
    rotating.checkAudience(A(tagsNot=["a"]))
    rotating.removeDevice(app, "dev1")
    assert rotating.listTags(app) == [] and rotating.aliasDevices(app, "al") == []


def test_pages_of_one_walk_on_different_replicas(rotating: PushGrid.TagAliasPrx) -> None:
    app = secrets.token_hex(12)
    devices = [f"d{i}" for i in range(600)]
    for i, rid in enumerate(devices):
        rotating.addDevice(app, rid, P.Android)  # explicit registration ids count only if added
        rotating.addTags(app, rid, ["even" if i % 2 == 0 else "odd", "all"])
    for aud, want in [
        (A(tags=["even"]), set(devices[::2])),
        (A(tags=["even", "odd"], tagsNot=["nobody"]), set(devices)),
        (A(registrationIds=devices[:50], tagsAnd=["odd"]), set(devices[1:50:2])),
    ]:
        seen: list[str] = []
        cursor = ""
        while True:
            page = rotating.resolve(app, aud, [], cursor, 37)
            seen += page.registrationIds
            if page.done:
                break
            cursor = page.cursor
        assert set(seen) == want
    seen = []
    cursor = ""
    while True:
        page = rotating.tagMembers(app, "all", cursor, 50)
        seen += page.registrationIds
        if page.done:
            break
        cursor = page.cursor
    assert sorted(seen) == sorted(devices)


def test_errors_over_the_wire(rotating: PushGrid.TagAliasPrx) -> None:
    app = secrets.token_hex(12)
    with pytest.raises(PushGrid.InvalidArgument) as e:
        rotating.addTags(app, "dev1", ["bad tag"])
    assert e.value.field == "tags"
    with pytest.raises(PushGrid.InvalidArgument):
        rotating.resolve(app, A(tags=["a"]), [], "not-a-cursor", 10)
    with pytest.raises(PushGrid.LimitExceeded) as le:
        rotating.resolve(app, A(registrationIds=[f"r{i}" for i in range(1001)]), [], "", 10)
    assert le.value.max == limits.AUDIENCE_MAX_REGIDS
    for i in range(limits.ALIAS_MAX_DEVICES):
        rotating.setAlias(app, f"dev{i}", "full")
    with pytest.raises(PushGrid.LimitExceeded) as le:
        rotating.setAlias(app, "onemore", "full")
    assert le.value.limit == "alias.devices"
    assert rotating.getAlias(app, "onemore") == ""
