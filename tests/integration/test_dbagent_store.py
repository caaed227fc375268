"""DBAgent's store and servant against a real MariaDB (the session's mysql_settings database).

The database is shared by the whole session, so every test makes its own apps (uuid names) and
msg ids, and looks only at its own rows.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
import uuid

import pytest

from services.common import limits
from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.dbagent.migrations import migrate
from services.dbagent.servant import DBAgentI
from services.dbagent.store import Store
from tools.grid.rundir import free_port

pytestmark = pytest.mark.integration

State = PushGrid.MessageState


@pytest.fixture(scope="module")
def store(mysql_settings):
    s = Store(mysql_settings)
    yield s
    s.close()


@pytest.fixture(scope="module")
def servant(store):
    return DBAgentI(store)


def app_name() -> str:
    return "test-" + uuid.uuid4().hex


def new_app(store: Store) -> PushGrid.AppCredentials:
    return store.create_app(app_name(), limits.PUSH_QUOTA_DEFAULT)


def new_msg_id() -> int:
    return uuid.uuid4().int >> 65  # 63 random bits: positive and unique in practice


def full_request() -> PushGrid.PushRequest:
    return PushGrid.PushRequest(
        audience=PushGrid.Audience(
            all=False,
            tags=["vip", "北京"],
            tagsAnd=["beta"],
            tagsNot=["churned"],
            aliases=["alice"],
            registrationIds=["0123abc"],
        ),
        platforms=[PushGrid.Platform.Android, PushGrid.Platform.Web],
        notification=PushGrid.Notification(
            alert='Hello ☃ "quoted"', title="Greeting", extras={"k": "v", "emoji": "🎉"}
        ),
        message=PushGrid.Message(content="payload\n", title="t", contentType="text/plain", extras={"a": "b"}),
        options=PushGrid.PushOptions(sendno=7, timeToLive=3600, overrideMsgId=12345678901234, bigPushDuration=5),
    )


def broadcast() -> PushGrid.PushRequest:
    return PushGrid.PushRequest(
        audience=PushGrid.Audience(all=True, tags=[], tagsAnd=[], tagsNot=[], aliases=[], registrationIds=[]),
        platforms=[],
        notification=PushGrid.Notification(alert="hi", title="", extras={}),
        message=PushGrid.Message(content="", title="", contentType="", extras={}),
        options=PushGrid.PushOptions(),
    )


def record(app_key: str, state=State.Accepted, send_at: int | None = None, request=None) -> PushGrid.MessageRecord:
    now = now_ms()
    send_at = now if send_at is None else send_at
    return PushGrid.MessageRecord(
        msgId=new_msg_id(),
        appKey=app_key,
        request=request or broadcast(),
        state=state,
        createdAt=now,
        sendAt=send_at,
        expiresAt=send_at + 86_400_000,
    )


# ---------------------------------------------------------------- schema


def test_migrate_again_applies_nothing(mysql_settings):
    assert migrate(mysql_settings) == []


# ---------------------------------------------------------------- apps


def test_create_get_and_verify_app(store):
    name = app_name()
    creds = store.create_app(name, 1234)
    assert len(creds.appKey) == 24 and creds.masterSecret
    info = store.get_app(creds.appKey)
    assert (info.appKey, info.name, info.pushQuotaPerMinute, info.enabled) == (creds.appKey, name, 1234, True)
    assert info.createdAt == info.secretRotatedAt > 0
    assert store.verify_app(creds.appKey, creds.masterSecret) == info
    assert creds.appKey in [a.appKey for a in store.list_apps()]


def test_wrong_secret_and_unknown_app_fail_alike(store):
    creds = new_app(store)
    with pytest.raises(PushGrid.AuthenticationFailed) as wrong:
        store.verify_app(creds.appKey, creds.masterSecret + "x")
    with pytest.raises(PushGrid.AuthenticationFailed) as unknown:
        store.verify_app("f" * 24, creds.masterSecret)
    assert wrong.value.reason == unknown.value.reason


def test_rotate_secret_retires_the_old_one_at_once(store):
    creds = new_app(store)
    before = store.get_app(creds.appKey).secretRotatedAt
    time.sleep(0.002)
    rotated = store.rotate_secret(creds.appKey)
    assert rotated.appKey == creds.appKey and rotated.masterSecret != creds.masterSecret
    with pytest.raises(PushGrid.AuthenticationFailed):
        store.verify_app(creds.appKey, creds.masterSecret)
    assert store.verify_app(creds.appKey, rotated.masterSecret).secretRotatedAt > before


def test_set_quota(store):
    creds = new_app(store)
    store.set_quota(creds.appKey, 42)
    store.set_quota(creds.appKey, 42)  # the same value again still finds the app
    assert store.get_app(creds.appKey).pushQuotaPerMinute == 42


def test_disabled_app_cannot_authenticate_register_or_record(store):
    creds = new_app(store)
    dev = store.register_device(creds.appKey, PushGrid.Platform.Ios)
    store.set_app_enabled(creds.appKey, False)
    store.set_app_enabled(creds.appKey, False)
    assert store.get_app(creds.appKey).enabled is False
    with pytest.raises(PushGrid.AuthenticationFailed):
        store.verify_app(creds.appKey, creds.masterSecret)
    with pytest.raises(PushGrid.AuthenticationFailed):
        store.verify_device(creds.appKey, dev.registrationId, dev.deviceToken)
    with pytest.raises(PushGrid.UnknownApp):
        store.register_device(creds.appKey, PushGrid.Platform.Ios)
    with pytest.raises(PushGrid.UnknownApp):
        store.record_message(record(creds.appKey))
    store.set_app_enabled(creds.appKey, True)
    assert store.verify_app(creds.appKey, creds.masterSecret).enabled is True


def test_duplicate_app_name_is_already_exists(store):
    name = app_name()
    store.create_app(name, 10)
    with pytest.raises(PushGrid.AlreadyExists) as err:
        store.create_app(name, 10)
    assert err.value.id == name


@pytest.mark.parametrize(
    "call",
    [
        lambda s, k: s.get_app(k),
        lambda s, k: s.rotate_secret(k),
        lambda s, k: s.set_quota(k, 5),
        lambda s, k: s.set_app_enabled(k, True),
        lambda s, k: s.device_count(k),
        lambda s, k: s.register_device(k, PushGrid.Platform.Web),
        lambda s, k: s.record_message(record(k)),
    ],
    ids=["getApp", "rotateSecret", "setQuota", "setAppEnabled", "deviceCount", "registerDevice", "recordMessage"],
)
def test_unknown_app(store, call):
    key = uuid.uuid4().hex[:24]
    with pytest.raises(PushGrid.UnknownApp) as err:
        call(store, key)
    assert err.value.appKey == key


# ---------------------------------------------------------------- devices


def test_register_and_verify_device(store):
    creds = new_app(store)
    dev = store.register_device(creds.appKey, PushGrid.Platform.Android)
    assert dev.registrationId.isalnum() and len(dev.registrationId) <= limits.REGID_MAX_BYTES
    created = store.get_device(creds.appKey, dev.registrationId)
    assert (created.appKey, created.platform, created.lastSeen) == (
        creds.appKey,
        PushGrid.Platform.Android,
        created.createdAt,
    )
    verified = store.verify_device(creds.appKey, dev.registrationId, dev.deviceToken)
    assert (verified.appKey, verified.registrationId, verified.platform) == (
        creds.appKey,
        dev.registrationId,
        PushGrid.Platform.Android,
    )


def test_verify_device_rejects_wrong_token_other_app_and_unknown_id(store):
    creds, other = new_app(store), new_app(store)
    dev = store.register_device(creds.appKey, PushGrid.Platform.Web)
    wrong = dev.deviceToken[:-1] + ("1" if dev.deviceToken.endswith("0") else "0")  # always differs
    for app_key, reg_id, token in [
        (creds.appKey, dev.registrationId, wrong),
        (creds.appKey, dev.registrationId, ""),
        (other.appKey, dev.registrationId, dev.deviceToken),
        (creds.appKey, "0" * 20, dev.deviceToken),
    ]:
        with pytest.raises(PushGrid.AuthenticationFailed):
            store.verify_device(app_key, reg_id, token)
    with pytest.raises(PushGrid.UnknownDevice):
        store.get_device(other.appKey, dev.registrationId)


def test_register_devices_makes_many_distinct_devices_in_one_call(servant, store):
    creds, disabled = new_app(store), new_app(store)
    made = servant.registerDevices(creds.appKey, PushGrid.Platform.Ios, 300)
    assert len({d.registrationId for d in made}) == 300 and len({d.deviceToken for d in made}) == 300
    assert store.device_count(creds.appKey) == 300
    some = made[::37]
    assert all(
        store.verify_device(creds.appKey, d.registrationId, d.deviceToken).platform == PushGrid.Platform.Ios
        for d in some
    )
    for count in (0, -1, limits.DEVICE_BATCH + 1):
        with pytest.raises(PushGrid.InvalidArgument):
            servant.registerDevices(creds.appKey, PushGrid.Platform.Ios, count)
    store.set_app_enabled(disabled.appKey, False)
    with pytest.raises(PushGrid.UnknownApp):
        servant.registerDevices(disabled.appKey, PushGrid.Platform.Ios, 2)
    assert store.device_count(creds.appKey) == 300  # refused calls added nothing


def test_verify_devices_answers_each_hello_in_order_and_fails_only_the_bad_ones(servant, store):
    creds, other = new_app(store), new_app(store)
    good = servant.registerDevices(creds.appKey, PushGrid.Platform.Android, 3)
    theirs = store.register_device(other.appKey, PushGrid.Platform.Web)
    check = PushGrid.DeviceCheck
    checks = [
        check(creds.appKey, good[0].registrationId, good[0].deviceToken),
        check(creds.appKey, good[1].registrationId, good[0].deviceToken),  # another device's token
        check(other.appKey, good[2].registrationId, good[2].deviceToken),  # right token, wrong app
        check(other.appKey, theirs.registrationId, theirs.deviceToken),
        check(creds.appKey, "no spaces allowed", "t"),  # malformed: fails alone
        check(creds.appKey, good[2].registrationId, "t" * 5000),
        check(creds.appKey, good[2].registrationId, good[2].deviceToken),
        check(creds.appKey, good[0].registrationId, good[0].deviceToken),  # the same hello twice
    ]
    answers = [a.registrationId for a in servant.verifyDevices(checks)]
    assert answers == [
        good[0].registrationId,
        "",
        "",
        theirs.registrationId,
        "",
        "",
        good[2].registrationId,
        good[0].registrationId,
    ]
    assert servant.verifyDevices([]) == []
    with pytest.raises(PushGrid.InvalidArgument):
        servant.verifyDevices([checks[0]] * (limits.DEVICE_BATCH + 1))
    store.set_app_enabled(other.appKey, False)
    assert servant.verifyDevices(checks[3:4])[0].registrationId == ""


def test_record_messages_records_a_batch_and_leaves_taken_ids_as_they_were(servant, store):
    creds, other = new_app(store), new_app(store)
    taken = record(creds.appKey)
    store.record_message(taken)
    clash = record(creds.appKey, request=full_request())
    clash.msgId = taken.msgId
    batch = [record(creds.appKey), clash, record(creds.appKey, state=State.Scheduled, send_at=now_ms() + 60_000)]
    assert servant.recordMessages(creds.appKey, batch) == [True, False, True]
    assert store.get_message(creds.appKey, taken.msgId).request.audience.all  # the first one kept
    assert store.get_message(creds.appKey, batch[2].msgId).state == State.Scheduled
    assert [s.targets for s in store.get_stats(creds.appKey, [batch[0].msgId, batch[2].msgId])] == [0, 0]
    with pytest.raises(PushGrid.InvalidArgument):  # every record must be of the app named
        servant.recordMessages(creds.appKey, [record(creds.appKey), record(other.appKey)])
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordMessages(creds.appKey, [record(creds.appKey)] * (limits.PUSH_BATCH_MAX + 1))
    store.set_app_enabled(other.appKey, False)
    with pytest.raises(PushGrid.UnknownApp):
        servant.recordMessages(other.appKey, [record(other.appKey)])
    assert servant.recordMessages(creds.appKey, []) == []


def test_a_dispatchers_batch_reads_moves_and_counts_many_messages_per_call(servant, store):
    creds, other = new_app(store), new_app(store)
    mine = [record(creds.appKey) for _ in range(3)]
    theirs = record(other.appKey)
    assert servant.recordMessages(creds.appKey, mine) == [True] * 3
    store.record_message(theirs)
    key = PushGrid.MessageKey
    found = servant.getMessages(
        [key(creds.appKey, mine[0].msgId), key(creds.appKey, theirs.msgId), key(creds.appKey, 12345), key("bad", 1)]
        + [key(creds.appKey, mine[2].msgId)]
    )
    assert [r.msgId for r in found] == [mine[0].msgId, 0, 0, 0, mine[2].msgId]
    assert found[0].request.audience.all and found[4].state == State.Accepted
    move = PushGrid.Transition
    moved = servant.transitionMessages(
        [
            move(creds.appKey, mine[0].msgId, State.Accepted, State.Dispatching),
            move(creds.appKey, mine[1].msgId, State.Scheduled, State.Dispatching),  # not in that state
            move(creds.appKey, theirs.msgId, State.Accepted, State.Dispatching),  # another app's
            move(creds.appKey, 12345, State.Accepted, State.Dispatching),  # unknown
        ]
    )
    assert moved == [True, False, False, False]
    assert [store.get_message(creds.appKey, m.msgId).state for m in mine] == [
        State.Dispatching,
        State.Accepted,
        State.Accepted,
    ]
    with pytest.raises(PushGrid.InvalidArgument):  # a move no message makes fails the whole call
        servant.transitionMessages(
            [
                move(creds.appKey, mine[2].msgId, State.Accepted, State.Dispatching),
                move(creds.appKey, mine[1].msgId, State.Done, State.Accepted),
            ]
        )
    assert store.get_message(creds.appKey, mine[2].msgId).state == State.Accepted
    row = PushGrid.StatsRow
    rows = [
        row(mine[0].msgId, "page-0", PushGrid.StatsDelta(5, 2, 3)),
        row(12345, "page-0", PushGrid.StatsDelta(1, 1, 0)),
    ]
    servant.recordStatsMany(rows)
    servant.recordStatsMany(rows)  # a retried batch counts once
    s = store.get_stats(creds.appKey, [mine[0].msgId])[0]
    assert (s.targets, s.sentOnline, s.storedOffline) == (5, 2, 3)
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordStatsMany([row(mine[1].msgId, "no spaces", PushGrid.StatsDelta(1, 0, 0))])


def test_touch_devices_moves_last_seen_forward_only(store):
    creds, other = new_app(store), new_app(store)
    a = store.register_device(creds.appKey, PushGrid.Platform.Android).registrationId
    b = store.register_device(creds.appKey, PushGrid.Platform.Ios).registrationId
    c = store.register_device(other.appKey, PushGrid.Platform.Ios).registrationId
    later = now_ms() + 60_000
    store.touch_devices(creds.appKey, [a, b, c, "feedface"], later)  # c is another app's, feedface unknown
    assert store.get_device(creds.appKey, a).lastSeen == later
    assert store.get_device(creds.appKey, b).lastSeen == later
    assert store.get_device(other.appKey, c).lastSeen < later
    store.touch_devices(creds.appKey, [a], later - 30_000)
    assert store.get_device(creds.appKey, a).lastSeen == later


def test_unregister_device_and_device_count(store):
    creds = new_app(store)
    assert store.device_count(creds.appKey) == 0
    ids = [store.register_device(creds.appKey, PushGrid.Platform.Android).registrationId for _ in range(3)]
    assert len(set(ids)) == 3 and store.device_count(creds.appKey) == 3
    store.unregister_device(creds.appKey, ids[0])
    assert store.device_count(creds.appKey) == 2
    with pytest.raises(PushGrid.UnknownDevice):
        store.unregister_device(creds.appKey, ids[0])
    with pytest.raises(PushGrid.UnknownDevice):
        store.get_device(creds.appKey, ids[0])


def test_the_device_counter_is_what_its_migration_counts(store):
    from services.dbagent import migrations

    creds = new_app(store)
    store.register_devices(creds.appKey, PushGrid.Platform.Ios, 5)
    store.unregister_device(creds.appKey, store.register_device(creds.appKey, PushGrid.Platform.Web).registrationId)
    assert store.device_count(creds.appKey) == 5
    recount = migrations.statements((migrations.MIGRATIONS_DIR / "003_app_device_count.sql").read_text())[-1]
    with store._cursor() as cur:
        cur.execute("UPDATE apps SET device_count = 0 WHERE app_key = %s", (creds.appKey,))
        cur.execute(recount)
    assert store.device_count(creds.appKey) == 5


# ---------------------------------------------------------------- messages


@pytest.mark.parametrize("request_factory", [full_request, broadcast], ids=["targeted", "broadcast"])
def test_record_and_get_message_round_trip(store, request_factory):
    creds = new_app(store)
    rec = record(creds.appKey, request=request_factory())
    store.record_message(rec)
    assert store.get_message(creds.appKey, rec.msgId) == rec


def test_find_message_needs_no_app_key(store):
    rec = record(new_app(store).appKey)
    store.record_message(rec)
    assert store.find_message(rec.msgId) == rec
    with pytest.raises(PushGrid.UnknownMessage):
        store.find_message(new_msg_id())


def test_duplicate_msg_id_is_already_exists(store):
    creds = new_app(store)
    rec = record(creds.appKey)
    store.record_message(rec)
    with pytest.raises(PushGrid.AlreadyExists) as err:
        store.record_message(rec)
    assert err.value.id == str(rec.msgId)
    assert store.get_message(creds.appKey, rec.msgId) == rec


def test_an_error_noted_on_a_message_shows_with_its_report_and_the_first_stays(servant, store):
    creds, other = new_app(store), new_app(store)
    noted, clean = record(creds.appKey), record(creds.appKey)
    store.record_message(noted)
    store.record_message(clean)
    servant.noteMessageError(creds.appKey, noted.msgId, "first")
    servant.noteMessageError(creds.appKey, noted.msgId, "second")  # a retried or later note
    ids = [clean.msgId, noted.msgId]
    assert servant.getMessageErrors(creds.appKey, ids) == [PushGrid.MessageError(msgId=noted.msgId, error="first")]
    assert servant.getMessageErrors(other.appKey, ids) == []  # another app's messages are not shown
    with pytest.raises(PushGrid.UnknownMessage):
        servant.noteMessageError(other.appKey, clean.msgId, "not yours")
    for bad in ("", "   ", "x" * (limits.MESSAGE_ERROR_MAX_CHARS + 1)):
        with pytest.raises(PushGrid.InvalidArgument):
            servant.noteMessageError(creds.appKey, clean.msgId, bad)
    assert servant.getMessageErrors(creds.appKey, [clean.msgId]) == []
    assert [s.msgId for s in servant.getStats(creds.appKey, ids)] == ids  # the counts are as they were


def test_message_of_another_app_is_unknown(store):
    creds, other = new_app(store), new_app(store)
    rec = record(creds.appKey)
    store.record_message(rec)
    with pytest.raises(PushGrid.UnknownMessage):
        store.get_message(other.appKey, rec.msgId)
    with pytest.raises(PushGrid.UnknownMessage):
        store.transition_message(other.appKey, rec.msgId, State.Accepted, State.Dispatching)
    assert store.get_message(creds.appKey, rec.msgId).state == State.Accepted


def test_transition_message_is_compare_and_set(store):
    creds = new_app(store)
    rec = record(creds.appKey)
    store.record_message(rec)
    assert store.transition_message(creds.appKey, rec.msgId, State.Accepted, State.Dispatching) is True
    assert store.transition_message(creds.appKey, rec.msgId, State.Accepted, State.Dispatching) is False
    assert store.get_message(creds.appKey, rec.msgId).state == State.Dispatching
    assert store.transition_message(creds.appKey, rec.msgId, State.Dispatching, State.Done) is True
    assert store.get_message(creds.appKey, rec.msgId).state == State.Done
    with pytest.raises(PushGrid.UnknownMessage):
        store.transition_message(creds.appKey, new_msg_id(), State.Accepted, State.Dispatching)


def test_servant_refuses_a_move_the_lifecycle_does_not_have(servant, store):
    creds = new_app(store)
    rec = record(creds.appKey)
    store.record_message(rec)
    for frm, to in ((State.Accepted, State.Done), (State.Overridden, State.Accepted), (State.Done, State.Done)):
        with pytest.raises(PushGrid.InvalidState) as err:
            servant.transitionMessage(creds.appKey, rec.msgId, frm, to)
        assert frm.name in err.value.reason and to.name in err.value.reason and err.value.msgId == rec.msgId
    assert store.get_message(creds.appKey, rec.msgId).state == State.Accepted
    assert servant.transitionMessage(creds.appKey, rec.msgId, State.Accepted, State.Dispatching) is True


def overriding(app_key: str, old: int, state=State.Scheduled) -> PushGrid.MessageRecord:
    request = broadcast()
    request.options = PushGrid.PushOptions(overrideMsgId=old)
    # due only tomorrow, so no scheduler sharing this database publishes it meanwhile
    return record(app_key, state=state, send_at=now_ms() + 86_400_000, request=request)


def test_scheduled_override_ends_the_old_message_as_it_goes_out(store):
    creds, other = new_app(store), new_app(store)
    done, cancelled, theirs = record(creds.appKey), record(creds.appKey), record(other.appKey)
    for rec in (done, cancelled, theirs):
        store.record_message(rec)
    store.transition_message(creds.appKey, done.msgId, State.Accepted, State.Dispatching)
    store.transition_message(creds.appKey, done.msgId, State.Dispatching, State.Done)
    store.transition_message(creds.appKey, cancelled.msgId, State.Accepted, State.Cancelled)
    by_scheduler = overriding(creds.appKey, done.msgId)
    claimed = overriding(creds.appKey, cancelled.msgId)
    foreign = overriding(creds.appKey, theirs.msgId)
    dropped = overriding(creds.appKey, done.msgId)
    for rec in (by_scheduler, claimed, foreign, dropped):
        store.record_message(rec)
    assert store.transition_message(creds.appKey, dropped.msgId, State.Scheduled, State.Cancelled)
    assert store.get_message(creds.appKey, done.msgId).state == State.Done  # a cancelled override ends nothing

    assert store.transition_message(creds.appKey, by_scheduler.msgId, State.Scheduled, State.Accepted)
    assert store.get_message(creds.appKey, done.msgId).state == State.Overridden
    assert store.transition_message(creds.appKey, claimed.msgId, State.Scheduled, State.Dispatching)
    assert store.get_message(creds.appKey, cancelled.msgId).state == State.Cancelled  # stays what it is
    assert store.transition_message(creds.appKey, foreign.msgId, State.Scheduled, State.Accepted)
    assert store.get_message(other.appKey, theirs.msgId).state == State.Accepted  # another app's: untouched


def test_recorded_or_claimed_accepted_override_leaves_the_old_message_to_push(store):
    creds = new_app(store)
    old = record(creds.appKey)
    store.record_message(old)
    new = overriding(creds.appKey, old.msgId, state=State.Accepted)
    store.record_message(new)
    assert store.transition_message(creds.appKey, new.msgId, State.Accepted, State.Dispatching)
    assert store.get_message(creds.appKey, old.msgId).state == State.Accepted


def test_apply_override_ends_a_live_old_message_once(store):
    creds, other = new_app(store), new_app(store)
    old, cancelled, plain = record(creds.appKey), record(creds.appKey), record(creds.appKey)
    theirs = record(other.appKey)
    for rec in (old, cancelled, plain, theirs):
        store.record_message(rec)
    store.transition_message(creds.appKey, cancelled.msgId, State.Accepted, State.Cancelled)
    new, late, foreign = (
        overriding(creds.appKey, m, state=State.Accepted) for m in (old.msgId, cancelled.msgId, theirs.msgId)
    )
    for rec in (new, late, foreign):
        store.record_message(rec)

    assert store.apply_override(creds.appKey, new.msgId) is True
    assert store.get_message(creds.appKey, old.msgId).state == State.Overridden
    assert store.apply_override(creds.appKey, new.msgId) is False  # a retry changes nothing
    assert store.apply_override(creds.appKey, late.msgId) is False
    assert store.get_message(creds.appKey, cancelled.msgId).state == State.Cancelled
    assert store.apply_override(creds.appKey, foreign.msgId) is False
    assert store.get_message(other.appKey, theirs.msgId).state == State.Accepted
    assert store.apply_override(creds.appKey, plain.msgId) is False  # overrides nothing
    with pytest.raises(PushGrid.UnknownMessage):
        store.apply_override(other.appKey, new.msgId)  # not the other app's message


def test_racing_transitions_have_one_winner(store):
    creds = new_app(store)
    rec = record(creds.appKey, state=State.Scheduled)
    store.record_message(rec)
    results: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                store.transition_message(creds.appKey, rec.msgId, State.Scheduled, State.Accepted)
            )
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_due_messages_are_scheduled_and_due_oldest_first(store):
    creds = new_app(store)
    base = 1_000  # long past, so these sort before anything other tests schedule
    first = record(creds.appKey, state=State.Scheduled, send_at=base + 1)
    second = record(creds.appKey, state=State.Scheduled, send_at=base + 2)
    not_due = record(creds.appKey, state=State.Scheduled, send_at=base + 10)
    accepted = record(creds.appKey, state=State.Accepted, send_at=base)
    cancelled = record(creds.appKey, state=State.Scheduled, send_at=base)
    for rec in (second, not_due, first, accepted, cancelled):
        store.record_message(rec)
    try:
        assert store.transition_message(creds.appKey, cancelled.msgId, State.Scheduled, State.Cancelled)
        due = [m for m in store.due_messages(base + 2, limits.PAGE_MAX) if m.appKey == creds.appKey]
        assert due == [first, second]
        assert len(store.due_messages(base + 2, 1)) == 1
    finally:  # a scheduler sharing this database must not find them due
        for rec in (first, second, not_due):
            store.transition_message(creds.appKey, rec.msgId, State.Scheduled, State.Cancelled)


def test_unstarted_messages_are_accepted_and_due_before_oldest_first(store):
    creds = new_app(store)
    base = 2_000  # long past
    lost = record(creds.appKey, state=State.Accepted, send_at=base + 1)
    older = record(creds.appKey, state=State.Accepted, send_at=base)
    fresh = record(creds.appKey, state=State.Accepted, send_at=base + 100)
    started = record(creds.appKey, state=State.Accepted, send_at=base)
    scheduled = record(creds.appKey, state=State.Scheduled, send_at=base)
    for rec in (lost, older, fresh, started, scheduled):
        store.record_message(rec)
    try:
        assert store.transition_message(creds.appKey, started.msgId, State.Accepted, State.Dispatching)
        found = [m for m in store.unstarted_messages(base + 2, limits.PAGE_MAX) if m.appKey == creds.appKey]
        assert found == [older, lost]
    finally:  # a reconciler sharing this database must not publish them
        for rec in (lost, older, fresh):
            store.transition_message(creds.appKey, rec.msgId, State.Accepted, State.Cancelled)
        store.transition_message(creds.appKey, scheduled.msgId, State.Scheduled, State.Cancelled)


def test_purge_deletes_expired_messages_with_their_reports_and_keeps_the_rest(store, monkeypatch):
    import services.dbagent.store as store_module

    monkeypatch.setattr(store_module, "PURGE_ROWS_PER_STATEMENT", 3)  # several statements per message
    creds = new_app(store)
    # expired long ago, and before any other test's message: the purge takes the oldest first
    old = [record(creds.appKey, send_at=1 + i) for i in range(3)]
    kept = record(creds.appKey)  # expires tomorrow
    for rec in (*old, kept):
        store.record_message(rec)
        store.record_receipts(creds.appKey, rec.msgId, [f"r{i}" for i in range(7)])
        store.record_stats(rec.msgId, "page-1", PushGrid.StatsDelta(targets=7, sentOnline=7))
    assert [sum(p.received for p in store.get_curve(creds.appKey, rec.msgId)) for rec in old] == [7, 7, 7]
    cutoff = old[-1].expiresAt + 1
    assert store.purge_expired(cutoff, 2).messages == 2  # at most the limit a call
    while store.purge_expired(cutoff, 2).messages:  # the rest, and other tests' expired messages
        pass
    assert store.purge_expired(cutoff, 2) == PushGrid.Purged(messages=0, receipts=0, statBatches=0)
    for rec in old:
        with pytest.raises(PushGrid.UnknownMessage):
            store.get_message(creds.appKey, rec.msgId)
    ids = [rec.msgId for rec in old]
    with store._cursor() as cur:
        for table in ("receipts", "receipt_curve", "stat_batches", "message_stats"):
            cur.execute(f"SELECT COUNT(*) AS n FROM {table} WHERE msg_id IN (%s, %s, %s)", ids)
            assert cur.fetchone()["n"] == 0, table
    assert store.get_message(creds.appKey, kept.msgId) == kept
    assert stats_of(store, creds.appKey, kept.msgId).received == 7  # its report is whole
    assert sum(p.received for p in store.get_curve(creds.appKey, kept.msgId)) == 7  # and its curve


# ---------------------------------------------------------------- statistics


def stats_of(store: Store, app_key: str, msg_id: int) -> PushGrid.MessageStats:
    (stats,) = store.get_stats(app_key, [msg_id])
    return stats


def test_record_stats_counts_each_batch_once(store):
    creds = new_app(store)
    rec = record(creds.appKey)
    store.record_message(rec)
    assert stats_of(store, creds.appKey, rec.msgId) == PushGrid.MessageStats(rec.msgId, 0, 0, 0, 0, State.Accepted)
    store.record_stats(rec.msgId, "worker-1:batch-1", PushGrid.StatsDelta(10, 6, 4))
    store.record_stats(rec.msgId, "worker-1:batch-1", PushGrid.StatsDelta(10, 6, 4))  # a retry
    store.record_stats(rec.msgId, "worker-2:batch-1", PushGrid.StatsDelta(5, 5, 0))
    assert stats_of(store, creds.appKey, rec.msgId) == PushGrid.MessageStats(rec.msgId, 15, 11, 4, 0, State.Accepted)
    with pytest.raises(PushGrid.UnknownMessage):
        store.record_stats(new_msg_id(), "b", PushGrid.StatsDelta(1, 1, 0))


def test_receipts_of_many_messages_count_once_each_in_one_call(servant, store):
    creds, other = new_app(store), new_app(store)
    a, b = record(creds.appKey), record(creds.appKey)
    servant.recordMessages(creds.appKey, [a, b])
    r = PushGrid.Receipts
    batch = [
        r(creds.appKey, a.msgId, ["aaa", "bbb", "aaa"]),
        r(creds.appKey, b.msgId, ["aaa"]),
        r(other.appKey, a.msgId, ["zzz"]),  # another app's devices cannot ack it: skipped
        r(creds.appKey, 12345, ["aaa"]),  # unknown: skipped
    ]
    assert servant.recordReceiptsMany(batch) == 3
    assert servant.recordReceiptsMany(batch) == 0  # a replayed batch adds nothing
    assert [stats_of(store, creds.appKey, m.msgId).received for m in (a, b)] == [2, 1]
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordReceiptsMany([r(creds.appKey, a.msgId, ["no spaces"])])
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordReceiptsMany([r(creds.appKey, a.msgId, ["x"] * (limits.RECEIPTS_PER_CALL + 1))])


def test_record_receipts_counts_each_device_once(store):
    creds = new_app(store)
    rec = record(creds.appKey)
    store.record_message(rec)
    assert store.record_receipts(creds.appKey, rec.msgId, ["aaa", "bbb", "ccc"]) == 3
    assert store.record_receipts(creds.appKey, rec.msgId, ["bbb", "ccc", "ddd"]) == 1
    many = [f"r{i:05d}" for i in range(2500)]  # more than one INSERT chunk
    assert store.record_receipts(creds.appKey, rec.msgId, many) == 2500
    assert store.record_receipts(creds.appKey, rec.msgId, many) == 0
    assert stats_of(store, creds.appKey, rec.msgId).received == 2504
    with pytest.raises(PushGrid.UnknownMessage):
        store.record_receipts(creds.appKey, new_msg_id(), ["aaa"])
    other = new_app(store)
    with pytest.raises(PushGrid.UnknownMessage):  # another app's devices cannot ack this message
        store.record_receipts(other.appKey, rec.msgId, ["zzz"])
    assert stats_of(store, creds.appKey, rec.msgId).received == 2504


def test_timed_receipts_land_in_the_bucket_of_their_time_and_count_once(servant, store):
    creds = new_app(store)
    rec = record(creds.appKey, send_at=now_ms() - 7_200_000)  # sent two hours ago
    store.record_message(rec)
    at, t = rec.sendAt, PushGrid.TimedReceipts
    batch = [
        t(creds.appKey, rec.msgId, ["a1", "a2"], at + 400),  # +0s
        t(creds.appKey, rec.msgId, ["b1"], at - 5000),  # stamped before the send: +0s
        t(creds.appKey, rec.msgId, ["c1"], at + 299_999),  # +299s
        t(creds.appKey, rec.msgId, ["d1", "d2"], at + 300_000),  # +5m
        t(creds.appKey, rec.msgId, ["e1"], at + 3_599_999),  # +59m
        t(creds.appKey, rec.msgId, ["f1"], at + 3_600_000),  # +1h
        t(creds.appKey, rec.msgId, ["a1"], at + 9_000_000),  # a1 again: counted already, at +0s
    ]
    assert servant.recordTimedReceipts(batch) == 8
    expected = [
        PushGrid.CurvePoint(offsetSeconds=0, widthSeconds=1, received=3),
        PushGrid.CurvePoint(offsetSeconds=299, widthSeconds=1, received=1),
        PushGrid.CurvePoint(offsetSeconds=300, widthSeconds=60, received=2),
        PushGrid.CurvePoint(offsetSeconds=3540, widthSeconds=60, received=1),
        PushGrid.CurvePoint(offsetSeconds=3600, widthSeconds=3600, received=1),
    ]
    assert servant.getCurve(creds.appKey, rec.msgId) == expected
    assert servant.recordTimedReceipts(batch) == 0  # a replayed Kafka record adds nothing
    later = [t(creds.appKey, rec.msgId, ["a2", "c1"], at + 3_700_000)]  # the same devices, read later
    assert servant.recordTimedReceipts(later) == 0
    assert servant.getCurve(creds.appKey, rec.msgId) == expected
    assert stats_of(store, creds.appKey, rec.msgId).received == 8 == sum(p.received for p in expected)
    # receipts an older dispatcher records (recordReceiptsMany) count on the curve as received now
    assert servant.recordReceiptsMany([PushGrid.Receipts(creds.appKey, rec.msgId, ["g1"])]) == 1
    assert servant.getCurve(creds.appKey, rec.msgId)[-1] == PushGrid.CurvePoint(7200, 3600, 1)


def test_a_curve_is_only_the_apps_own_messages(servant, store):
    creds, other = new_app(store), new_app(store)
    rec = record(creds.appKey)
    store.record_message(rec)
    assert servant.getCurve(creds.appKey, rec.msgId) == []  # no receipt yet
    other_batch = [PushGrid.TimedReceipts(other.appKey, rec.msgId, ["zzz"], rec.sendAt + 1000)]
    assert servant.recordTimedReceipts(other_batch) == 0  # another app's devices cannot ack it
    assert servant.getCurve(creds.appKey, rec.msgId) == []
    for app_key, msg_id in ((other.appKey, rec.msgId), (creds.appKey, new_msg_id())):
        with pytest.raises(PushGrid.UnknownMessage) as err:
            servant.getCurve(app_key, msg_id)
        assert err.value.msgId == msg_id and err.value.reason


def test_get_stats_shows_only_the_apps_own_messages(store):
    creds, other = new_app(store), new_app(store)
    mine, theirs = record(creds.appKey), record(other.appKey)
    store.record_message(mine)
    store.record_message(theirs)
    store.record_receipts(other.appKey, theirs.msgId, ["xyz"])
    missing = new_msg_id()
    stats = store.get_stats(creds.appKey, [theirs.msgId, missing, mine.msgId])
    assert [s.msgId for s in stats] == [mine.msgId]
    assert store.get_stats(creds.appKey, []) == []


# ---------------------------------------------------------------- bad input through the servant


@pytest.fixture(scope="module")
def known(store):
    """An app with a device and a message, so bad-input calls name things that exist."""
    creds = new_app(store)
    dev = store.register_device(creds.appKey, PushGrid.Platform.Android)
    rec = record(creds.appKey)
    store.record_message(rec)
    return creds.appKey, dev.registrationId, rec.msgId


def _bad_record(app_key: str, **change) -> PushGrid.MessageRecord:
    rec = record(app_key)
    for name, value in change.items():
        setattr(rec, name, value)
    return rec


BAD_CALLS = [
    ("createApp empty name", lambda s, k, r, m: s.createApp("", 10), PushGrid.InvalidArgument),
    ("createApp long name", lambda s, k, r, m: s.createApp("n" * 101, 10), PushGrid.InvalidArgument),
    (
        "createApp quota",
        lambda s, k, r, m: s.createApp(app_name(), limits.PUSH_QUOTA_MAX + 1),
        PushGrid.InvalidArgument,
    ),
    ("createApp negative quota", lambda s, k, r, m: s.createApp(app_name(), -1), PushGrid.InvalidArgument),
    ("getApp malformed", lambda s, k, r, m: s.getApp("nothex"), PushGrid.UnknownApp),
    (
        "verifyApp malformed",
        lambda s, k, r, m: s.verifyApp("X" * 24, "secret").result(5),
        PushGrid.AuthenticationFailed,
    ),
    ("verifyApp wrong", lambda s, k, r, m: s.verifyApp(k, "wrong").result(5), PushGrid.AuthenticationFailed),
    ("rotateSecret malformed", lambda s, k, r, m: s.rotateSecret(""), PushGrid.UnknownApp),
    ("setQuota zero", lambda s, k, r, m: s.setQuota(k, 0), PushGrid.InvalidArgument),
    ("setQuota malformed", lambda s, k, r, m: s.setQuota("abc", 5), PushGrid.InvalidArgument),
    ("setQuota unknown", lambda s, k, r, m: s.setQuota("0" * 24, 5), PushGrid.UnknownApp),
    ("setAppEnabled malformed", lambda s, k, r, m: s.setAppEnabled(None, True), PushGrid.UnknownApp),
    (
        "registerDevice malformed",
        lambda s, k, r, m: s.registerDevice(k.upper(), PushGrid.Platform.Ios),
        PushGrid.UnknownApp,
    ),
    ("verifyDevice bad regid", lambda s, k, r, m: s.verifyDevice(k, "no spaces", "t"), PushGrid.AuthenticationFailed),
    ("verifyDevice huge token", lambda s, k, r, m: s.verifyDevice(k, r, "t" * 5000), PushGrid.AuthenticationFailed),
    ("getDevice bad regid", lambda s, k, r, m: s.getDevice(k, "r" * 65), PushGrid.InvalidArgument),
    ("getDevice unknown", lambda s, k, r, m: s.getDevice(k, "unknown1"), PushGrid.UnknownDevice),
    ("touchDevices bad regid", lambda s, k, r, m: s.touchDevices(k, [r, "bad-id"], 1), PushGrid.InvalidArgument),
    ("touchDevices too many", lambda s, k, r, m: s.touchDevices(k, ["a"] * 10001, 1), PushGrid.InvalidArgument),
    ("touchDevices seenAt", lambda s, k, r, m: s.touchDevices(k, [r], 0), PushGrid.InvalidArgument),
    ("unregisterDevice bad key", lambda s, k, r, m: s.unregisterDevice("k", r), PushGrid.InvalidArgument),
    ("deviceCount malformed", lambda s, k, r, m: s.deviceCount("zz"), PushGrid.UnknownApp),
    ("recordMessage no record", lambda s, k, r, m: s.recordMessage(None), PushGrid.InvalidArgument),
    ("recordMessage msgId", lambda s, k, r, m: s.recordMessage(_bad_record(k, msgId=0)), PushGrid.InvalidArgument),
    (
        "recordMessage state",
        lambda s, k, r, m: s.recordMessage(_bad_record(k, state=State.Done)),
        PushGrid.InvalidArgument,
    ),
    ("recordMessage expiry", lambda s, k, r, m: s.recordMessage(_bad_record(k, expiresAt=1)), PushGrid.InvalidArgument),
    (
        "recordMessage audience",
        lambda s, k, r, m: s.recordMessage(
            _bad_record(k, request=PushGrid.PushRequest(audience=PushGrid.Audience(all=False)))
        ),
        PushGrid.InvalidArgument,
    ),
    ("recordMessage dup", lambda s, k, r, m: s.recordMessage(_bad_record(k, msgId=m)), PushGrid.AlreadyExists),
    ("getMessage msgId", lambda s, k, r, m: s.getMessage(k, -1), PushGrid.UnknownMessage),
    ("getMessage unknown", lambda s, k, r, m: s.getMessage(k, new_msg_id()), PushGrid.UnknownMessage),
    (
        "transitionMessage malformed",
        lambda s, k, r, m: s.transitionMessage("x", m, State.Accepted, State.Dispatching),
        PushGrid.UnknownMessage,
    ),
    (
        "transitionMessage not a lifecycle move",
        lambda s, k, r, m: s.transitionMessage(k, m, State.Done, State.Accepted),
        PushGrid.InvalidState,
    ),
    (
        "recordStats msgId",
        lambda s, k, r, m: s.recordStats(0, "b", PushGrid.StatsDelta(1, 1, 1)),
        PushGrid.InvalidArgument,
    ),
    (
        "recordStats batchKey",
        lambda s, k, r, m: s.recordStats(m, "", PushGrid.StatsDelta(1, 1, 1)),
        PushGrid.InvalidArgument,
    ),
    (
        "recordStats long batchKey",
        lambda s, k, r, m: s.recordStats(m, "b" * 129, PushGrid.StatsDelta(1, 1, 1)),
        PushGrid.InvalidArgument,
    ),
    (
        "recordStats negative",
        lambda s, k, r, m: s.recordStats(m, "b", PushGrid.StatsDelta(1, -1, 1)),
        PushGrid.InvalidArgument,
    ),
    (
        "recordStats unknown",
        lambda s, k, r, m: s.recordStats(new_msg_id(), "b", PushGrid.StatsDelta(1, 1, 1)),
        PushGrid.UnknownMessage,
    ),
    ("recordReceipts too many", lambda s, k, r, m: s.recordReceipts(k, m, ["a"] * 10001), PushGrid.InvalidArgument),
    ("recordReceipts bad regid", lambda s, k, r, m: s.recordReceipts(k, m, ["ok", "not ok"]), PushGrid.InvalidArgument),
    ("getStats too many", lambda s, k, r, m: s.getStats(k, list(range(1, 102))), PushGrid.InvalidArgument),
    ("getStats msgId", lambda s, k, r, m: s.getStats(k, [m, 0]), PushGrid.InvalidArgument),
    ("getStats malformed", lambda s, k, r, m: s.getStats("", [m]), PushGrid.InvalidArgument),
]


@pytest.mark.parametrize("call,error", [(c, e) for _, c, e in BAD_CALLS], ids=[n for n, _, _ in BAD_CALLS])
def test_bad_input_is_a_named_error(servant, known, call, error):
    app_key, reg_id, msg_id = known
    with pytest.raises(error) as err:
        call(servant, app_key, reg_id, msg_id)
    assert err.value.reason


def test_bad_input_changes_nothing(store, servant, known):
    app_key, reg_id, msg_id = known
    before = stats_of(store, app_key, msg_id)
    with pytest.raises(PushGrid.InvalidArgument):
        servant.recordReceipts(app_key, msg_id, ["fine1", "fine2", "not fine"])
    assert stats_of(store, app_key, msg_id) == before


# ---------------------------------------------------------------- MySQL down


def _assert_unavailable_soon(settings, seconds: float) -> None:
    dead = Store(settings)
    try:
        for call in (
            lambda: dead.get_app("a" * 24),
            lambda: dead.create_app(app_name(), 5),
            lambda: dead.verify_app("a" * 24, "secret"),
        ):
            started = time.monotonic()
            with pytest.raises(PushGrid.Unavailable) as err:
                call()
            assert time.monotonic() - started < seconds
            assert err.value.backend == "mysql" and err.value.reason
    finally:
        dead.close()


def test_closed_port_is_unavailable_at_once(mysql_settings):
    port = free_port()
    settings = dataclasses.replace(mysql_settings, port=port, read_port=port, connect_timeout=2)
    _assert_unavailable_soon(settings, seconds=2)


def test_silent_server_is_unavailable_within_the_timeout(mysql_settings):
    """A listener that never sends the MySQL greeting: connect succeeds, the handshake never ends.

    pymysql waits for the greeting with the read timeout, so the bound is the query timeout.
    """
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        settings = dataclasses.replace(mysql_settings, port=port, read_port=port, connect_timeout=1, query_timeout=2)
        _assert_unavailable_soon(settings, seconds=4)


def test_exhausted_pool_is_unavailable(mysql_settings):
    small = Store(dataclasses.replace(mysql_settings, pool_size=1))
    try:
        with small._write.connection():  # the only connection, held by someone else
            started = time.monotonic()
            with pytest.raises(PushGrid.Unavailable):
                small.list_apps()
            assert time.monotonic() - started < 5
        small.list_apps()  # free again
    finally:
        small.close()
