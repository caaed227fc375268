"""Who may use the console: IceGrid's own admin login, browser sessions over it, and a throttle.

The console keeps no password. A login is an IceGrid admin session opened with the user and
password typed (the registry checks them against its crypt file, IceGrid.Registry.AdminCryptPasswords),
and the browser session holds that admin session until the operator logs out or leaves it idle:
every grid read the console makes for that browser is that operator's. The browser gets a random
token in an HttpOnly, SameSite=Strict cookie; the console keeps only its SHA-256.

Failed logins are counted per client address (5 a minute): past that, the address is refused
for the rest of the minute without asking the registry.
"""

from __future__ import annotations

import collections
import hashlib
import http.cookies
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

COOKIE = "pushgrid_console"
MAX_FAILURES = 5  # failed logins per address ...
FAILURE_WINDOW_SECONDS = 60.0  # ... within this window
MAX_ADDRESSES = 10_000  # addresses the throttle remembers at most (the oldest are forgotten)
MAX_SESSIONS = 100  # open browser sessions at most (the longest idle is closed for a new one)
MAX_AGE_SECONDS = 12 * 3600  # a session ends this long after its login, used or not
USER_MAX_CHARS = 64
PASSWORD_MAX_CHARS = 256


class LoginRefused(Exception):
    """The registry refused the user and password (or they could not be right)."""


class LoginThrottled(Exception):
    """Too many failed logins from this address: retry_after seconds until the next is heard."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {max(1, round(retry_after))} s")
        self.retry_after = retry_after


class RegistryUnreachable(Exception):
    """Neither registry answered: a login cannot be checked now."""


class GridSession(Protocol):
    """An operator's hold on the grid (an IceGrid admin session): its admin proxy, and the end."""

    @property
    def admin(self) -> Any: ...

    def close(self) -> None: ...


Login = Callable[[str, str], GridSession]  # user, password -> a session; LoginRefused if wrong


class Throttle:
    """Failed logins per client address within a sliding window, in memory."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self._max, self._window, self._clock, self._max_addresses = max_failures, window, clock, max_addresses
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """LoginThrottled if address failed max_failures times within the window."""
        with self._lock:
            recent = self._recent(address)
            if len(recent) >= self._max:
                raise LoginThrottled(recent[0] + self._window - self._clock())

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(self._clock())
            self._failures.move_to_end(address)
            while len(self._failures) > self._max_addresses:
                self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str) -> collections.deque[float]:
        recent = self._failures.setdefault(address, collections.deque())
        while recent and recent[0] <= self._clock() - self._window:
            recent.popleft()
        return recent


@dataclass
class Session:
    """One browser's login: the operator's name, their grid session, and when it was last used."""

    user: str
    grid: GridSession
    created: float
    last_used: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Sessions:
    """Browser sessions by token; each ends after idle_seconds unused (an open page polls, so it
    is used while the page is open), MAX_AGE_SECONDS after its login, at logout, or when its
    grid session is found gone (the registry restarted)."""

    def __init__(
        self,
        login: Login,
        idle_seconds: float,
        throttle: Throttle | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._login, self._idle, self._clock, self._max = login, idle_seconds, clock, max_sessions
        self.throttle = throttle or Throttle(clock=clock)
        self._sessions: dict[str, Session] = {}  # by SHA-256 of the token: the token is not kept
        self._lock = threading.Lock()

    def open(self, user: str, password: str, address: str) -> str:
        """A new session's token, once the registry accepted user and password.

        LoginThrottled before asking the registry if address failed too often; LoginRefused for
        wrong credentials (counted against address); RegistryUnreachable passes through."""
        self.throttle.check(address)
        if not user or not password or len(user) > USER_MAX_CHARS or len(password) > PASSWORD_MAX_CHARS:
            self.throttle.failed(address)
            raise LoginRefused("wrong user or password")
        try:
            grid = self._login(user, password)
        except LoginRefused:
            self.throttle.failed(address)
            log.warning("console login refused for %r from %s", user[:USER_MAX_CHARS], address)
            raise
        self.throttle.succeeded(address)
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            evicted = self._make_room()
            self._sessions[_digest(token)] = Session(user, grid, now, now)
        if evicted is not None:
            _close(evicted)
        log.info("console login of %r from %s", user, address)
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session of token (now used), or None."""
        if not token:
            return None
        key = _digest(token)
        now = self._clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[key]
            else:
                session.last_used = now
                return session
        _close(session)
        return None

    def close(self, token: str | None) -> bool:
        """Ends token's session (logout, or its grid session is gone); False if there was none."""
        if not token:
            return False
        with self._lock:
            session = self._sessions.pop(_digest(token), None)
        if session is None:
            return False
        _close(session)
        return True

    def sweep(self) -> int:
        """Ends every session idle too long; how many."""
        now = self._clock()
        with self._lock:
            idle = [k for k, s in self._sessions.items() if self._expired(s, now)]
            ended = [self._sessions.pop(k) for k in idle]
        for session in ended:
            _close(session)
        return len(ended)

    def any_admin(self) -> Any | None:
        """The admin proxy of some live session (the most recently used), for the console's own
        background reads (where servers serve their metrics); None if nobody is logged in."""
        now = self._clock()
        with self._lock:
            live = [s for s in self._sessions.values() if not self._expired(s, now)]
        return max(live, key=lambda s: s.last_used).grid.admin if live else None

    def close_all(self) -> None:
        with self._lock:
            ended = list(self._sessions.values())
            self._sessions.clear()
        for session in ended:
            _close(session)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_used > self._idle or now - session.created > MAX_AGE_SECONDS

    def __len__(self) -> int:
        return len(self._sessions)

    def _make_room(self) -> Session | None:
        """With the lock held: the longest idle session, taken out if there are max already."""
        if len(self._sessions) < self._max:
            return None
        key = min(self._sessions, key=lambda k: self._sessions[k].last_used)
        return self._sessions.pop(key)


def _close(session: Session) -> None:
    try:
        session.grid.close()
    except Exception:  # whatever ending it raised, the session is gone for the browser
        log.warning("ending the grid session of %r failed", session.user, exc_info=True)


def token_from(cookie_header: str | None) -> str | None:
    """The session token in a Cookie header, or None."""
    if not cookie_header:
        return None
    cookies = http.cookies.SimpleCookie()
    try:
        cookies.load(cookie_header)
    except http.cookies.CookieError:
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def set_cookie(token: str) -> str:
    """The Set-Cookie value for a new session: the browser's only, never sent cross-site, no
    expiry of its own (the console ends it when idle). Not Secure: the console speaks plain HTTP
    on the internal address (an SSH tunnel is the transport's protection)."""
    return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"


def clear_cookie() -> str:
    return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
