"""The servant's validation paths with a fake store: bad input fails, named, before any store call."""

from __future__ import annotations

from typing import Any

import pytest

from services.common import limits
from services.common.contract import PushGrid
from services.tagalias.servant import TagAliasI
from tests.unit.fakes import APP

A = PushGrid.Audience
P = PushGrid.Platform


class FakeStore:
    """Records calls; answers with fixed values."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            if name in ("resolve", "tag_members"):
                return PushGrid.AudiencePage(registrationIds=["r1"], cursor="", done=True)
            return {
                "get_tags": ["t"],
                "get_alias": "al",
                "alias_devices": ["r1"],
                "list_tags": ["t"],
                "tag_size": 3,
                "is_member": True,
            }.get(name)

        return call


@pytest.fixture
def fake() -> FakeStore:
    return FakeStore()


@pytest.fixture
def servant(fake: FakeStore) -> TagAliasI:
    return TagAliasI(fake)


def test_good_calls_reach_the_store_with_clean_values(servant: TagAliasI, fake: FakeStore) -> None:
    servant.addDevice(APP, "r1", P.Web)
    servant.addTags(APP, "r1", ["a", "b", "a"])
    servant.removeTags(APP, "r1", None)
    servant.setAlias(APP, "r1", "user.1")
    assert servant.getTags(APP, "r1") == ["t"]
    assert servant.getAlias(APP, "r1") == "al"
    assert servant.tagSize(APP, "t") == 3
    assert servant.isMember(APP, "t", "r1") is True
    page = servant.tagMembers(APP, "t", None, 0)
    assert page.done
    assert fake.calls[0] == ("add_devices", (APP, [("r1", P.Web.value)]))
    assert fake.calls[1] == ("add_tags", (APP, "r1", ["a", "b"]))
    assert fake.calls[2] == ("remove_tags", (APP, "r1", []))
    assert fake.calls[-1] == ("tag_members", (APP, "t", "", limits.PAGE_DEFAULT))


def test_page_limit_is_capped(servant: TagAliasI, fake: FakeStore) -> None:
    servant.tagMembers(APP, "t", "", 10**9)
    assert fake.calls[-1][1][3] == limits.PAGE_MAX
    with pytest.raises(PushGrid.InvalidArgument) as e:
        servant.tagMembers(APP, "t", "", -1)
    assert e.value.field == "limit"


def test_resolve_passes_cleaned_audience_and_platforms(servant: TagAliasI, fake: FakeStore) -> None:
    servant.resolve(APP, A(tags=["b", "a", "b"], tagsNot=None), [P.Ios, P.Ios], None, 50)
    name, (app, aud, plats, cursor, limit) = fake.calls[-1]
    assert (name, app, cursor, limit) == ("resolve", APP, "", 50)
    assert aud.tags == ["b", "a"] and aud.tagsNot == [] and plats == [P.Ios]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.addDevice("NOTHEX", "r1", P.Ios),
        lambda s: s.addDevice(None, "r1", P.Ios),
        lambda s: s.addDevice(APP, "bad id!", P.Ios),
        lambda s: s.addDevice(APP, None, P.Ios),
        lambda s: s.addDevice(APP, "x" * (limits.REGID_MAX_BYTES + 1), P.Ios),
        lambda s: s.addDevice(APP, "r1", None),
        lambda s: s.addDevice(APP, "r1", 1),
        lambda s: s.removeDevice(APP, ""),
        lambda s: s.addTags(APP, "r1", ["ok", "not ok"]),
        lambda s: s.addTags(APP, "r1", ["x" * (limits.TAG_MAX_BYTES + 1)]),
        lambda s: s.addTags(APP, "r1", [""]),
        lambda s: s.addTags(APP, "r1", ["{brace}"]),
        lambda s: s.addTags(APP, "r1", ["trailing\n"]),
        lambda s: s.addDevice(APP, "r1\n", P.Ios),
        lambda s: s.removeTags(APP, "r1", ["a/b"]),
        lambda s: s.clearTags(APP, None),
        lambda s: s.getTags("", "r1"),
        lambda s: s.setAlias(APP, "r1", ""),
        lambda s: s.setAlias(APP, "r1", None),
        lambda s: s.setAlias(APP, "r1", "é" * 21),  # 42 bytes
        lambda s: s.getAlias(APP, "r-1"),
        lambda s: s.clearAlias(APP, "r 1"),
        lambda s: s.aliasDevices(APP, "a b"),
        lambda s: s.deleteAlias(APP, ""),
        lambda s: s.listTags("0123456789ABCDEF01234567"),
        lambda s: s.tagSize(APP, "sp ace"),
        lambda s: s.isMember(APP, "t", "r_1"),
        lambda s: s.tagMembers(APP, "", "", 10),
        lambda s: s.deleteTag(APP, None),
        lambda s: s.resolve(APP, None, [], "", 10),
        lambda s: s.resolve(APP, A(), [], "", 10),
        lambda s: s.resolve(APP, A(all=True, tags=["a"]), [], "", 10),
        lambda s: s.resolve(APP, A(tags=["bad tag"]), [], "", 10),
        lambda s: s.resolve(APP, A(aliases=["bad alias"]), [], "", 10),
        lambda s: s.resolve(APP, A(registrationIds=["bad-id"]), [], "", 10),
        lambda s: s.resolve(APP, A(all=True), [7], "", 10),
        lambda s: s.resolve(APP, A(all=True), [], 5, 10),
        lambda s: s.resolve("x", A(all=True), [], "", 10),
    ],
)
def test_bad_input_is_invalid_argument_and_touches_nothing(servant: TagAliasI, fake: FakeStore, call: Any) -> None:
    with pytest.raises(PushGrid.InvalidArgument):
        call(servant)
    assert fake.calls == []


@pytest.mark.parametrize(
    "call, limit",
    [
        (lambda s: s.addTags(APP, "r1", [f"t{i}" for i in range(limits.TAGS_PER_CALL + 1)]), "tags"),
        (lambda s: s.resolve(APP, A(tags=[f"t{i}" for i in range(21)]), [], "", 10), "audience.tags"),
        (lambda s: s.resolve(APP, A(tagsAnd=[f"t{i}" for i in range(21)]), [], "", 10), "audience.tagsAnd"),
        (lambda s: s.resolve(APP, A(tagsNot=[f"t{i}" for i in range(21)]), [], "", 10), "audience.tagsNot"),
        (lambda s: s.resolve(APP, A(aliases=[f"a{i}" for i in range(1001)]), [], "", 10), "audience.aliases"),
        (
            lambda s: s.resolve(APP, A(registrationIds=[f"r{i}" for i in range(1001)]), [], "", 10),
            "audience.registrationIds",
        ),
    ],
)
def test_over_a_limit_is_limit_exceeded_and_touches_nothing(
    servant: TagAliasI, fake: FakeStore, call: Any, limit: str
) -> None:
    with pytest.raises(PushGrid.LimitExceeded) as e:
        call(servant)
    assert e.value.limit == limit and e.value.max > 0
    assert fake.calls == []


def test_check_audience_validates_without_the_store(servant: TagAliasI, fake: FakeStore) -> None:
    servant.checkAudience(A(tags=["a"], tagsNot=["b"], aliases=["x"], registrationIds=["r1"]))
    servant.checkAudience(A(tagsNot=["b"]))
    with pytest.raises(PushGrid.InvalidArgument):
        servant.checkAudience(A())
    with pytest.raises(PushGrid.LimitExceeded):
        servant.checkAudience(A(tags=[f"t{i}" for i in range(21)]))
    assert fake.calls == []


def test_store_errors_pass_through_unchanged(fake: FakeStore) -> None:
    class Down(FakeStore):
        def __getattr__(self, name: str) -> Any:
            def call(*args: Any) -> Any:
                raise PushGrid.Unavailable(reason="redis: down", backend="redis")

            return call

    with pytest.raises(PushGrid.Unavailable) as e:
        TagAliasI(Down()).getTags(APP, "r1")
    assert e.value.backend == "redis"
