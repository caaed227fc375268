"""The tasks consumer: one task at a time, its offset committed only once the task is finished.

While a task runs (a throttled big push can take hours) the worker pauses its partitions and
keeps polling, so the group keeps it as a member without handing it more records. If a rebalance
takes the task's partition away, the task is stopped at its next page boundary and not
committed: the partition's new owner resumes it from the checkpoint. Each finished task is logged
with the runner's Outcome ("done", "skipped: Cancelled", ...).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from services.common import kafka_client
from services.common.backends import KAFKA
from services.common.contract import PushGrid
from services.common.tasks import Task
from services.dispatcher.runner import DROPPED, Interrupted, Outcome, TaskRunner

log = logging.getLogger(__name__)

GROUP = "pushgrid-dispatchers"
POLL_MS = 500
REPORT_AGAIN_SECONDS = 10.0  # how often the partitions report is repeated between rebalances
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
    tp: TopicPartition
    offset: int
    future: Future[Outcome]
    stop: threading.Event
    lost: bool = False  # its partition was revoked: do not commit


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

    def run(self) -> None:
        consumer = self._consumer = self._connect(_Listener(self))
        try:
            while not self._stop.is_set():
                self._report_again()
                batch = consumer.poll(timeout_ms=POLL_MS, max_records=1)
                records = [(tp, recs[0]) for tp, recs in batch.items() if recs]
                if not records:
                    continue
                for tp, rec in records[1:]:  # one at a time: the others are read again later
                    consumer.seek(tp, rec.offset)
                self._handle(*records[0])
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

    def _handle(self, tp: TopicPartition, rec: ConsumerRecord) -> None:
        try:
            task = Task.from_dict(rec.value)
        except ValueError as exc:
            log.error("dropping malformed task at %s:%d: %s", tp.partition, rec.offset, exc)
            self._commit(tp, rec.offset + 1)
            return
        stop = threading.Event()
        running = _Running(tp, rec.offset, self._pool.submit(self._runner.run, task, stop), stop)
        self._running = running
        consumer = self._kafka
        consumer.pause(*consumer.assignment())
        try:
            while not running.future.done():
                if self._stop.is_set():
                    running.stop.set()
                wait([running.future], timeout=BUSY_POLL_MS / 1000)  # answer as soon as it ends
                self._report_again()
                extra = consumer.poll(timeout_ms=0)
                for other, recs in extra.items():  # paused, so none should come; never lose one
                    if recs:
                        consumer.seek(other, recs[0].offset)
        finally:
            self._running = None
            consumer.resume(*consumer.paused())
        self._settle(task, running)

    def _settle(self, task: Task, running: _Running) -> None:
        """Commits a finished task; leaves an unfinished one to be read again."""
        try:
            outcome = running.future.result()
        except Interrupted:
            log.info("task %d interrupted; it resumes from its checkpoint", task.msg_id)
            self._retry_later(running, backoff=False)
            return
        except PERMANENT as exc:
            log.error("task %d cannot run: %s", task.msg_id, getattr(exc, "reason", exc))
            outcome = DROPPED
        except Exception as exc:  # noqa: BLE001 - a backend failed (Unavailable, Ice): retry
            log.warning("task %d failed, retrying from its checkpoint: %r", task.msg_id, exc)
            self._retry_later(running, backoff=True)
            return
        log.info("task %d: %s", task.msg_id, outcome)
        self._failures = 0
        if not running.lost:
            self._commit(running.tp, running.offset + 1)

    def _retry_later(self, running: _Running, backoff: bool) -> None:
        # Also when the partition was lost: a rebalance during the task may have handed it straight
        # back, and a partition kept across a rebalance keeps its position, already past this task.
        # Reading it again is safe: its checkpoint makes a finished task a skip.
        if running.tp in self._kafka.assignment():
            self._kafka.seek(running.tp, running.offset)
        if backoff:
            delay = BACKOFF_SECONDS[min(self._failures, len(BACKOFF_SECONDS) - 1)]
            self._failures += 1
            self._stop.wait(delay)

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
        if running is None or running.tp not in revoked:
            return
        running.lost = True
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
