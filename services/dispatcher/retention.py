"""Reports are kept for days, not forever: messages that expired more than the operator's
retention ago are purged with their receipts, receipt curves and stats batches
(DBAgent.purgeExpired).

One dispatcher purges at a time (a lease). Each call deletes a bounded number of messages in
short statements, and the loop stops for the round once a call finds fewer, so a purge never
holds the tables the hot path uses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.common import limits
from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.lease import Lease, lead

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


class Retention:
    def __init__(
        self,
        db: PushGrid.DBAgentPrx,
        stop: threading.Event,
        keep_days: float = limits.REPORT_RETENTION_DAYS,
        lease: Lease | None = None,
        clock: Callable[[], int] = now_ms,
        every_seconds: float = limits.RETENTION_SECONDS,
    ) -> None:
        self._db = db
        self._stop = stop
        self._keep_ms = int(keep_days * DAY_MS)
        self._lease = lease
        self._clock = clock
        self._every = every_seconds

    def run(self) -> None:
        lead(self._lease, self._stop, self._every, self.purge, "purge")

    def purge(self) -> PushGrid.Purged:
        """Purges every message expired before the retention, PURGE_PER_CALL at a time."""
        before = self._clock() - self._keep_ms
        total = PushGrid.Purged(messages=0, receipts=0, statBatches=0)
        while not self._stop.is_set():
            got = self._db.purgeExpired(before, limits.PURGE_PER_CALL)
            total.messages += got.messages
            total.receipts += got.receipts
            total.statBatches += got.statBatches
            if got.messages < limits.PURGE_PER_CALL:
                break
        if total.messages:
            log.info(
                "purged %d messages expired over %g days ago, %d receipts, %d stats batches",
                total.messages,
                self._keep_ms / DAY_MS,
                total.receipts,
                total.statBatches,
            )
        return total
