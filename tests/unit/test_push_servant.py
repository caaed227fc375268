"""PushServiceI over fakes: what is recorded and published, in which order, and what is refused."""

from __future__ import annotations

import pytest

from services.common import limits
from services.common.contract import PushGrid
from services.common.msgid import MsgIdGenerator
from services.push.quota import Quota
from services.push.servant import PushServiceI
from tests.unit.fakes import APP, sample
from tests.unit.push_fakes import FakeDB, FakePublisher, S, request

NOW = 1_800_000_000_000


@pytest.fixture
def db() -> FakeDB:
    return FakeDB()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def servant(db: FakeDB, publisher: FakePublisher) -> PushServiceI:
    return PushServiceI(db, publisher, MsgIdGenerator(worker=1, clock=lambda: NOW), clock=lambda: NOW)


def test_push_records_publishes_and_answers(servant, db, publisher) -> None:
    res = servant.push(APP, request(sendno=42, timeToLive=60))
    assert res.sendno == 42
    rec = db.messages[res.msgId]
    assert rec.state == S.Accepted and rec.sendAt == NOW and rec.expiresAt == NOW + 60_000
    [task] = publisher.tasks
    assert (task.msg_id, task.app_key, task.expires_at) == (res.msgId, APP, NOW + 60_000)


def test_default_ttl_is_one_day_and_ttl_zero_expires_at_send(servant, db) -> None:
    a = servant.push(APP, request())
    b = servant.push(APP, request(timeToLive=0))
    assert db.messages[a.msgId].expiresAt == NOW + limits.TTL_DEFAULT_SECONDS * 1000
    assert db.messages[b.msgId].expiresAt == NOW


def test_msg_ids_increase(servant) -> None:
    ids = [servant.push(APP, request()).msgId for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_bad_request_records_nothing(servant, db, publisher) -> None:
    rejected = sample("pushgrid_push_rejected_total", error="InvalidArgument")
    with pytest.raises(PushGrid.InvalidArgument):
        servant.push(APP, request(timeToLive=-7))
    with pytest.raises(PushGrid.InvalidArgument) as e:
        servant.push("not-a-key", request())
    assert e.value.field == "appKey"
    assert sample("pushgrid_push_rejected_total", error="InvalidArgument") == rejected + 2
    assert db.calls == [] and publisher.tasks == []


def test_unknown_or_disabled_app(servant, db, publisher) -> None:
    with pytest.raises(PushGrid.UnknownApp):
        servant.push("f" * 24, request())
    db.apps[APP].enabled = False
    with pytest.raises(PushGrid.UnknownApp):
        servant.validate(APP, request())
    assert not db.messages and not publisher.tasks


def test_validate_checks_without_recording(servant, db, publisher) -> None:
    servant.validate(APP, request())
    with pytest.raises(PushGrid.InvalidArgument) as e:
        servant.validate(APP, request(overrideMsgId=999))
    assert e.value.field == "options.overrideMsgId"
    assert not db.messages and not publisher.tasks


def test_kafka_down_cancels_the_message(servant, db, publisher) -> None:
    publisher.down = True
    with pytest.raises(PushGrid.Unavailable) as e:
        servant.push(APP, request())
    assert e.value.backend == "kafka"
    [rec] = db.messages.values()
    assert rec.state == S.Cancelled


def test_override_marks_the_old_message_after_accepting(servant, db, publisher) -> None:
    old = servant.push(APP, request()).msgId
    db.messages[old].state = S.Done
    new = servant.push(APP, request(overrideMsgId=old)).msgId
    assert db.messages[old].state == S.Overridden and db.messages[new].state == S.Accepted
    other = db.add(5, request(), state=S.Done)
    other.appKey = "a" * 24
    with pytest.raises(PushGrid.InvalidArgument):  # another app's message cannot be overridden
        servant.push(APP, request(overrideMsgId=5))
    assert other.state == S.Done


def test_override_is_not_marked_when_publishing_fails(servant, db, publisher) -> None:
    old = servant.push(APP, request()).msgId
    publisher.down = True
    with pytest.raises(PushGrid.Unavailable):
        servant.push(APP, request(overrideMsgId=old))
    assert db.messages[old].state == S.Accepted


def test_a_push_is_answered_when_dbagent_cannot_apply_its_override(servant, db) -> None:
    old = servant.push(APP, request()).msgId
    db.fail_on = "applyOverride"
    new = servant.push(APP, request(overrideMsgId=old)).msgId  # its task is out: the push stands
    assert db.messages[new].state == S.Accepted and db.messages[old].state == S.Accepted


def test_scheduled_override_leaves_the_old_message_until_it_goes_out(servant, db) -> None:
    old = servant.push(APP, request()).msgId
    new = servant.schedule(APP, request(overrideMsgId=old), NOW + 5000).msgId
    assert db.messages[old].state == S.Accepted
    servant.cancel(APP, new)  # a cancelled override never takes effect
    assert db.messages[old].state == S.Accepted


def test_schedule_records_scheduled_without_a_task(servant, db, publisher) -> None:
    res = servant.schedule(APP, request(timeToLive=10), NOW + 5000)
    rec = db.messages[res.msgId]
    assert rec.state == S.Scheduled and rec.sendAt == NOW + 5000 and rec.expiresAt == NOW + 15_000
    assert publisher.tasks == []
    with pytest.raises(PushGrid.InvalidArgument) as e:
        servant.schedule(APP, request(), NOW)
    assert e.value.field == "sendAt"


def test_cancel_only_scheduled(servant, db) -> None:
    sched = servant.schedule(APP, request(), NOW + 5000).msgId
    servant.cancel(APP, sched)
    assert db.messages[sched].state == S.Cancelled
    with pytest.raises(PushGrid.InvalidState) as e:
        servant.cancel(APP, sched)
    assert e.value.msgId == sched
    sent = servant.push(APP, request()).msgId
    with pytest.raises(PushGrid.InvalidState):
        servant.cancel(APP, sent)
    with pytest.raises(PushGrid.UnknownMessage):
        servant.cancel(APP, 12345)


def test_report_is_scoped_to_the_app(servant, db) -> None:
    mine = servant.push(APP, request()).msgId
    theirs = db.add(77, request())
    theirs.appKey = "b" * 24
    assert [s.msgId for s in servant.report(APP, [mine, 77])] == [mine]


def test_report_curve_is_the_apps_messages_receipts_over_time(servant, db) -> None:
    mine = servant.push(APP, request()).msgId
    sent = db.messages[mine].sendAt
    db.recordTimedReceipts([PushGrid.TimedReceipts(APP, mine, ["r1", "r2"], sent + 2500)])
    db.recordTimedReceipts([PushGrid.TimedReceipts(APP, mine, ["r3"], sent + 4_000_000)])
    assert servant.reportCurve(APP, mine) == [
        PushGrid.CurvePoint(offsetSeconds=2, widthSeconds=1, received=2),
        PushGrid.CurvePoint(offsetSeconds=3600, widthSeconds=3600, received=1),
    ]
    with pytest.raises(PushGrid.UnknownMessage):
        servant.reportCurve("b" * 24, mine)  # another app's message
    db.fail_on = "getCurve"
    with pytest.raises(PushGrid.Unavailable):
        servant.reportCurve(APP, mine)


def test_backend_down_is_unavailable(servant, db) -> None:
    db.fail_on = "recordMessage"
    with pytest.raises(PushGrid.Unavailable):
        servant.push(APP, request())


def test_taken_msg_id_draws_another(servant, db, publisher) -> None:
    first = servant.push(APP, request()).msgId
    db.messages[first + 1] = db.messages[first]  # the next id is taken (a restart after the clock went back)
    second = servant.push(APP, request()).msgId
    assert second == first + 2 and len(publisher.tasks) == 2


class FakeRedis:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def pipeline(self, transaction: bool = False) -> FakeRedis:
        self._ops: list[str] = []
        return self

    def __enter__(self) -> FakeRedis:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def incr(self, key: str, amount: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount
        self._ops.append(key)

    def pexpire(self, key: str, ms: int) -> None:
        pass

    def execute(self) -> list[int]:
        return [self.counts[self._ops[0]]]


def test_quota_per_minute(db, publisher) -> None:
    clock = [NOW - NOW % 60_000]
    redis = FakeRedis()
    servant = PushServiceI(
        db, publisher, MsgIdGenerator(worker=1), Quota(lambda: redis, lambda: clock[0]), clock=lambda: clock[0]
    )
    db.apps[APP].pushQuotaPerMinute = 3
    accepted, limited = (
        sample("pushgrid_push_accepted_total", operation="push"),
        sample("pushgrid_push_rate_limited_total"),
    )
    for _ in range(3):
        servant.push(APP, request())
    with pytest.raises(PushGrid.RateLimited) as e:
        servant.push(APP, request())
    assert sample("pushgrid_push_accepted_total", operation="push") == accepted + 3
    assert sample("pushgrid_push_rate_limited_total") == limited + 1
    assert e.value.retryAfterMs == 60_000
    clock[0] += 60_000
    servant.push(APP, request())
    assert len(publisher.tasks) == 4


def test_push_batch_answers_each_push_in_order_with_one_record_call(servant, db, publisher) -> None:
    old = servant.push(APP, request()).msgId
    bad = request()
    bad.audience = PushGrid.Audience(all=False, registrationIds=[])  # an audience naming nobody
    batch = [request(sendno=1), bad, request(sendno=3, overrideMsgId=old), request(sendno=4, overrideMsgId=12345)]
    db.calls.clear()
    results = servant.pushBatch(APP, batch)
    assert [r.error for r in results] == ["", "InvalidArgument", "", "InvalidArgument"]
    assert "override_msg_id 12345" in results[3].reason and results[1].reason
    assert [r.sendno for r in results] == [1, 0, 3, 0] and results[1].msgId == results[3].msgId == 0
    assert db.calls.count("recordMessages") == 1 and "recordMessage" not in db.calls
    assert [t.msg_id for t in publisher.tasks[1:]] == [results[0].msgId, results[2].msgId]
    assert db.messages[old].state == S.Overridden  # the override took effect, as a single push's does
    for wrong in ([], [request()] * (limits.PUSH_BATCH_MAX + 1)):
        with pytest.raises(PushGrid.InvalidArgument):
            servant.pushBatch(APP, wrong)
    with pytest.raises(PushGrid.UnknownApp):
        servant.pushBatch("0" * 24, [request()])


def test_push_batch_fails_alone_what_the_broker_or_the_quota_refuses(db, publisher) -> None:
    clock = [NOW - NOW % 60_000]
    servant = PushServiceI(
        db, publisher, MsgIdGenerator(worker=1), Quota(lambda: FakeRedis(), lambda: clock[0]), clock=lambda: clock[0]
    )
    db.apps[APP].pushQuotaPerMinute = 2
    accepted, limited = (
        sample("pushgrid_push_accepted_total", operation="pushBatch"),
        sample("pushgrid_push_rate_limited_total"),
    )
    results = servant.pushBatch(APP, [request(sendno=n) for n in range(4)])
    assert [r.error for r in results] == ["", "", "RateLimited", "RateLimited"]
    assert sample("pushgrid_push_accepted_total", operation="pushBatch") == accepted + 2
    assert sample("pushgrid_push_rate_limited_total") == limited + 2
    assert len(publisher.tasks) == 2
    clock[0] += 60_000
    publisher.down = True
    results = servant.pushBatch(APP, [request()])
    assert results[0].error == "Unavailable" and results[0].msgId == 0
    assert [m.state for m in db.messages.values()].count(S.Cancelled) == 1  # recorded, never sent


def test_push_batch_draws_fresh_ids_for_taken_ones(servant, db, publisher) -> None:
    first = servant.push(APP, request()).msgId
    db.messages[first + 1] = db.messages[first]  # the next id is taken (a restart after the clock went back)
    results = servant.pushBatch(APP, [request(), request()])
    assert [r.error for r in results] == ["", ""]
    assert first + 1 not in [r.msgId for r in results] and len({r.msgId for r in results}) == 2
    assert [t.msg_id for t in publisher.tasks[1:]] == [r.msgId for r in results]
