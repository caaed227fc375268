"""One leader for a job that every dispatcher could run but one should (the scheduler, the
reconciler): a lease in Redis that its holder keeps by renewing it each time it acts.

A holder that dies or hangs loses the lease when it lapses, and the next candidate to ask takes
it. If Redis does not answer, every candidate acts as leader: the jobs a lease guards are safe
to run twice (a duplicate task is skipped or resumes), only wasteful, while a job left undone
would delay messages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import Ice
from redis.cluster import RedisCluster

from services.common import limits
from services.common.backends import REDIS
from services.common.contract import PushGrid
from services.common.lazy import Lazy
from services.common.lua import load_scripts

log = logging.getLogger(__name__)

_SCRIPTS = load_scripts("services.common", ["lease_keep", "lease_release"])


class Lease:
    """held() before each round of the job: True while this holder is (or just became) leader."""

    def __init__(
        self,
        connect: Callable[[], RedisCluster],
        name: str,
        holder: str,
        ttl_ms: int = int(limits.LEADER_LEASE_SECONDS * 1000),
    ) -> None:
        self._client = Lazy(connect)
        self._key = f"pg:lease:{{{name}}}"
        self.name, self.holder = name, holder
        self._ttl_ms = ttl_ms
        self._leading: bool | None = None

    def held(self) -> bool:
        try:
            leading = bool(self._client().eval(_SCRIPTS["lease_keep"], 1, self._key, self.holder, self._ttl_ms))
        except REDIS.errors as exc:
            log.warning("%s lease not checked, acting as leader: redis failed: %r", self.name, exc)
            return True
        if leading != self._leading:
            log.info("%s: %s %s", self.name, self.holder, "leads" if leading else "follows")
            self._leading = leading
        return leading

    def release(self) -> None:
        """Gives the lease up at once (on shutdown), so another holder need not wait for it to lapse."""
        try:
            self._client().eval(_SCRIPTS["lease_release"], 1, self._key, self.holder)
        except REDIS.errors as exc:
            log.warning("%s lease not released, it lapses by itself: %r", self.name, exc)


def lead(lease: Lease | None, stop: threading.Event, every: float, job: Callable[[], object], what: str) -> None:
    """Runs job every `every` seconds while this process holds lease (always, without one)
    until stop is set, then gives the lease up. A round that fails on a backend is logged and
    the next round tries again."""
    try:
        while not stop.wait(every):
            if lease is not None and not lease.held():
                continue  # another process leads
            try:
                job()
            except (PushGrid.PushGridError, Ice.Exception) as exc:
                log.warning("%s failed, trying again in %g s: %s", what, every, getattr(exc, "reason", exc))
    finally:
        if lease is not None:
            lease.release()
