"""One partner session through the Glacier2 router, kept alive and reopened when it is lost.

A Glacier2 session lives exactly as long as the partner's connection to the router: the router
destroys it when the connection closes, when it is quiet for the router's session timeout, or
when the router itself restarts. `Session` keeps the connection busy with heartbeats (as Ice
3.7's `Glacier2.Application` does) and, when a call finds the session gone, logs in again and
repeats the call — but only where repeating cannot do a thing twice.

The retry rule (the one Ice itself applies to a single connection, lifted to the session):

* **Not executed** — the request surely never reached a servant: the connection could not be
  made (`ConnectFailedException`, `ConnectTimeoutException`, `DNSException`), the router or
  gateway did not know the object (`ObjectNotExistException`: Glacier2 answers it for a
  connection without a session, and a gateway for a session it no longer holds), the server
  closed the connection gracefully before dispatching (`CloseConnectionException`), or the
  session was already known to be gone before the call (its connection's close callback ran).
  Every operation is reopened and repeated, `push`, `schedule` and `cancel` included.
* **Maybe executed** — the connection broke while the request was out
  (`ConnectionLostException`, `ConnectionTimeoutException`, other socket errors, or an
  `UnknownLocalException` from the router, which it answers when it cannot reach the gateway
  holding the session). The session is dropped either way; an `idempotent` operation (validate,
  report, every device operation) is repeated on a new session, while `push`, `schedule` and
  `cancel` raise the error unchanged, since repeating them could send a message twice — the
  caller decides (for instance by checking `report` or pushing again with the same sendno).
* **Anything else** — the operation's own Slice exceptions (`RateLimited`, `InvalidArgument`,
  ...), `InvocationTimeoutException` (the server is slow, not gone: repeating adds load) and
  programming errors — reach the caller unchanged, and the session is kept.

Reopening waits for the router to come back (a restart under IceGrid takes a few seconds) for up
to `reconnect_timeout` seconds; a refused login (`Glacier2.PermissionDeniedException`,
`CannotCreateSessionException`) is never retried. The first login does not wait: a wrong
address or secret should fail at once.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import Ice

from services.common.contract import Glacier2, PushGrid

T = TypeVar("T")

MAX_REPEATS = 3  # repeats of one call after reopening, before giving up
BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0)  # waits between logins while the router is away (then 1 s)

# Glacier2's Python package defines a plain Exception named SessionNotExistException over the
# Slice one, so the exception that arrives from the router is recognized by its Slice type id.
SESSION_NOT_EXIST_ID = "::Glacier2::SessionNotExistException"


class Outcome(enum.Enum):
    """What a failed call means for the session and for repeating it (see the module doc)."""

    NOT_EXECUTED = "not executed"
    MAYBE_EXECUTED = "maybe executed"
    RAISE = "raise"


def classify(exc: BaseException) -> Outcome:
    """Sorts a failure by the retry rule; order matters (ConnectTimeout is also a Timeout)."""
    if isinstance(
        exc,
        (
            Ice.ConnectFailedException,
            Ice.ConnectTimeoutException,
            Ice.DNSException,
            Ice.ObjectNotExistException,
            Ice.CloseConnectionException,
        ),
    ):
        return Outcome.NOT_EXECUTED
    if isinstance(exc, Ice.UserException) and exc.ice_id() == SESSION_NOT_EXIST_ID:
        return Outcome.NOT_EXECUTED
    if isinstance(exc, (Ice.SocketException, Ice.ConnectionTimeoutException, Ice.UnknownLocalException)):
        return Outcome.MAYBE_EXECUTED
    return Outcome.RAISE


def _router_unreachable(exc: BaseException) -> bool:
    """A login failure worth waiting out: the router is restarting or the link is down."""
    return isinstance(exc, Ice.LocalException) and classify(exc) is not Outcome.RAISE


@dataclass(frozen=True)
class Apis:
    """The proxies of one open session; gone is set once the session is known to be over."""

    session: PushGrid.PartnerSessionPrx
    push: PushGrid.PartnerPushPrx
    devices: PushGrid.PartnerDevicesPrx
    gone: threading.Event = field(default_factory=threading.Event, compare=False)


class SessionClosed(Exception):
    """The client was closed; no further calls are possible."""


class Session:
    """The partner's session: opened once, reopened on demand, safe to share between threads.

    One lock serializes logins. The connection's close callback runs on an Ice thread pool
    thread (the one that also reads replies) and therefore only sets an Event, never waits for
    the lock: waiting there while a login holds the lock and waits for its reply would deadlock.
    """

    def __init__(
        self,
        router: Glacier2.RouterPrx,
        app_key: str,
        secret: str,
        reconnect_timeout: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        as_session: Callable[[object], PushGrid.PartnerSessionPrx] = PushGrid.PartnerSessionPrx.uncheckedCast,
    ) -> None:
        """sleep, clock and as_session are seams for unit tests with a fake router."""
        self._router = router
        self._as_session = as_session
        self._app_key = app_key
        self._secret = secret
        self.reconnect_timeout = reconnect_timeout
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._apis: Apis | None = None
        self._closed = False
        self.reopened = 0  # logins after the first, for tools and tests to report

    # ---- life cycle

    def open(self) -> Apis:
        """The first login: raises at once (PermissionDenied, ConnectFailed...) without waiting."""
        with self._lock:
            return self._login()

    def close(self) -> None:
        """Destroys the session at the router; safe to call twice and with the router gone."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._apis is not None and not self._apis.gone.is_set():
                self._apis.gone.set()
                self._destroy_quietly()
            self._apis = None

    # ---- calls

    def call(self, fn: Callable[[Apis], T], idempotent: bool) -> T:
        """fn(apis) on the open session, reopening and repeating it as the retry rule allows."""
        repeats = 0
        while True:
            apis = self._current()
            try:
                return fn(apis)
            except Exception as exc:
                outcome = classify(exc)
                if outcome is Outcome.RAISE:
                    raise
                self._lost(apis, exc)
                if (outcome is Outcome.MAYBE_EXECUTED and not idempotent) or repeats >= MAX_REPEATS:
                    raise
                repeats += 1

    def _current(self) -> Apis:
        """The open session, or a new one if the last is known to be gone (waits for the router)."""
        with self._lock:
            if self._closed:
                raise SessionClosed("the partner client is closed")
            if self._apis is not None and not self._apis.gone.is_set():
                return self._apis
            return self._reopen()

    def _lost(self, apis: Apis, exc: BaseException) -> None:
        """Marks that session gone, so the next call logs in again.

        Where the router itself answered (ObjectNotExist from the gateway, UnknownLocalException
        when the gateway is unreachable) the connection, and with it the router's session, may
        still be alive: end it, or the router refuses the new login with "session exists".
        """
        with self._lock:
            if apis.gone.is_set():
                return
            apis.gone.set()
            if isinstance(exc, (Ice.ObjectNotExistException, Ice.UnknownLocalException)) and apis is self._apis:
                self._destroy_quietly()

    # ---- logging in (with the lock held)

    def _reopen(self) -> Apis:
        deadline = self._clock() + self.reconnect_timeout
        attempt = 0
        while True:
            try:
                apis = self._login()
                self.reopened += 1
                return apis
            except Exception as exc:
                if not _router_unreachable(exc) or self._clock() >= deadline:
                    raise
            wait = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
            self._sleep(max(0.0, min(wait, deadline - self._clock())))
            attempt += 1

    def _login(self) -> Apis:
        """createSession, then heartbeats at the router's ACM timeout, then the session's proxies."""
        raw = self._router.createSession(self._app_key, self._secret)
        try:
            session = self._as_session(raw)
            if session is None:
                raise Glacier2.CannotCreateSessionException(reason="the router returned no session")
            gone = threading.Event()
            self._keep_alive(gone)
            apis = Apis(session, session.pushApi(), session.devicesApi(), gone)
        except BaseException:
            self._destroy_quietly()
            raise
        self._apis = apis
        return apis

    def _keep_alive(self, gone: threading.Event) -> None:
        """As Glacier2.Application: heartbeat always at the router's ACM timeout (its session
        timeout if it has no ACM), so a live partner's connection is never quiet; and learn when
        the connection closes, so the next call knows the session is gone before it is sent."""
        try:
            timeout = self._router.getACMTimeout()
        except Ice.OperationNotExistException:
            timeout = 0
        if timeout <= 0:
            timeout = self._router.getSessionTimeout()
        connection = self._router.ice_getCachedConnection()
        if connection is None:
            return
        if timeout > 0:
            connection.setACM(timeout, Ice.Unset, Ice.ACMHeartbeat.HeartbeatAlways)
        connection.setCloseCallback(lambda _connection: gone.set())

    def _destroy_quietly(self) -> None:
        try:
            self._router.destroySession()
        except Exception:  # noqa: BLE001 - gone already, router unreachable: the router drops it with the connection
            pass
