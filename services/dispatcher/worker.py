"""The tasks consumer: a batch of tasks at a time, each offset committed only once its task is
finished.

Each poll takes up to limits.TASK_BATCH tasks, which the runner runs together (run_batch: one
call per step for all of them). While they run (a throttled big push among them can take hours)
the worker pauses its partitions and keeps polling, so the group keeps it as a member without
handing it more records. On each partition the tasks up to the first unfinished one are
committed, and that one is read again. If a rebalance takes a partition away, the batch is
stopped at its tasks' next page boundary and that partition is not committed: its new owner
resumes the tasks from their checkpoints. Each finished task is logged with the runner's Outcome
("done", "skipped: Cancelled", ...).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from services.common import kafka_client, limits, logs
from services.common.backends import KAFKA
from services.common.contract import PushGrid
from services.common.tasks import Task
from services.dispatcher import metrics
from services.dispatcher.runner import DROPPED, Interrupted, Outcome, TaskRunner

log = logging.getLogger(__name__)

GROUP = "pushgrid-dispatchers"
POLL_MS = 500
REPORT_AGAIN_SECONDS = 10.0  # how often the partitions report is repeated between rebalances
LAG_SECONDS = 1.0  # how often each partition's lag is measured
BUSY_POLL_MS = 200
REVOKE_WAIT_SECONDS = 30  # how long a rebalance waits for the running task to reach a page boundary
BACKOFF_SECONDS = (1, 2, 5, 10, 30)
# A task failing with these can never succeed: it is logged and committed, not retried.
PERMANENT = (
    PushGrid.UnknownMessage,
    PushGrid.UnknownApp,
    PushGrid.InvalidArgument,
    PushGrid.LimitExceeded,
    PushGrid.InvalidState,
)


@dataclass
class _Running:
    offsets: dict[TopicPartition, list[int]]  # the batch's offsets on each partition, in order
    future: Future[list[Outcome | Exception]]
    stop: threading.Event
    lost: set[TopicPartition] = field(default_factory=set)  # revoked meanwhile: not committed


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: TaskWorker) -> None:
        self._worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._worker.revoked(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker.assigned(assigned)


class TaskWorker:
    """Consumes the tasks topic as a member of GROUP until stop is set."""

    def __init__(
        self,
        connect: Callable[[ConsumerRebalanceListener], KafkaConsumer],
        runner: TaskRunner,
        stop: threading.Event,
        report: Callable[[list[int]], None] = lambda partitions: None,
    ) -> None:
        self._connect = connect
        self._report = report  # tells operators (and `pushgrid up`) which partitions this worker owns
        self._runner = runner
        self._stop = stop
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="task")
        self._consumer: KafkaConsumer | None = None
        self._running: _Running | None = None
        self._failures = 0
        self._reported_at = 0.0
        self._measured_at = 0.0

    def run(self) -> None:
        consumer = self._consumer = self._connect(_Listener(self))
        try:
            while not self._stop.is_set():
                self._report_again()
                self._measure_lag()
                batch = consumer.poll(timeout_ms=POLL_MS, max_records=limits.TASK_BATCH)
                records = [(tp, rec) for tp, recs in batch.items() for rec in recs]
                if records:
                    self._handle(records)
        finally:
            self._pool.shutdown(wait=True)
            kafka_client.leave(consumer)

    @property
    def _kafka(self) -> KafkaConsumer:
        """The consumer run() made; everything below runs inside run(), so it exists."""
        if self._consumer is None:
            raise RuntimeError("the tasks consumer is used before run() made it")
        return self._consumer

    # ------------------------------------------------------------ one task

    def _handle(self, records: list[tuple[TopicPartition, ConsumerRecord]]) -> None:
        """Runs the tasks of records together (TaskRunner.run_batch), then commits what finished."""
        tasks: list[Task] = []
        places: list[tuple[TopicPartition, int]] = []
        settled: dict[TopicPartition, dict[int, bool]] = {}  # offset -> finished, per partition
        for tp, rec in records:
            try:
                tasks.append(Task.from_dict(rec.value))
                places.append((tp, rec.offset))
            except ValueError as exc:
                log.error("dropping malformed task at %s:%d: %s", tp.partition, rec.offset, exc)
                settled.setdefault(tp, {})[rec.offset] = True
        offsets: dict[TopicPartition, list[int]] = {}
        for tp, rec in records:
            offsets.setdefault(tp, []).append(rec.offset)
        stop = threading.Event()
        running = _Running(offsets, self._pool.submit(self._runner.run_batch, tasks, stop), stop)
        self._running = running
        consumer = self._kafka
        consumer.pause(*consumer.assignment())
        try:
            while not running.future.done():
                if self._stop.is_set():
                    running.stop.set()
                wait([running.future], timeout=BUSY_POLL_MS / 1000)  # answer as soon as it ends
                self._report_again()
                self._measure_lag()
                extra = consumer.poll(timeout_ms=0)
                for other, recs in extra.items():  # paused, so none should come; never lose one
                    if recs:
                        consumer.seek(other, recs[0].offset)
        finally:
            self._running = None
            consumer.resume(*consumer.paused())
        self._settle(tasks, places, settled, running)

    def _settle(
        self,
        tasks: list[Task],
        places: list[tuple[TopicPartition, int]],
        settled: dict[TopicPartition, dict[int, bool]],
        running: _Running,
    ) -> None:
        """Commits, on each partition, the tasks finished before its first unfinished one, and
        leaves that one and the rest to be read again."""
        try:
            outcomes: list[Outcome | Exception] = running.future.result()
        except Exception as exc:  # noqa: BLE001 - a batched step failed (Unavailable, Ice): retry
            log.warning("a batch of %d tasks failed, retrying from their checkpoints: %r", len(tasks), exc)
            outcomes = [exc] * len(tasks)
        retry = backoff = False
        for task, (tp, offset), outcome in zip(tasks, places, outcomes, strict=True):
            finished = self._outcome(task, outcome)
            settled.setdefault(tp, {})[offset] = finished
            retry |= not finished
            backoff |= not finished and not isinstance(outcome, Interrupted)
        for tp, done in settled.items():
            ordered = sorted(done)
            first_unfinished = next((o for o in ordered if not done[o]), None)
            if tp in running.lost:
                # A rebalance may have handed it straight back, keeping its position past these
                # tasks; reading them again is safe (a finished task's checkpoint makes it a skip).
                if tp in self._kafka.assignment():
                    self._kafka.seek(tp, ordered[0])
                continue
            commit_to = first_unfinished if first_unfinished is not None else ordered[-1] + 1
            if commit_to > ordered[0]:
                self._commit(tp, commit_to)
            if first_unfinished is not None and tp in self._kafka.assignment():
                self._kafka.seek(tp, first_unfinished)
        if not retry:
            self._failures = 0
        elif backoff:
            delay = BACKOFF_SECONDS[min(self._failures, len(BACKOFF_SECONDS) - 1)]
            self._failures += 1
            self._stop.wait(delay)

    def _outcome(self, task: Task, outcome: Outcome | Exception) -> bool:
        """Logs how a task ended; True if it is finished (its offset may be committed)."""
        if isinstance(outcome, Interrupted):
            log.info("%s task interrupted; it resumes from its checkpoint", logs.about(task.msg_id, task.app_key))
            metrics.TASKS.labels("interrupted").inc()
            return False
        if isinstance(outcome, PERMANENT):
            log.error(
                "%s task cannot run: %s", logs.about(task.msg_id, task.app_key), getattr(outcome, "reason", outcome)
            )
            outcome = DROPPED
        elif isinstance(outcome, Exception):
            log.warning(
                "%s task failed, retrying from its checkpoint: %r", logs.about(task.msg_id, task.app_key), outcome
            )
            metrics.TASKS.labels("failed").inc()
            return False
        log.info("%s task %s", logs.about(task.msg_id, task.app_key), outcome)
        metrics.TASKS.labels(outcome.ending.value).inc()
        return True

    def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            self._kafka.commit({tp: OffsetAndMetadata(offset, "", -1)})
        except KAFKA.errors as exc:  # the partition moved on: its new owner finds the task done
            log.warning("offset %d of partition %d not committed: %r", offset, tp.partition, exc)

    # ------------------------------------------------------------ rebalances (inside poll)

    def revoked(self, revoked: set[TopicPartition]) -> None:
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))
        self._report_quietly([])
        running = self._running
        if running is None or not revoked & set(running.offsets):
            return
        running.lost |= revoked & set(running.offsets)
        running.stop.set()
        try:
            running.future.exception(timeout=REVOKE_WAIT_SECONDS)
        except Exception:  # noqa: BLE001 - only waiting here; _settle reports the outcome
            pass

    def assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))
        self._report_quietly(sorted(tp.partition for tp in self._kafka.assignment()))
        if self._running is not None and assigned:
            self._kafka.pause(*assigned)

    def _measure_lag(self) -> None:
        """Sets each owned partition's lag from what the consumer knows already (no request): its
        end offset from the last fetch, and its position; at most once a LAG_SECONDS."""
        now = time.monotonic()
        if now - self._measured_at < LAG_SECONDS:
            return
        self._measured_at = now
        consumer = self._kafka
        lags: dict[str, int] = {}
        for tp in consumer.assignment():
            try:
                end, position = consumer.highwater(tp), consumer.position(tp, timeout_ms=0)
            except KAFKA.errors:  # moved away meanwhile
                continue
            if end is not None and position is not None:
                lags[str(tp.partition)] = max(0, end - position)
        metrics.LAG.clear()  # partitions moved away are no longer this dispatcher's to report
        for partition, lag in lags.items():
            metrics.LAG.labels(partition).set(lag)

    def _report_again(self) -> None:
        """Repeats the partitions report now and then: a report lost with a Redis node's state
        would otherwise stay lost until the next rebalance, and `pushgrid up` waits on it."""
        if time.monotonic() - self._reported_at >= REPORT_AGAIN_SECONDS:
            self._report_quietly(sorted(tp.partition for tp in self._kafka.assignment()))

    def _report_quietly(self, partitions: list[int]) -> None:
        self._reported_at = time.monotonic()
        try:
            self._report(partitions)
        except Exception as exc:  # noqa: BLE001 - a report is for people; consuming goes on
            log.warning("could not report partitions %s: %r", partitions, exc)
