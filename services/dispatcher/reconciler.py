"""Accepted means delivered, whatever the broker does: a message recorded as Accepted whose task
no dispatcher has started within TASK_START_DEADLINE_SECONDS gets its task published again.

A broker restart that dropped tasks, or a publish lost on the way, then costs delay, not the
message. One dispatcher reconciles at a time (a lease). A message counts as unstarted once it
has been seen Accepted for the whole deadline by this leader (not from its send time: a scheduled
message published late is not stuck), and after a publish it waits another deadline before the
next. A duplicate task is harmless: the runner skips a message that moved on and resumes one
that is Dispatching (services/dispatcher/runner.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.common import limits, logs
from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.lease import Lease, lead
from services.common.tasks import Task, TaskPublisher

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        db: PushGrid.DBAgentPrx,
        publisher: TaskPublisher,
        stop: threading.Event,
        lease: Lease | None = None,
        clock: Callable[[], int] = now_ms,
        deadline_ms: int = limits.TASK_START_DEADLINE_SECONDS * 1000,
        every_seconds: float = limits.RECONCILE_SECONDS,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._stop = stop
        self._lease = lease
        self._clock = clock
        self._deadline_ms = deadline_ms
        self._every = every_seconds
        self._waiting: dict[int, int] = {}  # msg id -> since when this leader has seen it unstarted
        self._last_scan = 0

    def run(self) -> None:
        lead(self._lease, self._stop, self._every, self.scan, "reconcile")

    def scan(self) -> int:
        """Publishes again the tasks of messages unstarted for the deadline; returns how many."""
        now = self._clock()
        if now - self._last_scan > 2 * self._every * 1000:
            self._waiting = {}  # another dispatcher led meanwhile: this one starts its own count
        self._last_scan = now
        unstarted = self._db.unstartedMessages(now - self._deadline_ms, limits.DUE_PER_SCAN)
        self._waiting = {r.msgId: self._waiting.get(r.msgId, now) for r in unstarted}
        again = 0
        for record in unstarted:
            if now - self._waiting[record.msgId] < self._deadline_ms:
                continue
            self._publisher.publish(Task.from_record(record))
            self._waiting[record.msgId] = now
            again += 1
            log.warning(
                "%s accepted but not started for %d s: its task is published again",
                logs.about(record.msgId, record.appKey),
                (now - record.sendAt) // 1000,
            )
        return again
