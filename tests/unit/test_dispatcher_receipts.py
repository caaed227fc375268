"""Receipts grouping and recording, and the scheduler's publish-then-transition order."""

from __future__ import annotations

import threading

from services.common import limits
from services.common.contract import PushGrid
from services.dispatcher import receipts
from services.dispatcher.scheduler import Scheduler
from tests.unit.fakes import APP
from tests.unit.push_fakes import FakeDB, FakePublisher, S, request


def test_group_acks_reads_stcs_grouped_records_and_skips_garbage() -> None:
    values = [
        {"app": APP, "receipts": [[1, ["r1", "r2"]], [2, ["r1"]], [1, ["r1", "bad id!"]]]},
        {"app": APP, "receipts": [["1", ["r3"]], [True, ["r4"]], [0, ["r5"]], [3], "x", [4, "r6"]]},
        {"app": "not-an-app", "receipts": [[5, ["r1"]]]},
        {"receipts": [[6, ["r1"]]]},  # no app
    ]
    assert receipts.group_acks(values) == {(APP, 1): ["r1", "r2"], (APP, 2): ["r1"]}


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
    assert receipts.group_acks(values) == {(APP, 1): ["r1", "r2"], (APP, 2): ["r1"]}
    assert receipts.group_acks([{"acks": [[1, "not-an-app", "r1"]]}]) == {}


def test_record_skips_unknown_messages_and_chunks(monkeypatch) -> None:
    db = FakeDB()
    db.add(1, request())
    monkeypatch.setattr(limits, "RECEIPTS_PER_CALL", 2)
    other = "f" * 24
    assert receipts.record(db, {(APP, 99): ["a"], (other, 1): ["a"], (APP, 1): ["a", "b", "c"]}) == 3
    assert db.calls == ["recordReceiptsMany"] * 3  # 99 and another app's (both skipped), then 1 in two chunks
    assert receipts.record(db, {(APP, 1): ["a", "b", "c"]}) == 0  # a replayed batch adds nothing


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
