"""Receipts grouping (with STC's times) and recording, and the scheduler's publish-then-transition order."""

from __future__ import annotations

import threading

import Ice
import pytest

from services.common import kafka_client, limits
from services.common.config import KafkaSettings
from services.common.contract import PushGrid
from services.dispatcher import receipts
from services.dispatcher.scheduler import Scheduler
from services.stc.receipts import KafkaReceipts
from tests.unit.fakes import APP
from tests.unit.push_fakes import FakeDB, FakePublisher, S, request

NOW = 1_800_000_000_000  # the consumer's clock
SENT = 1_799_999_990_000  # a message's send time, 10 s before


def test_group_acks_reads_stcs_grouped_records_and_skips_garbage() -> None:
    values = [
        {"app": APP, "receipts": [[1, ["r1", "r2"]], [2, ["r1"]], [1, ["r1", "bad id!"]]]},
        {"app": APP, "receipts": [["1", ["r3"]], [True, ["r4"]], [0, ["r5"]], [3], "x", [4, "r6"]]},
        {"app": "not-an-app", "receipts": [[5, ["r1"]]]},
        {"receipts": [[6, ["r1"]]]},  # no app
    ]
    assert receipts.group_acks(values, NOW) == {(APP, 1, NOW): ["r1", "r2"], (APP, 2, NOW): ["r1"]}


def test_group_acks_by_msg_id_once_each_skipping_garbage() -> None:
    """The one-row-per-ack records older STCs write still count (a rolling upgrade has both)."""
    values = [
        {"acks": [[1, APP, "r1"], [1, APP, "r2"], [2, APP, "r1"], [1, APP, "r1"]]},
        {"acks": [[3, APP, "bad id!"], ["1", APP, "r3"], [True, APP, "r4"], [4, APP], "x", [0, APP, "r5"]]},
        {"acks": "nope"},
        None,
        [1, 2],
        {"other": 1},
    ]
    assert receipts.group_acks(values, NOW) == {(APP, 1, NOW): ["r1", "r2"], (APP, 2, NOW): ["r1"]}
    assert receipts.group_acks([{"acks": [[1, "not-an-app", "r1"]]}], NOW) == {}


def test_group_acks_times_receipts_by_the_records_at_and_each_receipt_by_its_first() -> None:
    values = [
        {"app": APP, "receipts": [[1, ["r1", "r2"]]], "at": SENT + 1000},
        {"app": APP, "receipts": [[1, ["r2", "r3"]], [2, ["r1"]]], "at": SENT + 400_000},
        {"app": APP, "receipts": [[1, ["r3"]]], "at": SENT + 2000},  # read later, published earlier
    ]
    assert receipts.group_acks(values, NOW) == {
        (APP, 1, SENT + 1000): ["r1", "r2"],
        (APP, 1, SENT + 2000): ["r3"],
        (APP, 2, SENT + 400_000): ["r1"],
    }


def test_stc_stamps_each_record_with_when_it_published_it(monkeypatch) -> None:
    sent: list[tuple[str, str, dict]] = []

    class Producer:
        def send(self, topic, key, value):
            sent.append((topic, key, value))
            return self

        def add_errback(self, fn):
            return self

    monkeypatch.setattr(kafka_client, "producer", lambda settings, client_id: Producer())
    stc = KafkaReceipts(KafkaSettings("b:9092", "tasks", "receipts"), "STC-1", clock=lambda: SENT + 1500)
    stc.publish(APP, [[1, ["r1", "r2"]]])
    assert sent == [("receipts", APP, {"app": APP, "receipts": [[1, ["r1", "r2"]]], "at": SENT + 1500})]
    assert receipts.group_acks([v for _, _, v in sent], NOW) == {(APP, 1, SENT + 1500): ["r1", "r2"]}


@pytest.mark.parametrize("at", [None, "1799999991000", 1.5e12, True, 0, -5, 2**63, [1]])
def test_a_record_without_a_usable_at_is_timed_by_the_consumers_clock(at) -> None:
    """An older STC (a rolling upgrade) writes no "at"; a broken one is read the same way."""
    value = {"app": APP, "receipts": [[1, ["r1"]]]}
    if at is not None:
        value["at"] = at
    assert receipts.group_acks([value], NOW) == {(APP, 1, NOW): ["r1"]}


def test_record_counts_each_receipt_on_the_curve_in_the_bucket_of_its_time() -> None:
    db = FakeDB()
    db.add(1, request(), send_at=SENT)
    values = [
        {"app": APP, "receipts": [[1, ["r1", "r2"]]], "at": SENT + 1500},
        {"app": APP, "receipts": [[1, ["r3"]]], "at": SENT + 360_000},
        {"app": APP, "receipts": [[1, ["r4"]]]},  # an older STC: read now, 10 s after the send
    ]
    assert receipts.record(db, receipts.group_acks(values, NOW)) == 4
    assert db.calls == ["recordTimedReceipts"]
    assert [(p.offsetSeconds, p.widthSeconds, p.received) for p in db.getCurve(APP, 1)] == [
        (1, 1, 2),
        (10, 1, 1),
        (360, 60, 1),
    ]
    assert receipts.record(db, receipts.group_acks(values, NOW + 5000)) == 0  # read again: nothing new
    assert sum(p.received for p in db.getCurve(APP, 1)) == 4


def test_an_older_dbagent_gets_the_batch_untimed_with_record_receipts_many() -> None:
    db = FakeDB()
    db.add(1, request(), send_at=SENT)
    db.add(2, request(), send_at=SENT)
    db.before_curves = True  # recordTimedReceipts is OperationNotExistException there
    values = [
        {"app": APP, "receipts": [[1, ["r1"]], [2, ["r1"]]], "at": SENT + 1000},
        {"app": APP, "receipts": [[1, ["r2"]]], "at": SENT + 2000},
    ]
    assert receipts.record(db, receipts.group_acks(values, NOW)) == 3
    assert db.calls == ["recordReceiptsMany"]  # the same call's receipts, one group per message
    assert db.receipts == {(1, "r1"), (1, "r2"), (2, "r1")}


def test_other_ice_errors_are_not_taken_for_an_older_dbagent() -> None:
    class Down(FakeDB):
        def recordTimedReceipts(self, groups):
            raise Ice.ConnectionRefusedException()

    db = Down()
    db.add(1, request(), send_at=SENT)
    with pytest.raises(Ice.ConnectionRefusedException):  # the worker reads the batch again later
        receipts.record(db, receipts.group_acks([{"app": APP, "receipts": [[1, ["r1"]]]}], NOW))
    assert db.calls == [] and db.receipts == set()


def test_record_skips_unknown_messages_and_chunks(monkeypatch) -> None:
    db = FakeDB()
    db.add(1, request())
    monkeypatch.setattr(limits, "RECEIPTS_PER_CALL", 2)
    other = "f" * 24
    assert receipts.record(db, {(APP, 99, NOW): ["a"], (other, 1, NOW): ["a"], (APP, 1, NOW): ["a", "b", "c"]}) == 3
    assert db.calls == ["recordTimedReceipts"] * 3  # 99 and another app's (both skipped), then 1 in two chunks
    assert receipts.record(db, {(APP, 1, NOW): ["a", "b", "c"]}) == 0  # a replayed batch adds nothing


def test_scheduler_publishes_due_messages_then_accepts_them() -> None:
    db, publisher = FakeDB(), FakePublisher()
    db.add(1, request(), state=S.Scheduled, send_at=900)
    db.add(2, request(), state=S.Scheduled, send_at=5000)
    db.add(3, request(), state=S.Cancelled, send_at=900)
    sched = Scheduler(db, publisher, threading.Event(), clock=lambda: 1000)
    assert sched.scan() == 1
    assert [t.msg_id for t in publisher.tasks] == [1]
    assert db.messages[1].state == S.Accepted and db.messages[2].state == S.Scheduled


def test_scheduler_leaves_the_message_scheduled_when_kafka_is_down() -> None:
    db, publisher = FakeDB(), FakePublisher()
    db.add(1, request(), state=S.Scheduled, send_at=900)
    publisher.down = True
    sched = Scheduler(db, publisher, threading.Event(), clock=lambda: 1000)
    try:
        sched.scan()
    except PushGrid.Unavailable:
        pass
    assert db.messages[1].state == S.Scheduled  # published on a later scan


def test_scheduled_override_takes_effect_when_the_scheduler_accepts_it() -> None:
    db, publisher, now = FakeDB(), FakePublisher(), [500]
    db.add(1, request(), state=S.Done)
    db.add(2, request(overrideMsgId=1), state=S.Scheduled, send_at=900)
    sched = Scheduler(db, publisher, threading.Event(), clock=lambda: now[0])
    assert sched.scan() == 0 and db.messages[1].state == S.Done  # not due: the old one stays
    now[0] = 1000
    assert sched.scan() == 1
    assert db.messages[2].state == S.Accepted and db.messages[1].state == S.Overridden
