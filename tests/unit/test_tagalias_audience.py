"""The audience query: canonical form, which queries walk a stored set directly."""

from __future__ import annotations

from services.common.contract import PushGrid
from services.tagalias.audience import Direct, query, tag_digest
from tests.unit.fakes import APP

A = PushGrid.Audience
P = PushGrid.Platform


def test_single_tag_is_direct() -> None:
    assert query(APP, A(tags=["vip"]), []).direct() == Direct("tag", name="vip")


def test_all_and_all_on_one_platform_are_direct() -> None:
    assert query(APP, A(all=True), []).direct() == Direct("all")
    assert query(APP, A(all=True), [P.Ios]).direct() == Direct("platform", platform=P.Ios.value)


def test_every_platform_is_no_filter() -> None:
    q = query(APP, A(tags=["vip"]), [P.Web, P.Android, P.Ios])
    assert q.platforms == ()
    assert q.direct() == Direct("tag", name="vip")


def test_anything_more_needs_a_built_set() -> None:
    for aud, plats in [
        (A(tags=["a", "b"]), []),
        (A(tags=["a"]), [P.Ios]),
        (A(tags=["a"], tagsAnd=["b"]), []),
        (A(tagsNot=["a"]), []),
        (A(tagsAnd=["a"]), []),
        (A(registrationIds=["r1"]), []),
        (A(aliases=["x"]), []),
        (A(all=True), [P.Ios, P.Web]),
    ]:
        assert query(APP, aud, plats).direct() is None, aud


def test_explicit_means_named_devices() -> None:
    assert query(APP, A(aliases=["x"]), []).explicit
    assert query(APP, A(registrationIds=["r"]), []).explicit
    assert not query(APP, A(tags=["t"]), []).explicit


def test_digest_ignores_order_but_not_content() -> None:
    d1 = query(APP, A(tags=["a", "b"], tagsNot=["c"]), [P.Ios, P.Web]).digest()
    d2 = query(APP, A(tags=["b", "a"], tagsNot=["c"]), [P.Web, P.Ios]).digest()
    assert d1 == d2
    assert d1 != query(APP, A(tags=["a", "b"], tagsAnd=["c"]), [P.Ios, P.Web]).digest()
    assert d1 != query("f" * 24, A(tags=["a", "b"], tagsNot=["c"]), [P.Ios, P.Web]).digest()
    assert d1 != query(APP, A(tags=["a", "b"], tagsNot=["c"]), [P.Ios]).digest()


def test_tag_digest_differs_per_app_and_tag() -> None:
    assert tag_digest(APP, "a") != tag_digest(APP, "b") != tag_digest("f" * 24, "a")
