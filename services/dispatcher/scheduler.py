"""Scheduled pushes: every second, publish the tasks of messages whose send time has come.

Publish first, then move Scheduled -> Accepted: if the worker dies in between, the message is
still Scheduled and is published again (a duplicate task finds it done and is skipped); the
other order could lose it. One dispatcher at a time runs the scans (a lease,
services/common/lease.py), so a due message is published once; if Redis cannot say who leads,
every dispatcher scans, and the duplicates that causes are skipped the same way. Leaving
Scheduled is also when a scheduled push's override takes effect: DBAgent ends the overridden
message in the same transaction (services.common.lifecycle).
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

S = PushGrid.MessageState
INTERVAL_SECONDS = 1.0


class Scheduler:
    def __init__(
        self,
        db: PushGrid.DBAgentPrx,
        publisher: TaskPublisher,
        stop: threading.Event,
        clock: Callable[[], int] = now_ms,
        lease: Lease | None = None,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._stop = stop
        self._clock = clock
        self._lease = lease

    def run(self) -> None:
        lead(self._lease, self._stop, INTERVAL_SECONDS, self._scan_all, "scheduler scan")

    def _scan_all(self) -> None:
        while self.scan() == limits.DUE_PER_SCAN and not self._stop.is_set():
            pass  # a full batch: more may be due

    def scan(self) -> int:
        """Publishes the due messages; returns how many there were."""
        due = self._db.dueMessages(self._clock(), limits.DUE_PER_SCAN)
        for record in due:
            self._publisher.publish(Task.from_record(record))
            if self._db.transitionMessage(record.appKey, record.msgId, S.Scheduled, S.Accepted):
                log.info("%s scheduled message published", logs.about(record.msgId, record.appKey))
        return len(due)
