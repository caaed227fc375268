"""The partner gateway's logic alone: login throttling, the verifier's answers, and sessions
(their objects, their filters, their end). The integration tests go through a real router."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import Ice
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from glacier2.partner import Backends, PartnerDevicesI, PartnerPushI
from glacier2.sessions import NAMES, SessionManagerI, SessionTable
from glacier2.throttle import Attempt, LoginRefused, LoginThrottle
from glacier2.verifier import WRONG, PartnerVerifierI, partner_address
from services.common.contract import Glacier2, PushGrid
from tests.unit.fakes import sample
from tests.unit.push_fakes import request

WINDOW = 600_000


class DownRedis:
    """A Redis that fails every command the throttle sends."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise RedisConnectionError("down")

        return fail


def test_logins_are_not_throttled_while_redis_is_down() -> None:
    t = LoginThrottle(lambda: DownRedis(), clock=lambda: WINDOW)  # type: ignore[arg-type,return-value]
    attempt = t.begin("app1", "10.0.0.1")  # fails open: partners keep working
    assert attempt.delay == 0 and attempt.keys is None
    t.failed(attempt)
    t.succeeded(attempt)
    t.unchecked(attempt)


class FakeThrottle:
    """Refuses what `refuse` names, delays by `delay`, and records how each attempt ended."""

    def __init__(self, refuse: set[str] | None = None, delay: float = 0.0) -> None:
        self.refuse, self.delay = refuse or set(), delay
        self.ended: list[tuple[str, str]] = []

    def begin(self, app_key: str, address: str) -> Attempt:
        if app_key in self.refuse:
            raise LoginRefused("too many failed logins for this address; retry in 5 s", 5000)
        return Attempt(app_key, self.delay, None, "")

    def failed(self, attempt: Attempt) -> None:
        self.ended.append(("failed", attempt.app_key))

    def succeeded(self, attempt: Attempt) -> None:
        self.ended.append(("succeeded", attempt.app_key))

    def unchecked(self, attempt: Attempt) -> None:
        self.ended.append(("unchecked", attempt.app_key))


# ---------------------------------------------------------------- verifier


class FakeDB:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.calls = 0
        self.down = False

    def verifyAppAsync(self, app: str, secret: str) -> Future[PushGrid.AppInfo]:
        self.calls += 1
        answer: Future[PushGrid.AppInfo] = Future()
        if self.down:
            answer.set_exception(Ice.ConnectTimeoutException())
        elif self.secrets.get(app) != secret:
            answer.set_exception(PushGrid.AuthenticationFailed(reason="app key or master secret is wrong"))
        else:
            answer.set_result(PushGrid.AppInfo(appKey=app))
        return answer


def check(v: PartnerVerifierI, app: str, secret: str, address: str = "10.0.0.1") -> tuple[bool, str]:
    return v.checkPermissions(app, secret, current(address)).result(timeout=5)


def current(address: str) -> Ice.Current:
    c = Ice.Current()
    c.ctx = {"_con.remoteAddress": address}
    return c


def test_verifier_says_the_same_for_unknown_app_and_wrong_secret_and_refuses_without_hashing() -> None:
    db, t = FakeDB({"app1": "s3cret"}), FakeThrottle(refuse={"locked"})
    v = PartnerVerifierI(db, t)  # type: ignore[arg-type]
    before = {o: sample("pushgrid_gateway_logins_total", outcome=o) for o in ("ok", "wrong", "throttled")}
    assert check(v, "app1", "s3cret") == (True, "")
    assert check(v, "app1", "wrong") == (False, WRONG)
    assert check(v, "nope", "s3cret") == (False, WRONG)
    assert t.ended == [("succeeded", "app1"), ("failed", "app1"), ("failed", "nope")]
    calls = db.calls
    ok, reason = check(v, "locked", "s3cret")
    assert not ok and "too many failed logins" in reason
    assert db.calls == calls  # refused before DBAgent spends a scrypt
    after = {o: sample("pushgrid_gateway_logins_total", outcome=o) for o in ("ok", "wrong", "throttled")}
    assert {o: after[o] - before[o] for o in after} == {"ok": 1, "wrong": 2, "throttled": 1}


def test_a_slowed_down_login_waits_without_a_thread_then_gets_in() -> None:
    v = PartnerVerifierI(FakeDB({"app1": "s3cret"}), FakeThrottle(delay=0.3))  # type: ignore[arg-type]
    started = time.monotonic()
    answers = [v.checkPermissions("app1", "s3cret", current("10.0.0.1")) for _ in range(20)]
    assert time.monotonic() - started < 0.2  # each call returned at once
    assert all(a.result(timeout=5) == (True, "") for a in answers)
    assert time.monotonic() - started >= 0.3


def test_verifier_turns_an_unreachable_dbagent_into_a_try_again() -> None:
    db, t = FakeDB({"app1": "s3cret"}), FakeThrottle()
    db.down = True
    before = sample("pushgrid_gateway_logins_total", outcome="unchecked")
    ok, reason = check(PartnerVerifierI(db, t), "app1", "s3cret")  # type: ignore[arg-type]
    assert not ok and "try again" in reason
    assert sample("pushgrid_gateway_logins_total", outcome="unchecked") == before + 1
    assert t.ended == [("unchecked", "app1")]  # not counted as a failure


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
        assert manager.objects.find(Ice.Identity(name=name, category=cat_a)) is not None
    session = manager.objects.find(sa.ice_getIdentity())
    assert session.appKey() == "app1"
    assert session.pushApi().ice_getIdentity() == Ice.Identity(name="push", category=cat_a)
    assert session.devicesApi().ice_getIdentity() == Ice.Identity(name="devices", category=cat_a)


def test_destroy_removes_the_sessions_objects_once(adapter) -> None:
    manager = SessionManagerI(adapter, backends())
    prx = manager.create("app1", FakeControl())
    session = manager.objects.find(prx.ice_getIdentity())
    session.destroy()
    session.destroy()
    assert all(
        manager.objects.find(Ice.Identity(name=n, category=prx.ice_getIdentity().category)) is None for n in NAMES
    )
    assert manager.table.count() == 0


def test_an_app_may_hold_a_limited_number_of_sessions(adapter) -> None:
    manager = SessionManagerI(adapter, backends(), SessionTable(per_app=2))
    manager.create("app1", FakeControl())
    manager.create("app1", FakeControl())
    refused = sample("pushgrid_gateway_sessions_refused_total")
    with pytest.raises(Glacier2.CannotCreateSessionException) as err:
        manager.create("app1", FakeControl())
    assert "2 open sessions" in err.value.reason
    assert sample("pushgrid_gateway_sessions_refused_total") == refused + 1
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
    assert manager.objects.find(gone.ice_getIdentity()) is None


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
    api.reportCurve(9)
    assert [args[0] for _, args in push.calls] == ["app1"] * 6


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
