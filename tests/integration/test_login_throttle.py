"""Failed partner logins counted in the real Redis Cluster: refusals per address and per
(address, app key), never for the app key alone, a slow-down for a key that fails from
everywhere, and counting that parallel attempts cannot outrun."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest

from glacier2.throttle import Attempt, LoginRefused, LoginThrottle
from services.common import redis_client
from services.common.contract import Glacier2

WINDOW_S = 600
_windows = itertools.count(1000)  # each test counts in windows of its own


@pytest.fixture
def throttle(redis_settings) -> LoginThrottle:
    now = next(_windows) * WINDOW_S * 1000 + 1000
    return LoginThrottle(
        lambda: redis_client.cluster(redis_settings),
        clock=lambda: now,
        per_address=8,
        per_pair=3,
        slow_after=5,
        slowdown_seconds=1.5,
        window_seconds=WINDOW_S,
    )


def fail(t: LoginThrottle, app: str, address: str) -> Attempt:
    attempt = t.begin(app, address)
    t.failed(attempt)
    return attempt


def test_an_app_key_failing_from_one_address_is_refused_there_and_nowhere_else(throttle) -> None:
    for _ in range(3):
        fail(throttle, "app1", "10.0.0.1")
    with pytest.raises(LoginRefused) as refused:
        throttle.begin("app1", "10.0.0.1")  # even with the right secret: it is not checked
    assert "this app key from this address" in refused.value.reason and "retry in 599 s" in refused.value.reason
    assert refused.value.retry_after_ms == WINDOW_S * 1000 - 1000
    throttle.succeeded(throttle.begin("app1", "10.0.0.2"))  # the partner's own address gets in
    throttle.begin("app2", "10.0.0.1")  # another app key from the same address is checked


def test_failures_from_everywhere_slow_an_app_key_down_but_never_refuse_it(throttle) -> None:
    for i in range(5):
        assert fail(throttle, "app1", f"10.0.1.{i}").delay == 0
    for i in range(5, 30):  # an attacker with many addresses
        assert fail(throttle, "app1", f"10.0.1.{i}").delay == 1.5
    real = throttle.begin("app1", "10.0.2.1")  # the partner still gets its secret checked, later
    assert real.delay == 1.5
    throttle.succeeded(real)
    assert throttle.begin("app2", "10.0.2.1").delay == 0  # other app keys are not slowed


def test_an_address_is_refused_after_its_failures_across_app_keys(throttle) -> None:
    for i in range(8):
        fail(throttle, f"guess{i}", "10.0.3.1")
    with pytest.raises(LoginRefused) as refused:
        throttle.begin("fresh", "10.0.3.1")
    assert "this address" in refused.value.reason
    throttle.begin("fresh", "10.0.3.2")


def test_parallel_wrong_logins_get_no_more_checks_than_the_limit(throttle) -> None:
    def one(_: int) -> Attempt | None:
        try:
            return throttle.begin("app1", "10.0.4.1")
        except LoginRefused:
            return None

    with ThreadPoolExecutor(30) as pool:
        let_through = [a for a in pool.map(one, range(30)) if a is not None]
    assert len(let_through) == 3


def test_the_right_secret_forgives_the_pairs_typos_and_an_unchecked_login_costs_nothing(throttle) -> None:
    for _ in range(2):
        fail(throttle, "app1", "10.0.5.1")
    throttle.succeeded(throttle.begin("app1", "10.0.5.1"))
    for _ in range(3):
        throttle.unchecked(throttle.begin("app1", "10.0.5.1"))  # DBAgent did not answer
    for _ in range(3):  # the pair starts over: three failures before it is refused
        fail(throttle, "app1", "10.0.5.1")
    with pytest.raises(LoginRefused):
        throttle.begin("app1", "10.0.5.1")


def test_keys_do_not_carry_what_the_partner_typed(throttle, redis_settings) -> None:
    fail(throttle, "{evil}\r\nFLUSHALL" * 100, "10.0.6.1{x}")
    keys = [k for k in redis_client.cluster(redis_settings).scan_iter(match="pg:login:*", count=1000)]
    assert keys and all("evil" not in k and "{x}" not in k and len(k) < 100 for k in keys)


# ---------------------------------------------------------------- sessions, across gateways


class Control:
    """A SessionControl the sweep finds alive."""

    def ice_invocationTimeout(self, ms: int) -> Control:
        return self

    def ice_ping(self) -> None:
        pass


def test_an_apps_session_limit_counts_the_sessions_of_every_gateway(redis_settings) -> None:
    from glacier2.sessions import Live, SessionTable, SharedSessions

    app = f"{next(_windows):024x}"
    now = [1_000_000]
    shared = SharedSessions(lambda: redis_client.cluster(redis_settings), clock=lambda: now[0], lapse_ms=90_000)
    one, two = SessionTable(per_app=3, shared=shared), SessionTable(per_app=3, shared=shared)  # two gateways
    one.add(Live(app, "a1", Control()))
    one.add(Live(app, "a2", Control()))
    two.add(Live(app, "b1", Control()))
    with pytest.raises(Glacier2.CannotCreateSessionException) as refused:
        two.add(Live(app, "b2", Control()))
    assert "3 open sessions" in refused.value.reason
    assert two.count(app) == 1  # the refused one is not held either
    one.pop("a1")  # a session ends: its place is free on every gateway
    two.add(Live(app, "b2", Control()))
    now[0] += 60_000
    two.refresh()  # gateway two sweeps; gateway one died and never refreshes again
    now[0] += 60_000
    two.add(Live(app, "b3", Control()))  # one's session lapsed
    with pytest.raises(Glacier2.CannotCreateSessionException):
        two.add(Live(app, "b4", Control()))
