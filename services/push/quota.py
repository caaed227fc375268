"""Each app's push quota per minute (DBAgent's pushQuotaPerMinute), counted across Push replicas.

A fixed one-minute window per app in Redis: one INCR per call. If Redis does not answer the
quota is not enforced for that call: a partner's push is worth more than an exact count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.cluster import RedisCluster

from services.common import limits
from services.common.backends import REDIS
from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.lazy import Lazy

log = logging.getLogger(__name__)

WINDOW_MS = 60_000


def _key(app_key: str, window: int) -> str:
    return f"pg:quota:{{{app_key}}}:{window}"


class Quota:
    """take() counts one push of an app and raises RateLimited past the app's quota; take_many() counts a batch."""

    def __init__(self, connect: Callable[[], RedisCluster], clock: Callable[[], int] = now_ms) -> None:
        self._client = Lazy(connect)
        self._clock = clock

    def take(self, app: PushGrid.AppInfo) -> None:
        if not self.take_many(app, 1):
            raise self.refusal(app)

    def take_many(self, app: PushGrid.AppInfo, count: int) -> int:
        """Counts count pushes of app at once; answers how many of them fit in its quota (the
        first ones). A Redis failure counts nothing and lets every push through."""
        allowed = app.pushQuotaPerMinute or limits.PUSH_QUOTA_DEFAULT
        window = self._clock() // WINDOW_MS
        try:
            with self._client().pipeline(transaction=False) as p:
                p.incr(_key(app.appKey, window), count)
                p.pexpire(_key(app.appKey, window), 2 * WINDOW_MS)
                total = int(p.execute()[0])
        except REDIS.errors as exc:
            log.warning("quota of %s not counted, redis failed: %r", app.appKey, exc)
            return count
        return max(0, min(count, allowed - (total - count)))

    def refusal(self, app: PushGrid.AppInfo) -> PushGrid.RateLimited:
        """What a push past the quota is answered: RateLimited, with the time until the next window."""
        allowed = app.pushQuotaPerMinute or limits.PUSH_QUOTA_DEFAULT
        now = self._clock()
        retry = (now // WINDOW_MS + 1) * WINDOW_MS - now
        return PushGrid.RateLimited(reason=f"the app may push {allowed} times a minute", retryAfterMs=retry)
