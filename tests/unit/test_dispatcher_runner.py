"""TaskRunner over fakes: pages, stats once per page, checkpoint resume, skips, TTL 0, broadcasts,
and the Outcome each run ends with."""

from __future__ import annotations

import threading

import pytest

from services.common.contract import PushGrid
from services.common.tasks import Task
from services.dispatcher.runner import (
    ALREADY_DONE,
    DONE,
    NOT_DUE,
    SKIPPED_EXPIRED,
    STOPPED_EXPIRED,
    Interrupted,
    TaskRunner,
    skipped,
    stopped,
)
from tests.unit.fakes import APP, FakeMailbox
from tests.unit.push_fakes import FakeDB, FakeDelivery, FakeTagAlias, S, request

DEVICES = [f"d{i:02d}" for i in range(25)]
ONLINE = {"d00": "STC-a", "d05": "STC-b", "d20": "STC-a"}


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def world():
    db, mailbox, clock = FakeDB(), FakeMailbox(ONLINE), Clock()
    tags = FakeTagAlias({"t": DEVICES})
    delivery = FakeDelivery(mailbox, broadcast_sent=4)
    runner = TaskRunner(db, tags, mailbox, delivery, clock=clock, page_size=10)
    return db, tags, mailbox, delivery, runner, clock


def _task(db: FakeDB, msg_id: int = 100, **options) -> Task:
    rec = db.add(msg_id, request(**options), expires_at=10**13)
    return Task.from_record(rec)


def test_targeted_push_pages_counts_and_queues(world) -> None:
    db, tags, mailbox, delivery, runner, _ = world
    task = _task(db)
    assert runner.run(task, threading.Event()) == DONE
    assert db.messages[100].state == S.Done
    s = db.stats[100]
    assert (s.targets, s.sentOnline, s.storedOffline) == (25, 3, 22)
    assert {k for m, k in db.batches if m == 100} == {"page-0", "page-1", "page-2"}
    assert all(100 in mailbox.queues[d] for d in DEVICES)
    assert mailbox.messages[100].frame.startswith('{"op":"msg","msg_id":100')
    assert sorted(r for _, rids in delivery.delivered for r in rids) == sorted(ONLINE)
    assert mailbox.checkpoints[100]["done"] == "1"


def test_duplicate_task_is_skipped(world) -> None:
    db, _, _, delivery, runner, _ = world
    task = _task(db)
    runner.run(task, threading.Event())
    pages = len(delivery.delivered)
    assert runner.run(task, threading.Event()) == ALREADY_DONE
    assert len(delivery.delivered) == pages


def test_interrupted_task_resumes_without_double_counting(world) -> None:
    db, tags, mailbox, delivery, runner, _ = world
    task = _task(db)
    stop = threading.Event()
    delivery.after_deliver = lambda: stop.set() if len(delivery.delivered) == 2 else None
    with pytest.raises(Interrupted):
        runner.run(task, stop)
    assert db.messages[100].state == S.Dispatching
    assert mailbox.checkpoints[100]["page"] == "2"
    # the next owner: a crash after recordStats but before the checkpoint repeats page 1 at most
    mailbox.checkpoints[100].update(page="1", cursor="10", targets="10")
    delivery.after_deliver = lambda: None
    assert runner.run(task, threading.Event()) == DONE
    assert tags.resolved[-2:] == ["10", "20"]
    s = db.stats[100]
    assert (s.targets, s.sentOnline, s.storedOffline) == (25, 3, 22)


def test_skips_cancelled_overridden_and_expired(world) -> None:
    db, _, mailbox, delivery, runner, clock = world
    for msg_id, state in ((1, S.Cancelled), (2, S.Overridden), (3, S.Done)):
        task = _task(db, msg_id)
        db.messages[msg_id].state = state
        assert runner.run(task, threading.Event()) == skipped(state)
        assert mailbox.checkpoints[msg_id]["done"] == "1"  # final: a duplicate skips at once
    expired = Task(4, APP, request(timeToLive=10), 1000, clock.ms - 1)
    db.add(4, expired.request, expires_at=clock.ms - 1)
    assert runner.run(expired, threading.Event()) == SKIPPED_EXPIRED
    assert db.messages[4].state == S.Expired
    assert delivery.delivered == [] and mailbox.messages == {} and not db.stats


def test_outcomes_read_as_the_log_says() -> None:
    assert [str(o) for o in (DONE, ALREADY_DONE, skipped(S.Cancelled), stopped(S.Overridden), NOT_DUE)] == [
        "done",
        "already done",
        "skipped: Cancelled",
        "stopped: Overridden",
        "skipped: not due yet",
    ]


def test_scheduled_message_not_due_is_skipped_for_now(world) -> None:
    db, _, mailbox, delivery, runner, clock = world
    rec = db.add(5, request(), state=S.Scheduled, send_at=clock.ms + 60_000)
    assert runner.run(Task.from_record(rec), threading.Event()) == NOT_DUE
    assert db.messages[5].state == S.Scheduled and 5 not in mailbox.checkpoints  # not final
    clock.ms += 60_000  # due now: a task the scheduler published but did not accept is claimed straight
    assert runner.run(Task.from_record(rec), threading.Event()) == DONE


def test_expired_between_pages_stops(world) -> None:
    db, _, mailbox, delivery, runner, clock = world
    rec = db.add(6, request(timeToLive=10), expires_at=clock.ms + 10_000)
    delivery.after_deliver = lambda: setattr(clock, "ms", clock.ms + 10_000)
    assert runner.run(Task.from_record(rec), threading.Event()) == STOPPED_EXPIRED
    assert db.messages[6].state == S.Expired and len(delivery.delivered) == 1
    assert mailbox.checkpoints[6]["done"] == "1"


def test_ttl_zero_stores_nothing_and_is_not_expired(world) -> None:
    db, _, mailbox, delivery, runner, clock = world
    rec = db.add(9, request(timeToLive=0), send_at=clock.ms - 5000, expires_at=clock.ms - 5000)
    assert runner.run(Task.from_record(rec), threading.Event()) == DONE
    assert mailbox.messages == {} and not any(mailbox.queues.values())
    s = db.stats[9]
    assert (s.targets, s.sentOnline, s.storedOffline) == (25, 3, 0)
    env = delivery.delivered[0][0]
    assert env.expiresAt > clock.ms  # STC may still send it for a short grace


def test_override_forgets_the_old_message_and_asks_dbagent_to_end_it(world) -> None:
    db, _, mailbox, _, runner, _ = world
    runner.run(_task(db, 50), threading.Event())
    assert 50 in mailbox.messages
    runner.run(_task(db, 51, overrideMsgId=50), threading.Event())
    assert 50 not in mailbox.messages
    assert all(set(mailbox.queues[d]) == {51} for d in DEVICES)
    # had Push's applyOverride failed, the runner's own ask ends the old message
    assert db.messages[50].state == S.Overridden and "applyOverride" in db.calls


def test_scheduled_override_claimed_straight_from_scheduled_ends_the_old_message(world) -> None:
    db, _, mailbox, _, runner, clock = world
    runner.run(_task(db, 52), threading.Event())
    rec = db.add(53, request(overrideMsgId=52), state=S.Scheduled, send_at=clock.ms - 1)
    assert runner.run(Task.from_record(rec), threading.Event()) == DONE
    assert db.messages[52].state == S.Overridden  # DBAgent, as the new one left Scheduled
    assert 52 not in mailbox.messages


def test_overridden_while_dispatching_stops_between_pages(world) -> None:
    db, _, _, delivery, runner, _ = world
    task = _task(db)
    delivery.after_deliver = lambda: setattr(db.messages[100], "state", S.Overridden)
    assert runner.run(task, threading.Event()) == stopped(S.Overridden)
    assert len(delivery.delivered) == 1


def test_broadcast_logs_once_and_counts_devices(world) -> None:
    db, _, mailbox, delivery, runner, _ = world
    db.devices = 1000
    task = _task(db, 70, audience=PushGrid.Audience(all=True), bigPushDuration=2, platforms=[PushGrid.Platform.Ios])
    assert runner.run(task, threading.Event()) == DONE
    assert mailbox.broadcast_log[APP] == [70] and 70 in mailbox.messages
    env, platforms, spread = delivery.broadcasted[0]
    assert env.broadcast and platforms == [PushGrid.Platform.Ios] and spread == 120_000
    assert mailbox.messages[70].platforms == ("ios",)
    s = db.stats[70]
    assert (s.targets, s.sentOnline, s.storedOffline) == (1000, 4, 996)
    assert delivery.delivered == [] and not any(mailbox.queues.values())


def test_big_push_spreads_pages_and_keeps_its_schedule(world) -> None:
    db, _, mailbox, delivery, runner, clock = world
    task = _task(db, 80, bigPushDuration=1)
    sent_at: list[int] = []
    stop = threading.Event()

    def tick(seconds: float) -> bool:  # the runner's waits advance the fake clock instead of sleeping
        clock.ms += int(seconds * 1000)
        return stop.is_set()

    stop.wait = tick
    delivery.after_deliver = lambda: sent_at.append(clock.ms)
    start = clock.ms
    runner.run(task, stop)
    # 25 targets in pages of 10: pages go out at 0, 10/25 and 20/25 of the minute
    assert [t - start for t in sent_at] == [0, 24_000, 48_000]
    assert int(mailbox.checkpoints[80]["estimate"]) == 25 and int(mailbox.checkpoints[80]["started"]) == start


def test_resumed_big_push_keeps_the_original_start(world) -> None:
    db, _, mailbox, delivery, runner, clock = world
    task = _task(db, 81, bigPushDuration=1)
    start = clock.ms - 30_000  # a worker started it 30 s ago and sent page 0
    db.messages[81].state = S.Dispatching
    mailbox.checkpoints[81] = {"page": "1", "cursor": "10", "started": str(start), "estimate": "25", "targets": "10"}
    stop = threading.Event()
    stop.wait = lambda s: (setattr(clock, "ms", clock.ms + int(s * 1000)), False)[1]
    sent_at: list[int] = []
    delivery.after_deliver = lambda: sent_at.append(clock.ms - start)
    runner.run(task, stop)
    assert sent_at == [30_000, 48_000]  # page 1 was due at 24 s: at once; page 2 at 48 s as planned
    assert {k for m, k in db.batches if m == 81} == {"page-1", "page-2"}


# ---------------------------------------------------------------- run_batch


def _named(db: FakeDB, msg_id: int, rids: list[str], **options) -> Task:
    rec = db.add(msg_id, request(audience=PushGrid.Audience(registrationIds=rids), **options), expires_at=10**13)
    return Task.from_record(rec)


def test_a_batch_runs_each_step_once_for_all_its_tasks(world) -> None:
    db, _, mailbox, delivery, runner, _ = world
    tasks = [_named(db, 200 + k, [DEVICES[k], "d00"]) for k in range(1, 6)]
    db.calls.clear()
    assert runner.run_batch(tasks, threading.Event()) == [DONE] * 5
    assert sorted(db.calls) == sorted(["getMessages", "transitionMessages", "recordStatsMany", "transitionMessages"])
    assert delivery.calls == 1  # every message's devices in one deliver_many
    for t, k in zip(tasks, range(1, 6), strict=True):
        assert db.messages[t.msg_id].state == S.Done and mailbox.checkpoints[t.msg_id]["done"] == "1"
        assert t.msg_id in mailbox.queues[DEVICES[k]] and t.msg_id in mailbox.queues["d00"]
        s = db.stats[t.msg_id]
        assert (s.targets, s.sentOnline, s.storedOffline) == (2, 2 if k == 5 else 1, 0 if k == 5 else 1)
    assert runner.run_batch(tasks, threading.Event()) == [ALREADY_DONE] * 5  # a redelivered batch


def test_a_batch_leaves_to_run_what_it_cannot_finish_alone(world) -> None:
    """Skips are answered by the batch; broadcasts, pushes of more than a page, overrides and
    scheduled messages not due go their own way with the same outcomes run() gives."""
    db, _, mailbox, delivery, runner, clock = world
    cancelled = _named(db, 301, ["d01"])
    db.messages[301].state = S.Cancelled
    many = _task(db, 302)  # the tag's 25 devices: three pages of 10
    cast = Task.from_record(db.add(303, request(audience=PushGrid.Audience(all=True)), expires_at=10**13))
    later = Task.from_record(db.add(304, request(), state=S.Scheduled, send_at=clock.ms + 60_000, expires_at=10**13))
    plain = _named(db, 305, ["d02"])
    over = _named(db, 306, ["d03"], overrideMsgId=305)
    out = runner.run_batch([cancelled, many, cast, later, plain, over], threading.Event())
    assert out == [skipped(S.Cancelled), DONE, DONE, NOT_DUE, DONE, DONE]
    assert (db.stats[302].targets, {k for m, k in db.batches if m == 302}) == (25, {"page-0", "page-1", "page-2"})
    assert db.messages[305].state == S.Overridden and 305 not in mailbox.messages
    assert mailbox.checkpoints[301]["done"] == "1" and "done" not in mailbox.checkpoints.get(304, {})


def test_a_task_of_a_batch_that_fails_alone_is_answered_with_its_error(world) -> None:
    db, _, _, _, runner, _ = world
    good = _named(db, 401, ["d01"])
    gone = Task.from_record(db.add(402, request(), expires_at=10**13))
    del db.messages[402]  # its message vanished: run() raises UnknownMessage, the worker drops it
    out = runner.run_batch([good, gone], threading.Event())
    assert out[0] == DONE and isinstance(out[1], PushGrid.UnknownMessage)


def test_messages_finished_while_redis_lost_data_say_so_on_their_reports(world) -> None:
    db, tags, mailbox, delivery, _, clock = world
    missing = [0]
    runner = TaskRunner(db, tags, mailbox, delivery, clock=clock, page_size=10, data_lost=lambda: missing[0])
    assert runner.run(_task(db, 100), threading.Event()) == DONE
    assert db.errors == {}  # nothing lost: no error
    missing[0] = 3
    assert runner.run(_task(db, 101), threading.Event()) == DONE
    assert runner.run(_task(db, 102, audience=PushGrid.Audience(all=True)), threading.Event()) == DONE
    small = [_task(db, 103, audience=PushGrid.Audience(registrationIds=["d01"]))]
    assert runner.run_batch(small, threading.Event()) == [DONE]
    assert sorted(db.errors) == [101, 102, 103]
    assert all("Redis lost data" in e and "3 of 32" in e for e in db.errors.values())
    assert db.messages[101].state == S.Done  # still Done: the error rides with the report
    before = db.calls.index("noteMessageError")
    assert db.calls.index("transitionMessage", before) > before  # noted before the move to Done
