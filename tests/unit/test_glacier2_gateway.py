"""The partner gateway's logic alone: login throttling, the verifier's answers, and sessions
(their objects, their filters, their end). The integration tests go through a real router."""

from __future__ import annotations

from typing import Any

import Ice
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from glacier2.partner import Backends, PartnerDevicesI, PartnerPushI
from glacier2.sessions import NAMES, SessionManagerI, SessionTable
from glacier2.throttle import LoginRefused, LoginThrottle
from glacier2.verifier import WRONG, PartnerVerifierI, partner_address
from services.common.contract import Glacier2, PushGrid
from tests.unit.push_fakes import request

WINDOW = 600_000


class FakeRedis:
    """The five commands the throttle uses, on a dict."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}
        self.down = False

    def _up(self) -> None:
        if self.down:
            raise RedisConnectionError("down")

    def mget_nonatomic(self, keys: list[str]) -> list[str | None]:
        self._up()
        return [str(self.data[k]) if k in self.data else None for k in keys]

    def delete(self, key: str) -> None:
        self._up()
        self.data.pop(key, None)

    def pipeline(self, transaction: bool = False) -> FakeRedis._Pipe:
        return FakeRedis._Pipe(self)

    class _Pipe:
        def __init__(self, r: FakeRedis) -> None:
            self.r, self.ops = r, []

        def __enter__(self) -> FakeRedis._Pipe:
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def incr(self, key: str) -> None:
            self.ops.append(key)

        def pexpire(self, key: str, ms: int) -> None:
            pass

        def execute(self) -> None:
            self.r._up()
            for key in self.ops:
                self.r.data[key] = self.r.data.get(key, 0) + 1


def throttle(redis: FakeRedis, clock: list[int], per_app: int = 3, per_address: int = 5) -> LoginThrottle:
    return LoginThrottle(
        lambda: redis, clock=lambda: clock[0], per_app=per_app, per_address=per_address, window_seconds=WINDOW // 1000
    )


# ---------------------------------------------------------------- throttle


def test_an_app_key_is_refused_after_its_failures_until_the_window_ends() -> None:
    redis, clock = FakeRedis(), [10 * WINDOW + 1000]
    t = throttle(redis, clock)
    for _ in range(3):
        t.check("app1", "10.0.0.1")
        t.failed("app1", "10.0.0.1")
    with pytest.raises(LoginRefused) as refused:
        t.check("app1", "10.0.0.2")  # another address: the app key itself is over
    assert refused.value.retry_after_ms == WINDOW - 1000
    assert "this app key" in refused.value.reason and "retry in 599 s" in refused.value.reason
    t.check("app2", "10.0.0.2")  # another app is not affected
    clock[0] = 11 * WINDOW  # the next window starts clean
    t.check("app1", "10.0.0.1")


def test_an_address_is_refused_after_failures_across_app_keys() -> None:
    redis, clock = FakeRedis(), [WINDOW]
    t = throttle(redis, clock)
    for i in range(5):
        t.failed(f"guess{i}", "10.0.0.9")
    with pytest.raises(LoginRefused) as refused:
        t.check("fresh-app", "10.0.0.9")
    assert "this address" in refused.value.reason
    t.check("fresh-app", "10.0.0.10")


def test_success_clears_the_app_count_but_not_the_address_count() -> None:
    redis, clock = FakeRedis(), [WINDOW]
    t = throttle(redis, clock, per_app=3, per_address=4)
    for _ in range(2):
        t.failed("app1", "10.0.0.1")
    t.succeeded("app1")
    for _ in range(2):
        t.failed("app1", "10.0.0.2")
    t.check("app1", "10.0.0.3")  # 2 since the success, under 3
    for _ in range(2):
        t.failed("other", "10.0.0.1")
    with pytest.raises(LoginRefused):
        t.check("app3", "10.0.0.1")  # the address kept its 2 + 2


def test_keys_do_not_carry_what_the_partner_typed() -> None:
    redis, clock = FakeRedis(), [WINDOW]
    throttle(redis, clock).failed("{evil}\r\nFLUSHALL" * 100, "10.0.0.1")
    assert all("evil" not in k and len(k) < 80 for k in redis.data)


def test_logins_are_not_throttled_while_redis_is_down() -> None:
    redis, clock = FakeRedis(), [WINDOW]
    t = throttle(redis, clock, per_app=1)
    t.failed("app1", "")
    redis.down = True
    t.check("app1", "")  # fails open: partners keep working
    t.failed("app1", "")
    t.succeeded("app1")


# ---------------------------------------------------------------- verifier


class FakeDB:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.calls = 0
        self.down = False

    def verifyApp(self, app: str, secret: str) -> PushGrid.AppInfo:
        self.calls += 1
        if self.down:
            raise Ice.ConnectTimeoutException()
        if self.secrets.get(app) != secret:
            raise PushGrid.AuthenticationFailed(reason="app key or master secret is wrong")
        return PushGrid.AppInfo(appKey=app)


def current(address: str) -> Ice.Current:
    c = Ice.Current()
    c.ctx = {"_con.remoteAddress": address}
    return c


def test_verifier_says_the_same_for_unknown_app_and_wrong_secret_and_then_refuses_without_hashing() -> None:
    db, redis, clock = FakeDB({"app1": "s3cret"}), FakeRedis(), [WINDOW]
    v = PartnerVerifierI(db, throttle(redis, clock, per_app=2))
    assert v.checkPermissions("app1", "s3cret", current("10.0.0.1")) == (True, "")
    assert v.checkPermissions("app1", "wrong", current("10.0.0.1")) == (False, WRONG)
    assert v.checkPermissions("nope", "s3cret", current("10.0.0.1")) == (False, WRONG)
    assert v.checkPermissions("app1", "wrong", current("10.0.0.1")) == (False, WRONG)
    calls = db.calls
    ok, reason = v.checkPermissions("app1", "s3cret", current("10.0.0.1"))
    assert not ok and "too many failed logins" in reason
    assert db.calls == calls  # refused before DBAgent spends a scrypt


def test_verifier_turns_an_unreachable_dbagent_into_a_try_again() -> None:
    db = FakeDB({"app1": "s3cret"})
    db.down = True
    ok, reason = PartnerVerifierI(db, throttle(FakeRedis(), [WINDOW])).checkPermissions(
        "app1", "s3cret", current("1.2.3.4")
    )
    assert not ok and "try again" in reason


def test_partner_address_reads_the_routers_context() -> None:
    assert partner_address(current("::ffff:10.1.2.3")) == "10.1.2.3"
    assert partner_address(current("fe80::1")) == "fe80::1"
    assert partner_address(Ice.Current()) == ""


# ---------------------------------------------------------------- sessions


class FakeSet:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, items: list[str]) -> None:
        self.items += items


class FakeControl:
    def __init__(self) -> None:
        self.cats = FakeSet()
        self.gone = False

    def categories(self) -> FakeSet:
        return self.cats

    def ice_invocationTimeout(self, ms: int) -> FakeControl:
        return self

    def ice_ping(self) -> None:
        if self.gone:
            raise Ice.ObjectNotExistException()


@pytest.fixture
def adapter():
    with Ice.initialize() as comm:
        adapter = comm.createObjectAdapterWithEndpoints("Gateway", "tcp -h 127.0.0.1")
        yield adapter


def backends() -> Backends:
    return Backends(push=None, tagalias=None, dbagent=None)


def test_a_session_gets_its_own_category_and_the_router_filters_on_it(adapter) -> None:
    manager = SessionManagerI(adapter, backends())
    a, b = FakeControl(), FakeControl()
    sa, sb = manager.create("app1", a), manager.create("app2", b)
    cat_a, cat_b = sa.ice_getIdentity().category, sb.ice_getIdentity().category
    assert cat_a != cat_b and len(cat_a) == 32
    assert a.cats.items == [cat_a] and b.cats.items == [cat_b]  # each partner reaches only its own
    for name in NAMES:
        assert adapter.find(Ice.Identity(name=name, category=cat_a)) is not None
    session = adapter.find(sa.ice_getIdentity())
    assert session.appKey() == "app1"
    assert session.pushApi().ice_getIdentity() == Ice.Identity(name="push", category=cat_a)
    assert session.devicesApi().ice_getIdentity() == Ice.Identity(name="devices", category=cat_a)


def test_destroy_removes_the_sessions_objects_once(adapter) -> None:
    manager = SessionManagerI(adapter, backends())
    prx = manager.create("app1", FakeControl())
    session = adapter.find(prx.ice_getIdentity())
    session.destroy()
    session.destroy()
    assert all(adapter.find(Ice.Identity(name=n, category=prx.ice_getIdentity().category)) is None for n in NAMES)
    assert manager.table.count() == 0


def test_an_app_may_hold_a_limited_number_of_sessions(adapter) -> None:
    manager = SessionManagerI(adapter, backends(), SessionTable(per_app=2))
    manager.create("app1", FakeControl())
    manager.create("app1", FakeControl())
    with pytest.raises(Glacier2.CannotCreateSessionException) as err:
        manager.create("app1", FakeControl())
    assert "2 open sessions" in err.value.reason
    manager.create("app2", FakeControl())


def test_a_router_without_session_control_gets_no_session(adapter) -> None:
    with pytest.raises(Glacier2.CannotCreateSessionException):
        SessionManagerI(adapter, backends()).create("app1", None)


def test_sweep_ends_sessions_their_router_forgot(adapter) -> None:
    manager = SessionManagerI(adapter, backends())
    kept, lost = FakeControl(), FakeControl()
    manager.create("app1", kept)
    gone = manager.create("app1", lost)
    lost.gone = True
    assert manager.sweep() == 1
    assert manager.table.count() == 1
    assert adapter.find(gone.ice_getIdentity()) is None


# ---------------------------------------------------------------- the partner API acts for the session's app


class Recorder:
    """Records every call as (operation, args); answers from `answers` or None."""

    def __init__(self, **answers: Any) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.answers = answers

    def __getattr__(self, op: str):
        def call(*args: Any) -> Any:
            self.calls.append((op, args))
            answer = self.answers.get(op)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call


def test_partner_push_always_passes_the_sessions_app() -> None:
    push = Recorder(push=PushGrid.PushResult(msgId=7, sendno=1))
    api = PartnerPushI("app1", Backends(push=push, tagalias=None, dbagent=None))
    req = request()
    assert api.push(req).msgId == 7
    api.validate(req)
    api.schedule(req, 123)
    api.cancel(9)
    api.report([9, 10])
    assert [args[0] for _, args in push.calls] == ["app1"] * 5


def test_partner_push_turns_an_unreachable_push_service_into_unavailable() -> None:
    push = Recorder(push=Ice.ConnectionRefusedException())
    with pytest.raises(PushGrid.Unavailable) as err:
        PartnerPushI("app1", Backends(push=push, tagalias=None, dbagent=None)).push(request())
    assert err.value.backend == "push"


def test_device_operations_check_the_device_is_the_apps_before_touching_tags() -> None:
    db = Recorder(getDevice=PushGrid.UnknownDevice(reason="no such device", registrationId="r2"))
    ta = Recorder()
    api = PartnerDevicesI("app1", Backends(push=None, tagalias=ta, dbagent=db))
    for call in (
        lambda: api.addTags("r2", ["vip"]),
        lambda: api.removeTags("r2", ["vip"]),
        lambda: api.getTags("r2"),
        lambda: api.setAlias("r2", "bob"),
        lambda: api.getAlias("r2"),
    ):
        with pytest.raises(PushGrid.UnknownDevice):
            call()
    assert ta.calls == []  # TagAlias never saw another app's device
    assert db.calls == [("getDevice", ("app1", "r2"))] * 5
    with pytest.raises(PushGrid.InvalidArgument):
        api.addTags("not a rid!", ["vip"])  # malformed ids stop before any backend


def test_device_operations_on_own_devices_reach_tagalias_with_the_sessions_app() -> None:
    db, ta = Recorder(deviceCount=3), Recorder(getTags=["vip"], listTags=["vip"], isMember=True)
    api = PartnerDevicesI("app1", Backends(push=None, tagalias=ta, dbagent=db))
    api.addTags("r1", ["vip"])
    assert api.getTags("r1") == ["vip"]
    api.setAlias("r1", "bob")
    api.deleteAlias("bob")
    assert api.listTags() == ["vip"] and api.isMember("vip", "r1") is True
    api.deleteTag("vip")
    assert api.deviceCount() == 3
    assert {args[0] for _, args in ta.calls + db.calls} == {"app1"}
