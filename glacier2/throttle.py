"""Failed partner logins, counted across every gateway (Redis), so that they slow guessing down
without letting anyone lock the real partner out.

App keys are public (every device and the web device page carry one), so nothing counted for an
app key alone refuses a login. Refusals are per address (any app key) and per (address, app
key); past LOGIN_FAILURES_PER_APP failures in a window, an app key's logins from anywhere wait
LOGIN_SLOWDOWN_SECONDS before their secret is checked, and then get in with the right one.

An attempt is counted before its secret is checked, by the same script that checks the limits,
and given back when the secret was right or could not be checked: parallel wrong logins cannot
get more checks than the limit. If Redis does not answer, logins are not throttled: partners
keep working, and DBAgent's scrypt still bounds how fast secrets can be guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.cluster import RedisCluster

from services.common import limits
from services.common.backends import REDIS
from services.common.clock import now_ms
from services.common.lazy import Lazy
from services.common.lua import load_scripts
from services.common.redis_client import digest

log = logging.getLogger(__name__)

_SCRIPTS = load_scripts("glacier2", ["login_attempt", "login_refund"])
_COUNTED, _ADDRESS_OVER, _PAIR_OVER = 0, 1, 2


class LoginRefused(Exception):
    """Too many failed logins from this address (for this app key or any); retry after retry_after_ms."""

    def __init__(self, reason: str, retry_after_ms: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True)
class Attempt:
    """A login let through to its secret check, after delay seconds; counted (keys set) unless
    Redis could not be reached."""

    app_key: str
    delay: float
    keys: tuple[str, str] | None
    app_failures_key: str


class LoginThrottle:
    """begin() before verifying a secret; then exactly one of failed(), succeeded(), unchecked()."""

    def __init__(
        self,
        connect: Callable[[], RedisCluster],
        clock: Callable[[], int] = now_ms,
        per_address: int = limits.LOGIN_FAILURES_PER_ADDRESS,
        per_pair: int = limits.LOGIN_FAILURES_PER_ADDRESS_AND_APP,
        slow_after: int = limits.LOGIN_FAILURES_PER_APP,
        slowdown_seconds: float = limits.LOGIN_SLOWDOWN_SECONDS,
        window_seconds: int = limits.LOGIN_FAILURE_WINDOW_SECONDS,
    ) -> None:
        self._client = Lazy(connect)
        self._clock = clock
        self._per_address, self._per_pair = per_address, per_pair
        self._slow_after, self._slowdown = slow_after, slowdown_seconds
        self._window_ms = window_seconds * 1000

    def begin(self, app_key: str, address: str) -> Attempt:
        """Counts an attempt of app_key from address; raises LoginRefused over a limit."""
        now = self._clock()
        window = now // self._window_ms
        tag = digest(address or "?")  # the address's keys share a slot: one script sees both
        keys = (f"pg:login:{{{tag}}}:{window}", f"pg:login:{{{tag}}}:{digest(app_key)}:{window}")
        app_failures = f"pg:login:app:{{{digest(app_key)}}}:{window}"
        try:
            client = self._client()
            verdict = client.eval(
                _SCRIPTS["login_attempt"], 2, *keys, self._per_address, self._per_pair, 2 * self._window_ms
            )
            failures = int(client.get(app_failures) or 0)
        except REDIS.errors as exc:
            log.warning("login attempt not counted, redis failed: %r", exc)
            return Attempt(app_key, 0.0, None, app_failures)
        if verdict != _COUNTED:
            retry = (window + 1) * self._window_ms - now
            what = "this address" if verdict == _ADDRESS_OVER else "this app key from this address"
            raise LoginRefused(f"too many failed logins for {what}; retry in {-(-retry // 1000)} s", retry)
        return Attempt(app_key, self._slowdown if failures >= self._slow_after else 0.0, keys, app_failures)

    def failed(self, attempt: Attempt) -> None:
        """A wrong secret: the attempt stays counted, and the app key's failures grow."""
        try:
            with self._client().pipeline(transaction=False) as p:
                p.incr(attempt.app_failures_key)
                p.pexpire(attempt.app_failures_key, 2 * self._window_ms)
                p.execute()
        except REDIS.errors as exc:
            log.warning("failed login not counted for its app key, redis failed: %r", exc)

    def succeeded(self, attempt: Attempt) -> None:
        """The right secret: the attempt is given back and the pair's earlier failures forgiven."""
        self._refund(attempt, clear_pair=True)

    def unchecked(self, attempt: Attempt) -> None:
        """The secret could not be checked (DBAgent unreachable): the attempt is given back."""
        self._refund(attempt, clear_pair=False)

    def _refund(self, attempt: Attempt, clear_pair: bool) -> None:
        if attempt.keys is None:
            return
        try:
            self._client().eval(_SCRIPTS["login_refund"], 2, *attempt.keys, 1 if clear_pair else 0)
        except REDIS.errors as exc:
            log.warning("login attempt not given back, redis failed: %r", exc)
