"""The audience query: canonical form and the digest that names its walks."""

from __future__ import annotations

from services.common.contract import PushGrid
from services.tagalias.audience import query
from tests.unit.fakes import APP

A = PushGrid.Audience
P = PushGrid.Platform


def test_every_platform_is_no_filter() -> None:
    q = query(APP, A(tags=["vip"]), [P.Web, P.Android, P.Ios])
    assert q.platforms == ()
    assert q.digest() == query(APP, A(tags=["vip"]), []).digest()


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
