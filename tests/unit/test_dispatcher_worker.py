"""The tasks consumer loop with a fake Kafka consumer: pause while busy, commit only finished tasks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import TopicPartition

from services.common.contract import PushGrid
from services.common.tasks import Task
from services.dispatcher import worker
from services.dispatcher.runner import Ending, Interrupted, Outcome
from services.dispatcher.worker import TaskWorker
from tests.unit.fakes import APP, sample
from tests.unit.push_fakes import request

TP0, TP1 = TopicPartition("pushgrid.tasks", 0), TopicPartition("pushgrid.tasks", 1)


@dataclass
class Record:
    offset: int
    value: Any


class FakeConsumer:
    """Two partitions of records; poll hands out per_poll records at a time from unpaused partitions."""

    def __init__(self, records: dict[TopicPartition, list[Any]], stop: threading.Event) -> None:
        self.records = records
        self.positions = {tp: 0 for tp in records}
        self.paused_set: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.stop = stop
        self.polls_while_paused = 0
        self.on_poll = lambda: None
        self.closed = False
        self.per_poll = 1  # records one poll hands out at most (and at most max_records)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        self.on_poll()
        if self.paused_set:
            self.polls_while_paused += 1
            time.sleep(0.01)
        out: dict[TopicPartition, list[Record]] = {}
        for tp in sorted(self.records):
            while (
                tp not in self.paused_set
                and self.positions[tp] < len(self.records[tp])
                and sum(map(len, out.values())) < min(max_records or 1, self.per_poll)
            ):
                offset = self.positions[tp]
                self.positions[tp] += 1
                out.setdefault(tp, []).append(Record(offset, self.records[tp][offset]))
        if not out and not self.paused_set:
            self.stop.set()  # drained: end the loop
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self.records)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.records[tp])

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self.positions[tp]

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_set |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_set -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_set)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def commit(self, offsets: dict) -> None:
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset

    def close(self, autocommit: bool = True) -> None:
        self.closed = True


class FakeRunner:
    """Runs tasks by a script: msg id -> list of outcomes (a string, or an exception to raise)."""

    def __init__(self, script: dict[int, list[Any]]) -> None:
        self.script = script
        self.ran: list[int] = []
        self.batches: list[list[int]] = []

    def run(self, task: Task, stop: threading.Event) -> Outcome:
        self.ran.append(task.msg_id)
        outcome = self.script[task.msg_id].pop(0)
        if callable(outcome):
            outcome = outcome(stop)
        if isinstance(outcome, BaseException):
            raise outcome
        return Outcome(Ending(outcome))

    def run_batch(self, tasks: list[Task], stop: threading.Event) -> list[Any]:
        """As TaskRunner.run_batch: each task's outcome, or the exception it raised."""
        self.batches.append([t.msg_id for t in tasks])
        out: list[Any] = []
        for t in tasks:
            try:
                out.append(self.run(t, stop))
            except Exception as exc:  # noqa: BLE001 - the task's verdict, as run_batch gives it
                out.append(exc)
        return out


def task(msg_id: int) -> dict:
    return Task(msg_id, APP, request(), 1000, 2000).to_dict()


def make(records: dict, script: dict) -> tuple[TaskWorker, FakeConsumer, FakeRunner, threading.Event]:
    stop = threading.Event()
    consumer = FakeConsumer(records, stop)
    runner = FakeRunner(script)
    w = TaskWorker(lambda listener: consumer, runner, stop)
    return w, consumer, runner, stop


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch) -> None:
    monkeypatch.setattr(worker, "BACKOFF_SECONDS", (0,))


def test_finished_tasks_are_committed_one_by_one() -> None:
    w, consumer, runner, _ = make({TP0: [task(1), task(2)], TP1: [task(3)]}, {1: ["done"], 2: ["done"], 3: ["done"]})
    w.run()
    assert runner.ran == [1, 2, 3]
    assert consumer.committed == {TP0: 2, TP1: 1} and consumer.paused_set == set() and consumer.closed


def test_partitions_are_paused_and_polled_while_a_task_runs() -> None:
    def slow(stop: threading.Event) -> str:
        time.sleep(0.5)
        return "done"

    w, consumer, runner, _ = make({TP0: [task(1)], TP1: [task(2)]}, {1: [slow], 2: ["done"]})
    w.run()
    assert consumer.polls_while_paused >= 2  # polled every BUSY_POLL_MS: the membership stays alive
    assert runner.ran == [1, 2]  # task 2 waited for task 1
    assert consumer.committed == {TP0: 1, TP1: 1}


def test_failed_task_is_retried_not_committed_first() -> None:
    w, consumer, runner, _ = make({TP0: [task(1)]}, {1: [PushGrid.Unavailable(reason="down", backend="mysql"), "done"]})
    w.run()
    assert runner.ran == [1, 1] and consumer.committed == {TP0: 1}


def test_a_batch_commits_each_partition_up_to_its_first_unfinished_task() -> None:
    down = PushGrid.Unavailable(reason="down", backend="mysql")
    w, consumer, runner, _ = make(
        {TP0: [task(1), task(2), {"garbage": True}, task(3)], TP1: [task(4)]},
        {1: ["done"], 2: [down, "done"], 3: ["done", "already done"], 4: ["done"]},
    )
    consumer.per_poll = 100
    commits: list[dict] = []
    commit = consumer.commit
    consumer.commit = lambda offsets: (commits.append(dict(offsets)), commit(offsets))  # type: ignore[method-assign]
    w.run()
    assert runner.batches == [[1, 2, 3, 4], [2, 3]]  # one batch across partitions, then the rest again
    assert [{tp.partition: m.offset for tp, m in c.items()} for c in commits] == [{0: 1}, {1: 1}, {0: 4}]
    assert consumer.committed == {TP0: 4, TP1: 1}


def test_malformed_and_permanently_failing_tasks_are_committed() -> None:
    w, consumer, runner, _ = make(
        {TP0: [{"garbage": True}, None, task(1)]}, {1: [PushGrid.UnknownMessage(reason="gone", msgId=1)]}
    )
    w.run()
    assert runner.ran == [1] and consumer.committed == {TP0: 3}


def run_with_rebalance_mid_task(reset_to_committed: bool):
    """Runs task 1, which waits until stopped; while it runs, a rebalance revokes its partition
    and hands it straight back, with the consumer's position reset to the committed offset (as
    after a real reassignment) or kept past the task. Returns the consumer and runner."""
    started = threading.Event()

    def until_stopped(stop: threading.Event) -> Exception:
        started.set()
        stop.wait(5)
        return Interrupted()

    w, consumer, runner, _ = make({TP0: [task(1)]}, {1: [until_stopped, "already done"]})
    rebalanced = threading.Event()

    def rebalance() -> None:
        if started.is_set() and not rebalanced.is_set() and w._running is not None:
            rebalanced.set()
            w.revoked({TP0, TP1})  # what kafka-python calls inside poll
            if reset_to_committed:
                consumer.positions = {tp: consumer.committed.get(tp, 0) for tp in consumer.records}
            w.assigned({TP0, TP1})  # ... and gives the same partitions back

    consumer.on_poll = rebalance
    w.run()
    return consumer, runner


def test_revoked_partition_stops_the_task_without_commit() -> None:
    consumer, runner = run_with_rebalance_mid_task(reset_to_committed=True)
    assert runner.ran == [1, 1]  # read again from the uncommitted offset, found done
    assert consumer.committed == {TP0: 1}


def test_partition_handed_straight_back_keeps_no_skipped_task() -> None:
    """The consumer keeps the partition's position (past the task), so the worker must seek back
    to the task."""
    consumer, runner = run_with_rebalance_mid_task(reset_to_committed=False)
    assert runner.ran == [1, 1]  # the interrupted task is read again, not skipped
    assert consumer.committed == {TP0: 1}


def test_stopping_interrupts_the_running_task() -> None:
    def until_stopped(stop: threading.Event) -> Exception:
        stop.wait(5)
        return Interrupted()

    w, consumer, runner, stop = make({TP0: [task(1)]}, {1: [until_stopped]})
    consumer.on_poll = lambda: stop.set() if runner.ran else None
    started = time.monotonic()
    w.run()
    assert time.monotonic() - started < 2 and consumer.committed == {}


def test_the_partitions_report_is_repeated_between_rebalances(monkeypatch) -> None:
    """A report lost with a Redis node's state comes back without waiting for a rebalance."""
    monkeypatch.setattr(worker, "REPORT_AGAIN_SECONDS", 0.0)
    stop = threading.Event()
    consumer = FakeConsumer({TP0: [task(1)], TP1: [task(2)]}, stop)
    reports: list[list[int]] = []
    w = TaskWorker(lambda listener: consumer, FakeRunner({1: ["done"], 2: ["done"]}), stop, report=reports.append)
    w.run()
    assert len(reports) >= 3 and all(r == sorted(tp.partition for tp in consumer.assignment()) for r in reports)


def test_each_partition_reports_the_tasks_waiting_on_it_and_each_outcome_is_counted(monkeypatch) -> None:
    monkeypatch.setattr(worker, "LAG_SECONDS", 0.0)
    done_before = sample("pushgrid_dispatcher_tasks_total", outcome="done")
    failed_before = sample("pushgrid_dispatcher_tasks_total", outcome="failed")
    seen: list[tuple[float, float]] = []
    w, consumer, _, _ = make(
        {TP0: [task(1), task(2), task(3)], TP1: [task(4)]},
        {1: ["done"], 2: [PushGrid.Unavailable(reason="down", backend="mysql"), "done"], 3: ["done"], 4: ["done"]},
    )
    consumer.on_poll = lambda: seen.append(
        (sample("pushgrid_dispatcher_lag", partition="0"), sample("pushgrid_dispatcher_lag", partition="1"))
    )
    w.run()
    assert seen[0] == (3.0, 1.0)  # nothing read yet: every task waits
    assert seen[-1] == (0.0, 0.0)  # all read
    assert sample("pushgrid_dispatcher_tasks_total", outcome="done") - done_before == 4
    assert sample("pushgrid_dispatcher_tasks_total", outcome="failed") - failed_before == 1
