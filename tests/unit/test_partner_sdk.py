"""The partner SDK's logic without a router: the retry rule, keeping the session alive, reopening,
the client's config and request building. A fake router stands in for Glacier2 (logic only;
tests/integration/test_partner_sdk.py runs the same against the real router)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import Ice
import pytest

from services.common.contract import Glacier2, PushGrid
from tools.partner import builders as b
from tools.partner import sdk
from tools.partner.session import MAX_REPEATS, SESSION_NOT_EXIST_ID, Outcome, Session, SessionClosed, classify

# ---------------------------------------------------------------- a fake Glacier2 router


class FakeConnection:
    def __init__(self) -> None:
        self.acm: tuple | None = None
        self.close_callback: Callable | None = None

    def setACM(self, timeout, close, heartbeat) -> None:  # Ice's name
        self.acm = (timeout, close, heartbeat)

    def setCloseCallback(self, cb) -> None:  # Ice's name
        self.close_callback = cb

    def close_now(self) -> None:
        """What Ice does when the router goes away: the close callback runs."""
        self.close_callback(self)


class FakeApi:
    """A session's push or devices object: answers from a script of results/exceptions."""

    def __init__(self, router: FakeRouter, number: int) -> None:
        self.router, self.number = router, number

    def __getattr__(self, op: str):
        def call(*args):
            self.router.calls.append((self.number, op, args))
            step = self.router.script.pop(0) if self.router.script else None
            if isinstance(step, BaseException):
                raise step
            return step

        return call


class FakeSession:
    def __init__(self, router: FakeRouter, number: int) -> None:
        self.number = number
        self.api = FakeApi(router, number)

    def pushApi(self):  # Ice's name
        return self.api

    def devicesApi(self):  # Ice's name
        return self.api


class FakeRouter:
    """Glacier2.Router as the session keeper uses it; login_errors fail the next logins in order."""

    def __init__(self, acm: int = 30) -> None:
        self.acm = acm
        self.logins = 0
        self.destroyed = 0
        self.login_errors: list[BaseException] = []
        self.script: list = []  # what the next API calls answer, in order
        self.calls: list[tuple] = []  # (session number, operation, args)
        self.connection = FakeConnection()

    def createSession(self, user, password):  # Ice's name
        if self.login_errors:
            raise self.login_errors.pop(0)
        self.logins += 1
        self.connection = FakeConnection()  # a new login after a loss is a new connection
        return FakeSession(self, self.logins)

    def getACMTimeout(self):  # Ice's name
        if self.acm is None:
            raise Ice.OperationNotExistException()
        return self.acm

    def getSessionTimeout(self):  # Ice's name
        return 45

    def ice_getCachedConnection(self):
        return self.connection

    def destroySession(self):  # Ice's name
        self.destroyed += 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def session(router, clock) -> Session:
    s = Session(
        router, "a" * 24, "secret", reconnect_timeout=5.0, sleep=clock.sleep, clock=clock, as_session=lambda raw: raw
    )
    s.open()
    return s


def push(s: Session):
    return s.call(lambda a: a.push.push("req"), idempotent=False)


def report(s: Session):
    return s.call(lambda a: a.push.report([1]), idempotent=True)


def session_not_exist() -> Ice.UserException:
    """The Slice SessionNotExistException as it arrives from the router (see session.py)."""

    class Wire(Ice.UserException):
        def ice_id(self) -> str:
            return SESSION_NOT_EXIST_ID

    return Wire()


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "exc, outcome",
    [
        (Ice.ConnectionRefusedException(), Outcome.NOT_EXECUTED),
        (Ice.ConnectFailedException(), Outcome.NOT_EXECUTED),
        (Ice.ConnectTimeoutException(), Outcome.NOT_EXECUTED),
        (Ice.DNSException(), Outcome.NOT_EXECUTED),
        (Ice.ObjectNotExistException(), Outcome.NOT_EXECUTED),
        (Ice.CloseConnectionException(), Outcome.NOT_EXECUTED),
        (session_not_exist(), Outcome.NOT_EXECUTED),
        (Ice.ConnectionLostException(), Outcome.MAYBE_EXECUTED),
        (Ice.SocketException(), Outcome.MAYBE_EXECUTED),
        (Ice.ConnectionTimeoutException(), Outcome.MAYBE_EXECUTED),
        (Ice.UnknownLocalException("ConnectionLostException"), Outcome.MAYBE_EXECUTED),
        (Ice.InvocationTimeoutException(), Outcome.RAISE),
        (Ice.CommunicatorDestroyedException(), Outcome.RAISE),
        (Ice.UnknownException("a bug in the gateway"), Outcome.RAISE),
        (PushGrid.RateLimited(reason="quota", retryAfterMs=900), Outcome.RAISE),
        (PushGrid.InvalidArgument(reason="bad", field="audience"), Outcome.RAISE),
        (Glacier2.PermissionDeniedException(reason="no"), Outcome.RAISE),
        (ValueError("x"), Outcome.RAISE),
    ],
)
def test_classify_follows_the_retry_rule(exc, outcome) -> None:
    assert classify(exc) is outcome


def test_a_push_that_may_have_arrived_is_not_repeated(session, router) -> None:
    router.script = [Ice.ConnectionLostException()]
    with pytest.raises(Ice.ConnectionLostException):
        push(session)
    assert [c[:2] for c in router.calls] == [(1, "push")]
    router.script = [PushGrid.PushResult(msgId=5, sendno=0)]
    assert push(session).msgId == 5  # the next call logs in again, by itself
    assert router.calls[-1][:2] == (2, "push") and session.reopened == 1


@pytest.mark.parametrize("op", ["cancel", "schedule"])
def test_cancel_and_schedule_are_not_repeated_either(session, router, op) -> None:
    router.script = [Ice.UnknownLocalException("gateway gone")]
    with pytest.raises(Ice.UnknownLocalException):
        session.call(lambda a: getattr(a.push, op)(1), idempotent=False)
    assert len(router.calls) == 1
    assert router.destroyed == 1  # the router answered: its session may live, so it is ended


def test_an_idempotent_call_is_repeated_on_a_new_session(session, router) -> None:
    router.script = [Ice.ConnectionLostException(), ["stats"]]
    assert report(session) == ["stats"]
    assert [c[:2] for c in router.calls] == [(1, "report"), (2, "report")]
    assert router.destroyed == 0  # the connection was gone, nothing to end


@pytest.mark.parametrize(
    "exc",
    [
        Ice.ObjectNotExistException(),
        Ice.ConnectionRefusedException(),
        Ice.CloseConnectionException(),
        session_not_exist(),
    ],
)
def test_a_push_that_surely_never_arrived_is_repeated(session, router, exc) -> None:
    router.script = [exc, PushGrid.PushResult(msgId=9, sendno=1)]
    assert push(session).msgId == 9
    assert [c[:2] for c in router.calls] == [(1, "push"), (2, "push")]


def test_a_session_gone_before_the_call_is_reopened_first(session, router) -> None:
    router.connection.close_now()  # the router restarted while the client was idle
    router.script = [PushGrid.PushResult(msgId=3, sendno=0)]
    assert push(session).msgId == 3
    assert [c[:2] for c in router.calls] == [(2, "push")]  # the dead session was never used
    assert router.destroyed == 0


def test_named_errors_reach_the_caller_and_keep_the_session(session, router) -> None:
    router.script = [PushGrid.RateLimited(reason="600 per minute", retryAfterMs=1500), Ice.InvocationTimeoutException()]
    with pytest.raises(PushGrid.RateLimited) as e:
        push(session)
    assert e.value.retryAfterMs == 1500
    with pytest.raises(Ice.InvocationTimeoutException):
        report(session)
    assert router.logins == 1 and len(router.calls) == 2


def test_repeats_are_bounded(session, router) -> None:
    router.script = [Ice.ObjectNotExistException()] * (MAX_REPEATS + 5)
    with pytest.raises(Ice.ObjectNotExistException):
        push(session)
    assert len(router.calls) == MAX_REPEATS + 1


# ---------------------------------------------------------------- reopening and keeping alive


def test_reopening_waits_for_the_router_to_come_back(session, router, clock) -> None:
    router.connection.close_now()
    router.login_errors = [Ice.ConnectionRefusedException()] * 3
    router.script = [["ok"]]
    assert report(session) == ["ok"]
    assert clock.sleeps == [0.1, 0.2, 0.5] and router.logins == 2


def test_reopening_gives_up_after_reconnect_timeout(session, router, clock) -> None:
    router.connection.close_now()
    router.login_errors = [Ice.ConnectionRefusedException()] * 100
    with pytest.raises(Ice.ConnectionRefusedException):
        report(session)
    assert clock.now == pytest.approx(5.0) and router.calls == []


def test_a_refused_login_is_not_retried(session, router, clock) -> None:
    router.connection.close_now()
    router.login_errors = [Glacier2.PermissionDeniedException(reason="secret rotated")]
    with pytest.raises(Glacier2.PermissionDeniedException):
        report(session)
    assert clock.sleeps == []


def test_the_first_login_does_not_wait(router, clock) -> None:
    router.login_errors = [Ice.ConnectionRefusedException()]
    s = Session(router, "k", "s", sleep=clock.sleep, clock=clock, as_session=lambda raw: raw)
    with pytest.raises(Ice.ConnectionRefusedException):
        s.open()
    assert clock.sleeps == []


def test_the_connection_heartbeats_at_the_routers_acm_timeout(session, router) -> None:
    assert router.connection.acm == (30, Ice.Unset, Ice.ACMHeartbeat.HeartbeatAlways)


def test_without_acm_the_session_timeout_is_used(clock) -> None:
    router = FakeRouter(acm=None)
    Session(router, "k", "s", as_session=lambda raw: raw).open()
    assert router.connection.acm[0] == 45


def test_a_late_close_callback_of_an_old_connection_leaves_the_new_session(session, router) -> None:
    old = router.connection
    router.script = [Ice.ObjectNotExistException(), ["a"], ["b"]]
    assert report(session) == ["a"]
    old.close_now()  # the first connection's close arrives after the reopen
    assert report(session) == ["b"] and router.logins == 2


def test_close_destroys_the_session_once_and_ends_calls(session, router) -> None:
    session.close()
    session.close()
    assert router.destroyed == 1
    with pytest.raises(SessionClosed):
        report(session)


def test_close_after_the_connection_closed_does_not_call_the_router(session, router) -> None:
    router.connection.close_now()
    session.close()
    assert router.destroyed == 0


# ---------------------------------------------------------------- the client


class RecordingSession:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, bool]] = []

    def call(self, fn, idempotent):
        rec = self

        class Api:
            def __getattr__(self, op):
                return lambda *args: rec.calls.append((op, args, idempotent)) or []

        api = Api()
        return fn(type("A", (), {"push": api, "devices": api})())


@pytest.fixture
def client() -> tuple[sdk.PartnerClient, RecordingSession]:
    c = object.__new__(sdk.PartnerClient)
    c._session = RecordingSession()
    return c, c._session


def test_only_idempotent_operations_are_marked_repeatable(client) -> None:
    c, rec = client
    req = b.push_request(b.audience(tags=["t"]), notification="hi")
    c.push(req)
    c.schedule(req, 1_900_000_000_000)
    c.cancel(5)
    c.validate(req)
    c.report([5])
    c.add_tags("r1", ["a"])
    c.remove_tags("r1", ["a"])
    c.get_tags("r1")
    c.set_alias("r1", "al")
    c.get_alias("r1")
    c.alias_devices("al")
    c.delete_alias("al")
    c.list_tags()
    c.is_member("a", "r1")
    c.delete_tag("a")
    c.device_count()
    marks = {op: idem for op, _, idem in rec.calls}
    assert {op for op, idem in marks.items() if not idem} == {"push", "schedule", "cancel"}
    assert len(marks) == 16


def test_schedule_takes_ms_or_a_datetime(client) -> None:
    c, rec = client
    req = b.push_request(b.audience(tags=["t"]), notification="hi")
    at = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    c.schedule(req, at)
    assert rec.calls[-1][1][1] == int(at.timestamp() * 1000)


def test_push_takes_the_jpush_like_dict(client) -> None:
    c, rec = client
    c.push(
        {
            "platform": ["ios"],
            "audience": {"tag": ["vip"]},
            "notification": {"alert": "hi"},
            "options": {"time_to_live": 60},
        }
    )
    req = rec.calls[-1][1][0]
    assert req.audience.tags == ["vip"] and req.platforms == [PushGrid.Platform.Ios]
    assert req.notification.alert == "hi" and req.options.timeToLive == 60
    with pytest.raises(ValueError):
        c.push({"audience": {"tag": "vip"}})  # a list is required
    with pytest.raises(TypeError):
        c.push("hello")


# ---------------------------------------------------------------- config


def test_router_properties_from_a_proxy_and_ca(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    props = sdk.router_properties(router="PushGridRouter/router:ssl -h h -p 1", ca=str(ca))
    assert props.getProperty("Ice.Default.Router") == "PushGridRouter/router:ssl -h h -p 1"
    assert props.getProperty("IceSSL.CAs") == str(ca)
    assert props.getProperty("Ice.Plugin.IceSSL") == "IceSSL:createIceSSL"
    assert props.getProperty("Ice.Default.PreferSecure") == "1"
    assert props.getProperty("Ice.RetryIntervals") == "-1"
    assert props.getProperty("Ice.Default.InvocationTimeout") == "60000"


def test_router_properties_from_a_config_keep_its_settings(tmp_path) -> None:
    cfg = tmp_path / "partner.cfg"
    cfg.write_text(
        "Ice.Default.Router=PushGridRouter/router:tcp -h 127.0.0.1 -p 4063\n"
        "Ice.Default.InvocationTimeout=5000\nIce.RetryIntervals=0 100\n"
    )
    props = sdk.router_properties(config=str(cfg))
    assert props.getProperty("Ice.Default.Router").endswith("-p 4063")
    assert props.getProperty("Ice.Default.InvocationTimeout") == "5000"
    assert props.getProperty("Ice.RetryIntervals") == "-1"  # the session layer does the retrying


def test_a_config_with_ssl_prefers_the_ssl_endpoint(tmp_path) -> None:
    cfg = tmp_path / "partner.cfg"
    cfg.write_text("Ice.Default.Router=R/router:ssl -h h -p 2:tcp -h h -p 1\nIce.Plugin.IceSSL=IceSSL:createIceSSL\n")
    assert sdk.router_properties(config=str(cfg)).getProperty("Ice.Default.PreferSecure") == "1"
    cfg.write_text(cfg.read_text() + "Ice.Default.PreferSecure=0\n")  # the operator's choice stands
    assert sdk.router_properties(config=str(cfg)).getProperty("Ice.Default.PreferSecure") == "0"


def test_router_properties_refuse_what_cannot_work(tmp_path) -> None:
    with pytest.raises(sdk.PartnerConfigError, match="no router"):
        sdk.router_properties()
    with pytest.raises(sdk.PartnerConfigError, match="does not exist"):
        sdk.router_properties(config=str(tmp_path / "missing.cfg"))
    with pytest.raises(sdk.PartnerConfigError, match="does not exist"):
        sdk.router_properties(router="R/router:tcp -p 1", ca=str(tmp_path / "missing.pem"))
    empty = tmp_path / "empty.cfg"
    empty.write_text("Ice.Default.Timeout=1000\n")
    with pytest.raises(sdk.PartnerConfigError, match="names no router"):
        sdk.router_properties(config=str(empty))


# ---------------------------------------------------------------- builders


def test_builders_make_a_whole_request() -> None:
    req = b.push_request(
        b.audience(tags="vip", tag_and=["beta"], tag_not=["muted"], aliases=["u1"], registration_ids=["r1", "r2"]),
        notification=b.notification("hi", "Shop", {"k": "v"}),
        message=b.message("{}", content_type="json"),
        platforms=["Android", PushGrid.Platform.Web],
        options=b.options(sendno=7, ttl=0, override_msg_id=11, big_push_duration=3),
    )
    a = req.audience
    assert (a.all, a.tags, a.tagsAnd, a.tagsNot, a.aliases, a.registrationIds) == (
        False,
        ["vip"],
        ["beta"],
        ["muted"],
        ["u1"],
        ["r1", "r2"],
    )
    assert req.platforms == [PushGrid.Platform.Android, PushGrid.Platform.Web]
    assert (req.notification.alert, req.notification.title, req.notification.extras) == ("hi", "Shop", {"k": "v"})
    assert (req.message.content, req.message.contentType) == ("{}", "json")
    o = req.options
    assert (o.sendno, o.timeToLive, o.overrideMsgId, o.bigPushDuration) == (7, 0, 11, 3)


def test_builder_defaults_are_jpushs() -> None:
    req = b.push_request(b.broadcast(), message="sync")
    assert req.audience.all and req.audience.tags == [] and req.platforms == []
    assert req.notification.alert == "" and req.message.content == "sync"
    assert req.options.timeToLive == -1 and req.options.sendno == 0


def test_builders_refuse_what_python_types_can_tell() -> None:
    with pytest.raises(ValueError, match="unknown platform"):
        b.platforms(["symbian"])
    with pytest.raises(ValueError):
        b.audience(tags=[1])
    with pytest.raises(ValueError):
        b.notification("hi", extras={"n": 1})
