"""PartnerVerifier: Glacier2's permissions verifier; the user id is an app key, the password its
master secret. The secret is checked by DBAgent (scrypt hash, constant-time comparison);
unknown app, disabled app and wrong secret get the same answer.

Checks are dispatched asynchronously: a login slowed down by the throttle, or waiting for
DBAgent, holds no thread of the gateway, so a flood of logins leaves every other partner's
calls their threads.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import Ice

from glacier2 import metrics
from glacier2.throttle import Attempt, LoginRefused, LoginThrottle
from services.common.contract import Glacier2, PushGrid

log = logging.getLogger(__name__)

WRONG = "app key or master secret is wrong"
UNCHECKED = "pushgrid cannot check logins right now; try again shortly"


def partner_address(current: Ice.Current | None) -> str:
    """The partner's IP as the router saw it (Glacier2.AddConnectionContext=1); IPv4-mapped
    IPv6 addresses are counted as their IPv4 address."""
    address = ((current.ctx or {}).get("_con.remoteAddress", "") if current is not None else "") or ""
    return address[7:] if address.startswith("::ffff:") else address


class Later:
    """Runs functions after a delay on one thread of its own (not a thread per waiting login)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="login-later", daemon=True)
        self._thread.start()

    def call(self, delay: float, fn: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), fn))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, fn = heapq.heappop(self._due)
            try:
                fn()
            except Exception:  # one bad call must not stop the others (logged with its traceback)
                log.exception("delayed login step failed")


class PartnerVerifierI(Glacier2.PermissionsVerifier):
    def __init__(self, db: PushGrid.DBAgentPrx, throttle: LoginThrottle, later: Later | None = None) -> None:
        self._db = db
        self._throttle = throttle
        self._later = later or Later()

    def checkPermissions(self, userId: str, password: str, current: Ice.Current = None) -> Future[Any]:
        address = partner_address(current)
        answer: Future[Any] = Future()
        try:
            attempt = self._throttle.begin(userId, address)
        except LoginRefused as refused:
            log.warning("login of %r from %s refused: %s", userId[:64], address or "?", refused.reason)
            metrics.LOGINS.labels("throttled").inc()
            answer.set_result((False, refused.reason))
            return answer

        def finish(done: Ice.Future) -> None:
            try:
                answer.set_result(self._judge(attempt, address, done))
            except Exception as exc:  # noqa: BLE001 - the router must get an answer whatever happened
                answer.set_exception(exc)

        def check() -> None:
            try:
                self._db.verifyAppAsync(userId, password).add_done_callback(finish)
            except Ice.LocalException as exc:
                self._throttle.unchecked(attempt)
                log.warning("login of %r not checked: %s", userId[:64], exc)
                metrics.LOGINS.labels("unchecked").inc()
                answer.set_result((False, UNCHECKED))

        if attempt.delay:
            log.info(
                "login of %r from %s slowed down %.1f s: its key failed often", userId[:64], address, attempt.delay
            )
            self._later.call(attempt.delay, check)
        else:
            check()
        return answer

    def _judge(self, attempt: Attempt, address: str, done: Ice.Future) -> tuple[bool, str]:
        """The router's answer from DBAgent's, counted by the throttle."""
        try:
            done.result()
        except PushGrid.AuthenticationFailed:
            self._throttle.failed(attempt)
            log.info("failed login of %r from %s", attempt.app_key[:64], address or "?")
            metrics.LOGINS.labels("wrong").inc()
            return False, WRONG
        except (PushGrid.Unavailable, Ice.LocalException) as exc:
            self._throttle.unchecked(attempt)
            log.warning("login of %r not checked: %s", attempt.app_key[:64], exc)
            metrics.LOGINS.labels("unchecked").inc()
            return False, UNCHECKED
        self._throttle.succeeded(attempt)
        metrics.LOGINS.labels("ok").inc()
        return True, ""
