"""The console's logins: IceGrid decides who is admin, the console keeps browser sessions over
that, ends them when idle, and throttles an address that keeps guessing."""

from __future__ import annotations

from typing import Any

import pytest

from services.console import auth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeGridSession:
    def __init__(self, user: str) -> None:
        self.admin = f"admin of {user}"
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeRegistry:
    """Checks the password as IceGrid would; remembers every session it opened."""

    def __init__(self, password: str = "right") -> None:
        self.password = password
        self.asked = 0
        self.opened: list[FakeGridSession] = []

    def __call__(self, user: str, password: str) -> Any:
        self.asked += 1
        if (user, password) != ("admin", self.password):
            raise auth.LoginRefused("wrong user or password")
        self.opened.append(FakeGridSession(user))
        return self.opened[-1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def sessions(registry: FakeRegistry, clock: Clock) -> auth.Sessions:
    return auth.Sessions(registry, idle_seconds=900, clock=clock)


def test_a_right_login_opens_a_session_the_token_finds(sessions, registry) -> None:
    token = sessions.open("admin", "right", "10.0.0.1")
    session = sessions.get(token)
    assert session is not None and session.user == "admin" and session.grid is registry.opened[0]
    assert len(token) >= 40  # 32 random bytes
    assert token not in repr(sessions._sessions)  # only its digest is kept
    assert sessions.get("another token") is None and sessions.get(None) is None


def test_a_wrong_login_is_refused_and_opens_nothing(sessions, registry) -> None:
    with pytest.raises(auth.LoginRefused):
        sessions.open("admin", "wrong", "10.0.0.1")
    with pytest.raises(auth.LoginRefused):
        sessions.open("", "", "10.0.0.1")  # not even asked
    with pytest.raises(auth.LoginRefused):
        sessions.open("admin", "x" * 1000, "10.0.0.1")
    assert registry.asked == 1 and len(sessions) == 0


def test_an_idle_session_ends_and_its_grid_session_with_it(sessions, registry, clock) -> None:
    token = sessions.open("admin", "right", "10.0.0.1")
    clock.now += 899
    assert sessions.get(token) is not None  # used: the idle time starts again
    clock.now += 899
    assert sessions.get(token) is not None
    clock.now += 901
    assert sessions.get(token) is None
    assert registry.opened[0].closed


def test_a_session_ends_after_its_maximum_age_even_in_use(sessions, registry, clock) -> None:
    token = sessions.open("admin", "right", "10.0.0.1")
    for _ in range(int(auth.MAX_AGE_SECONDS / 600)):
        clock.now += 600
        assert sessions.get(token) is not None
    clock.now += 601
    assert sessions.get(token) is None and registry.opened[0].closed


def test_the_sweep_ends_idle_sessions_only(sessions, registry, clock) -> None:
    old = sessions.open("admin", "right", "10.0.0.1")
    clock.now += 600
    new = sessions.open("admin", "right", "10.0.0.1")
    clock.now += 400
    assert sessions.sweep() == 1
    assert sessions.get(old) is None and sessions.get(new) is not None
    assert [s.closed for s in registry.opened] == [True, False]


def test_logout_ends_the_session(sessions, registry) -> None:
    token = sessions.open("admin", "right", "10.0.0.1")
    assert sessions.close(token) and not sessions.close(token)
    assert sessions.get(token) is None and registry.opened[0].closed


def test_any_admin_is_the_most_recently_used_live_session(sessions, clock) -> None:
    assert sessions.any_admin() is None
    sessions.open("admin", "right", "10.0.0.1")
    clock.now += 10
    token = sessions.open("admin", "right", "10.0.0.2")
    assert sessions.any_admin() is sessions.get(token).grid.admin
    clock.now += 1000
    assert sessions.any_admin() is None


def test_the_longest_idle_session_makes_room_for_a_new_one(registry, clock) -> None:
    sessions = auth.Sessions(registry, idle_seconds=900, clock=clock, max_sessions=2)
    first = sessions.open("admin", "right", "a")
    clock.now += 1
    second = sessions.open("admin", "right", "a")
    clock.now += 1
    sessions.get(first)
    sessions.open("admin", "right", "a")
    assert len(sessions) == 2 and sessions.get(second) is None and registry.opened[1].closed


def test_five_failures_a_minute_throttle_the_address_without_asking_the_registry(sessions, registry, clock) -> None:
    for _ in range(auth.MAX_FAILURES):
        with pytest.raises(auth.LoginRefused):
            sessions.open("admin", "wrong", "10.0.0.9")
    with pytest.raises(auth.LoginThrottled) as err:
        sessions.open("admin", "right", "10.0.0.9")  # even the right password waits
    assert registry.asked == auth.MAX_FAILURES
    assert 0 < err.value.retry_after <= auth.FAILURE_WINDOW_SECONDS and "try again in" in str(err.value)
    assert sessions.open("admin", "right", "10.0.0.8")  # another address is heard
    clock.now += auth.FAILURE_WINDOW_SECONDS
    assert sessions.open("admin", "right", "10.0.0.9")


def test_a_success_clears_the_failures_and_the_window_slides(clock) -> None:
    throttle = auth.Throttle(max_failures=2, window=60, clock=clock)
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    throttle.check("a")
    clock.now += 30
    throttle.failed("a")
    with pytest.raises(auth.LoginThrottled) as err:
        throttle.check("a")
    assert err.value.retry_after == pytest.approx(30)
    clock.now += 31
    throttle.check("a")  # the first failure left the window


def test_the_throttle_forgets_the_oldest_addresses_past_its_bound(clock) -> None:
    throttle = auth.Throttle(max_failures=1, window=60, clock=clock, max_addresses=3)
    for address in "abcd":
        throttle.failed(address)
    throttle.check("a")  # forgotten
    with pytest.raises(auth.LoginThrottled):
        throttle.check("d")


def test_the_cookie_is_http_only_same_site_strict_and_read_back() -> None:
    cookie = auth.set_cookie("tok-123")
    assert cookie.startswith(f"{auth.COOKIE}=tok-123;")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Max-Age=0" in auth.clear_cookie()
    assert auth.token_from(f"other=1; {auth.COOKIE}=tok-123") == "tok-123"
    assert auth.token_from("other=1") is None
    assert auth.token_from(None) is None and auth.token_from(f"{auth.COOKIE}=") is None
