"""Failed partner logins, counted per app key and per address across every gateway (Redis).

A login is refused outright, without spending a scrypt, once its app key or its address has
failed too often within the current window; the refusal says when the window ends. Counting is
a fixed window per key: one INCR per failure, nothing per success but clearing the app key's
count. If Redis does not answer, logins are not throttled: partners keep working, and DBAgent's
scrypt still bounds how fast secrets can be guessed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from redis.cluster import RedisCluster

from services.common import limits
from services.common.backends import REDIS
from services.common.clock import now_ms
from services.common.lazy import Lazy

log = logging.getLogger(__name__)


class LoginRefused(Exception):
    """Too many failed logins for this app key or address; retry after retry_after_ms."""

    def __init__(self, reason: str, retry_after_ms: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_ms = retry_after_ms


def _key(kind: str, value: str, window: int) -> str:
    """The partner's value is hashed: an attacker chooses it, so it must not shape our keys."""
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]
    return f"pg:login:{kind}:{{{digest}}}:{window}"


class LoginThrottle:
    """check() before verifying a secret, failed() after a wrong one, succeeded() after a right one."""

    def __init__(
        self,
        connect: Callable[[], RedisCluster],
        clock: Callable[[], int] = now_ms,
        per_app: int = limits.LOGIN_FAILURES_PER_APP,
        per_address: int = limits.LOGIN_FAILURES_PER_ADDRESS,
        window_seconds: int = limits.LOGIN_FAILURE_WINDOW_SECONDS,
    ) -> None:
        self._client = Lazy(connect)
        self._clock = clock
        self._limits = {"app": per_app, "addr": per_address}
        self._window_ms = window_seconds * 1000

    def check(self, app_key: str, address: str) -> None:
        """Raises LoginRefused if the app key or the address is over its limit in this window."""
        now = self._clock()
        window = now // self._window_ms
        keys = {"app": _key("app", app_key, window)}
        if address:
            keys["addr"] = _key("addr", address, window)
        try:
            counts = dict(zip(keys, self._client().mget_nonatomic(list(keys.values())), strict=True))
        except REDIS.errors as exc:
            log.warning("failed logins not checked, redis failed: %r", exc)
            return
        for kind, count in counts.items():
            if count is not None and int(count) >= self._limits[kind]:
                retry = (window + 1) * self._window_ms - now
                what = "this app key" if kind == "app" else "this address"
                raise LoginRefused(f"too many failed logins for {what}; retry in {-(-retry // 1000)} s", retry)

    def failed(self, app_key: str, address: str) -> None:
        window = self._clock() // self._window_ms
        keys = [_key("app", app_key, window)] + ([_key("addr", address, window)] if address else [])
        try:
            with self._client().pipeline(transaction=False) as p:
                for key in keys:
                    p.incr(key)
                    p.pexpire(key, 2 * self._window_ms)
                p.execute()
        except REDIS.errors as exc:
            log.warning("failed login not counted, redis failed: %r", exc)

    def succeeded(self, app_key: str) -> None:
        """The right secret clears the app key's count; an address's failures stay counted."""
        window = self._clock() // self._window_ms
        try:
            self._client().delete(_key("app", app_key, window))
        except REDIS.errors as exc:
            log.warning("failed logins of an app not cleared, redis failed: %r", exc)
