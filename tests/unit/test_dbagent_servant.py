"""The DBAgent servant's argument checks, with a fake store that records what reaches it."""

from __future__ import annotations

import threading

import pytest

from services.common import lifecycle, limits
from services.common.contract import PushGrid
from services.dbagent.checks import LoginChecks
from services.dbagent.servant import DBAgentI
from tests.unit.fakes import APP as KEY

State = PushGrid.MessageState


class FakeStore:
    """Records each call; returns a marker so the servant's pass-through can be checked."""

    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, args))
            return f"result of {name}"

        return call


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def servant(store):
    return DBAgentI(store)


def good_record(**change) -> PushGrid.MessageRecord:
    rec = PushGrid.MessageRecord(
        msgId=1,
        appKey=KEY,
        state=State.Accepted,
        createdAt=10,
        sendAt=10,
        expiresAt=20,
        request=PushGrid.PushRequest(audience=PushGrid.Audience(all=True)),
    )
    for name, value in change.items():
        setattr(rec, name, value)
    return rec


def test_create_app_quota_zero_means_default(servant, store):
    assert servant.createApp("App", 0) == "result of create_app"
    servant.createApp("App", limits.PUSH_QUOTA_MAX)
    assert store.calls == [
        ("create_app", ("App", limits.PUSH_QUOTA_DEFAULT)),
        ("create_app", ("App", limits.PUSH_QUOTA_MAX)),
    ]


@pytest.mark.parametrize("name", [None, "", " lead", "trail ", "tab\there", "x" * 101, "é" * 51])
def test_create_app_rejects_bad_names(servant, store, name):
    with pytest.raises(PushGrid.InvalidArgument) as err:
        servant.createApp(name, 10)
    assert err.value.field == "name" and store.calls == []


def test_create_app_accepts_a_100_byte_unicode_name(servant, store):
    servant.createApp("é" * 50, 10)
    assert store.calls[0][1][0] == "é" * 50


@pytest.mark.parametrize("quota", [-1, limits.PUSH_QUOTA_MAX + 1])
def test_create_app_rejects_bad_quota(servant, store, quota):
    with pytest.raises(PushGrid.InvalidArgument) as err:
        servant.createApp("App", quota)
    assert err.value.field == "pushQuotaPerMinute" and store.calls == []


@pytest.mark.parametrize("quota", [0, -5, limits.PUSH_QUOTA_MAX + 1])
def test_set_quota_range(servant, store, quota):
    with pytest.raises(PushGrid.InvalidArgument):
        servant.setQuota(KEY, quota)
    assert store.calls == []


@pytest.mark.parametrize("op", ["getApp", "rotateSecret", "deviceCount"])
@pytest.mark.parametrize("key", [None, "", KEY.upper(), KEY + "0", KEY + "\n", "g" * 24])
def test_malformed_app_key_is_unknown_app_where_invalid_argument_is_not_declared(servant, store, op, key):
    with pytest.raises(PushGrid.UnknownApp):
        getattr(servant, op)(key)
    assert store.calls == []


def test_verify_app_malformed_key_or_huge_secret_fails_like_a_wrong_secret(servant, store, monkeypatch):
    hashed = []
    monkeypatch.setattr("services.dbagent.credentials.verify_secret", lambda s, h: hashed.append(h) or False)
    for key, secret in [("nothex", "s"), (KEY, "s" * 10_000)]:
        with pytest.raises(PushGrid.AuthenticationFailed):
            servant.verifyApp(key, secret).result(timeout=5)
    assert hashed == [None, None] and store.calls == []
    servant.verifyApp(KEY, None).result(timeout=5)
    assert store.calls == [("verify_app", (KEY, ""))]


def test_logins_are_checked_on_bounded_threads_of_their_own_and_beyond_them_told_to_retry() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return threading.current_thread().name

    checks = LoginChecks(at_once=1, waiting=2)
    running = [checks.submit(slow) for _ in range(3)]  # one checking, two waiting
    started.wait(5)
    with pytest.raises(PushGrid.Unavailable) as full:
        checks.submit(slow)
    assert "try again" in full.value.reason
    release.set()
    assert all(f.result(timeout=5).startswith("login-check") for f in running)
    checks.submit(slow).result(timeout=5)  # room again once they are done
    checks.close()


@pytest.mark.parametrize(
    "args", [("bad", "abc", "t"), (KEY, "bad id", "t"), (KEY, "r" * 65, "t"), (KEY, "abc", "t" * 300)]
)
def test_verify_device_malformed_is_authentication_failed(servant, store, args):
    with pytest.raises(PushGrid.AuthenticationFailed):
        servant.verifyDevice(*args)
    assert store.calls == []


def test_touch_devices_dedupes_and_skips_empty(servant, store):
    servant.touchDevices(KEY, None, 5)
    servant.touchDevices(KEY, [], 5)
    servant.touchDevices(KEY, ["a", "b", "a"], 5)
    assert store.calls == [("touch_devices", (KEY, ["a", "b"], 5))]


@pytest.mark.parametrize(
    "args,field",
    [
        ((KEY, ["ok", "no!"], 5), "registrationIds"),
        ((KEY, ["a"] * (limits.RECEIPTS_PER_CALL + 1), 5), "registrationIds"),
        ((KEY, ["a"], 0), "seenAt"),
        (("x", ["a"], 5), "appKey"),
    ],
)
def test_touch_devices_rejects_bad_input(servant, store, args, field):
    with pytest.raises(PushGrid.InvalidArgument) as err:
        servant.touchDevices(*args)
    assert err.value.field == field and store.calls == []


@pytest.mark.parametrize("reg_id", ["abc\n", "", None, "r" * 65, "a-b", "ä"])
def test_device_calls_reject_malformed_registration_ids(servant, store, reg_id):
    for call in (servant.getDevice, servant.unregisterDevice):
        with pytest.raises(PushGrid.InvalidArgument) as err:
            call(KEY, reg_id)
        assert err.value.field == "registrationId"
    assert store.calls == []


def test_register_device_checks_platform(servant, store):
    servant.registerDevice(KEY, PushGrid.Platform.Web)
    with pytest.raises(PushGrid.InvalidArgument):
        servant.registerDevice(KEY, 2)
    assert store.calls == [("register_device", (KEY, PushGrid.Platform.Web))]


def test_record_message_passes_a_good_record(servant, store):
    rec = good_record()
    servant.recordMessage(rec)
    assert store.calls == [("record_message", (rec,))]


@pytest.mark.parametrize(
    "change,field",
    [
        ({"msgId": 0}, "msgId"),
        ({"appKey": "nope"}, "appKey"),
        ({"state": State.Done}, "state"),
        ({"state": None}, "state"),
        ({"createdAt": 0}, "createdAt"),
        ({"sendAt": -1}, "sendAt"),
        ({"expiresAt": 9}, "expiresAt"),
        ({"request": None}, "request"),
        ({"request": PushGrid.PushRequest(audience=PushGrid.Audience(all=False))}, "audience"),
        ({"request": PushGrid.PushRequest(audience=PushGrid.Audience(tags=["t"] * 21))}, "audience.tags"),
        (
            {
                "request": PushGrid.PushRequest(
                    audience=PushGrid.Audience(all=True), notification=PushGrid.Notification(alert="x" * 300_000)
                )
            },
            "request",
        ),
    ],
)
def test_record_message_rejects_bad_records(servant, store, change, field):
    with pytest.raises(PushGrid.InvalidArgument) as err:
        servant.recordMessage(good_record(**change))
    assert err.value.field == field and store.calls == []


def test_record_message_rejects_no_record(servant, store):
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordMessage(None)


@pytest.mark.parametrize("key,msg_id", [("bad", 1), (KEY, 0), (KEY, -3)])
def test_malformed_message_keys_are_unknown_message(servant, store, key, msg_id):
    with pytest.raises(PushGrid.UnknownMessage):
        servant.getMessage(key, msg_id)
    with pytest.raises(PushGrid.UnknownMessage):
        servant.transitionMessage(key, msg_id, State.Accepted, State.Dispatching)
    with pytest.raises(PushGrid.UnknownMessage):
        servant.applyOverride(key, msg_id)
    assert store.calls == []


@pytest.mark.parametrize("msg_id", [0, -3])
def test_find_message_needs_a_positive_msg_id(servant, store, msg_id):
    with pytest.raises(PushGrid.InvalidArgument) as err:
        servant.findMessage(msg_id)
    assert err.value.field == "msgId" and store.calls == []
    assert servant.findMessage(7) == "result of find_message"
    assert store.calls == [("find_message", (7,))]


def test_apply_override_reaches_the_store(servant, store):
    assert servant.applyOverride(KEY, 7) == "result of apply_override"
    assert store.calls == [("apply_override", (KEY, 7))]


ALL_STATES = list(lifecycle.ALL)


@pytest.mark.parametrize("to", ALL_STATES, ids=str)
@pytest.mark.parametrize("frm", ALL_STATES, ids=str)
def test_transition_message_allows_only_the_lifecycle(servant, store, frm, to):
    if lifecycle.allowed(frm, to):
        assert servant.transitionMessage(KEY, 7, frm, to) == "result of transition_message"
        assert store.calls == [("transition_message", (KEY, 7, frm, to))]
        return
    with pytest.raises(PushGrid.InvalidState) as err:
        servant.transitionMessage(KEY, 7, frm, to)
    assert err.value.msgId == 7 and frm.name in err.value.reason and to.name in err.value.reason
    assert store.calls == []


def test_lifecycle_table():
    assert lifecycle.FINAL == {State.Cancelled, State.Expired, State.Overridden}
    assert lifecycle.OVERRIDABLE == {State.Scheduled, State.Accepted, State.Dispatching, State.Done}
    assert lifecycle.RUNNABLE <= {f for f, _ in lifecycle.TRANSITIONS} and lifecycle.NEW <= lifecycle.RUNNABLE
    assert lifecycle.OVERRIDE_TAKES_EFFECT <= set(lifecycle.TRANSITIONS)
    assert not any(frm == to for frm, to in lifecycle.TRANSITIONS)


@pytest.mark.parametrize(
    "limit,expected",
    [(0, limits.PAGE_DEFAULT), (-1, limits.PAGE_DEFAULT), (5, 5), (limits.PAGE_MAX + 1, limits.PAGE_MAX)],
)
def test_due_and_unstarted_messages_limit(servant, store, limit, expected):
    servant.dueMessages(123, limit)
    servant.unstartedMessages(456, limit)
    assert store.calls == [("due_messages", (123, expected)), ("unstarted_messages", (456, expected))]


@pytest.mark.parametrize(
    "args,field",
    [
        ((0, "b", PushGrid.StatsDelta(1, 1, 1)), "msgId"),
        ((1, None, PushGrid.StatsDelta(1, 1, 1)), "batchKey"),
        ((1, "has space", PushGrid.StatsDelta(1, 1, 1)), "batchKey"),
        ((1, "é", PushGrid.StatsDelta(1, 1, 1)), "batchKey"),
        ((1, "b" * 129, PushGrid.StatsDelta(1, 1, 1)), "batchKey"),
        ((1, "b\n", PushGrid.StatsDelta(1, 1, 1)), "batchKey"),
        ((1, "b", None), "delta"),
        ((1, "b", PushGrid.StatsDelta(-1, 0, 0)), "delta.targets"),
        ((1, "b", PushGrid.StatsDelta(0, 0, -1)), "delta.storedOffline"),
    ],
)
def test_record_stats_rejects_bad_input(servant, store, args, field):
    with pytest.raises(PushGrid.InvalidArgument) as err:
        servant.recordStats(*args)
    assert err.value.field == field and store.calls == []


def test_record_receipts_dedupes_and_bounds(servant, store):
    assert servant.recordReceipts(KEY, 7, ["a", "b", "a"]) == "result of record_receipts"
    servant.recordReceipts(KEY, 7, None)
    assert store.calls == [("record_receipts", (KEY, 7, ["a", "b"])), ("record_receipts", (KEY, 7, []))]
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordReceipts(KEY, 7, ["a"] * (limits.RECEIPTS_PER_CALL + 1))
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordReceipts(KEY, 0, ["a"])
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordReceipts("not-a-key", 7, ["a"])


def test_timed_receipts_keep_recordReceiptsManys_rules_and_need_a_time(servant, store):
    T = PushGrid.TimedReceipts
    assert servant.recordTimedReceipts([T(KEY, 7, ["a", "b", "a"], 1000), None]) == "result of record_timed_receipts"
    assert store.calls == [("record_timed_receipts", ([(KEY, 7, ["a", "b"], 1000)],))]
    assert servant.recordTimedReceipts([]) == 0 and len(store.calls) == 1
    for bad, field in (
        ([T(KEY, 7, ["a"], 0)], "receivedAt"),
        ([T(KEY, 7, ["a"], -1)], "receivedAt"),
        ([T(KEY, 0, ["a"], 1000)], "msgId"),
        ([T(KEY, 7, ["no spaces"], 1000)], "registrationIds"),
        ([T(KEY, 7, ["a"] * limits.RECEIPTS_PER_CALL, 1), T(KEY, 8, ["b"], 1)], "receipts"),  # 10000 ids in all
    ):
        with pytest.raises(PushGrid.InvalidArgument) as err:
            servant.recordTimedReceipts(bad)
        assert err.value.field == field
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordTimedReceipts([T("not-a-key", 7, ["a"], 1000)])
    assert len(store.calls) == 1


@pytest.mark.parametrize("key, msg_id", [("not-a-key", 7), (KEY, 0), (KEY, -3)])
def test_a_curve_of_a_malformed_key_is_unknown_message(servant, store, key, msg_id):
    with pytest.raises(PushGrid.UnknownMessage):
        servant.getCurve(key, msg_id)
    assert store.calls == []
    assert servant.getCurve(KEY, 7) == "result of get_curve"


def test_get_stats_dedupes_in_order_and_bounds(servant, store):
    servant.getStats(KEY, [3, 1, 3, 2])
    assert store.calls == [("get_stats", (KEY, [3, 1, 2]))]
    for ids in ([1] * (limits.MSG_IDS_PER_REPORT + 1), [1, 0], [-1]):
        with pytest.raises(PushGrid.InvalidArgument):
            servant.getStats(KEY, ids)
    with pytest.raises(PushGrid.InvalidArgument):
        servant.getStats("KEY", [1])
