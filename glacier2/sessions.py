"""PartnerSessionManager: one PartnerSession per partner login, with its own objects and filters.

Each session gets a fresh random category. Its three objects (session, push, devices) are served
under it by this gateway's adapter (through a ServantTable, so a partner's request whose strings
are not UTF-8 is answered InvalidArgument), and the router is told, through the session's
SessionControl, that the partner may reach that category and nothing else: not DBAgent, Push,
STC or IceGrid, and not another session's objects. The app key the objects act for is the one
the router verified; no operation lets the partner name another.

An app's limit of sessions holds across every gateway: each session is claimed in Redis
(SharedSessions) as well as held here, and lapses there unless its gateway's sweeper refreshes
it, so the sessions of a gateway that died stop counting.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import Ice
from redis.cluster import RedisCluster

from glacier2 import metrics
from glacier2.partner import Backends, PartnerDevicesI, PartnerPushI
from services.common import limits
from services.common.backends import REDIS
from services.common.clock import now_ms
from services.common.contract import Glacier2, PushGrid
from services.common.lazy import Lazy
from services.common.lua import load_scripts
from services.common.servants import ServantTable

log = logging.getLogger(__name__)

NAMES = ("session", "push", "devices")
_CLAIM = load_scripts("glacier2", ["session_claim"])["session_claim"]
# a session lapses in Redis unless refreshed this long: three sweeps of its gateway
LAPSE_MS = 3 * int(limits.PARTNER_SESSION_SWEEP_SECONDS * 1000)


@dataclass
class Live:
    """A session this gateway holds."""

    app_key: str
    category: str
    control: Glacier2.SessionControlPrx


def _refused(held: int) -> Glacier2.CannotCreateSessionException:
    metrics.SESSIONS_REFUSED.inc()
    return Glacier2.CannotCreateSessionException(
        reason=f"the app has {held} open sessions, the most allowed; close one first"
    )


class SharedSessions:
    """Every gateway's sessions of each app, in Redis: a sorted set per app of session
    categories, scored by when each lapses. If Redis does not answer, each gateway's own count
    is the limit: partners keep working."""

    def __init__(
        self,
        connect: Callable[[], RedisCluster],
        clock: Callable[[], int] = now_ms,
        lapse_ms: int = LAPSE_MS,
    ) -> None:
        self._client = Lazy(connect)
        self._clock = clock
        self._lapse_ms = lapse_ms

    @staticmethod
    def _key(app_key: str) -> str:
        return f"pg:sessions:{{{app_key}}}"  # a verified app key: 24 hex characters

    def claim(self, live: Live, per_app: int) -> int | None:
        """Claims live's place; returns how many sessions the app holds if it is at per_app."""
        now = self._clock()
        try:
            held = self._client().eval(
                _CLAIM,
                1,
                self._key(live.app_key),
                now,
                now + self._lapse_ms,
                per_app,
                live.category,
                2 * self._lapse_ms,
            )
        except REDIS.errors as exc:
            log.warning("session of %s not counted across gateways, redis failed: %r", live.app_key, exc)
            return None
        return None if int(held) < 0 else int(held)

    def release(self, live: Live) -> None:
        try:
            self._client().zrem(self._key(live.app_key), live.category)
        except REDIS.errors as exc:  # it lapses by itself
            log.warning("session of %s not released across gateways, redis failed: %r", live.app_key, exc)

    def refresh(self, lives: Sequence[Live]) -> None:
        """Keeps this gateway's live sessions from lapsing."""
        lapses = self._clock() + self._lapse_ms
        try:
            with self._client().pipeline(transaction=False) as p:
                for live in lives:
                    p.zadd(self._key(live.app_key), {live.category: lapses})
                    p.pexpire(self._key(live.app_key), 2 * self._lapse_ms)
                p.execute()
        except REDIS.errors as exc:
            log.warning("sessions not refreshed across gateways, redis failed: %r", exc)


class SessionTable:
    """The live sessions of this gateway, by category, with a count per app; with shared, the
    app's limit counts the sessions of every gateway."""

    def __init__(self, per_app: int = limits.PARTNER_SESSIONS_PER_APP, shared: SharedSessions | None = None) -> None:
        self._per_app = per_app
        self._shared = shared
        self._lock = threading.Lock()
        self._live: dict[str, Live] = {}

    def add(self, live: Live) -> None:
        """Raises CannotCreateSessionException when the app holds its limit of sessions already."""
        with self._lock:
            held = sum(1 for s in self._live.values() if s.app_key == live.app_key)
            if held >= self._per_app:
                raise _refused(held)
            self._live[live.category] = live
        if self._shared is not None:
            everywhere = self._shared.claim(live, self._per_app)
            if everywhere is not None:
                with self._lock:
                    self._live.pop(live.category, None)
                raise _refused(everywhere)

    def pop(self, category: str) -> Live | None:
        with self._lock:
            live = self._live.pop(category, None)
        if live is not None and self._shared is not None:
            self._shared.release(live)
        return live

    def refresh(self) -> None:
        """Keeps this gateway's sessions counted across gateways (the sweeper calls it)."""
        if self._shared is not None:
            self._shared.refresh(self.snapshot())

    def snapshot(self) -> list[Live]:
        with self._lock:
            return list(self._live.values())

    def count(self, app_key: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self._live.values() if app_key is None or s.app_key == app_key)


class PartnerSessionI(PushGrid.PartnerSession):
    """The session object the partner holds; destroying it (or the router doing so) ends it."""

    def __init__(
        self, manager: SessionManagerI, live: Live, push: PushGrid.PartnerPushPrx, devices: PushGrid.PartnerDevicesPrx
    ) -> None:
        self._manager = manager
        self._live = live
        self._push = push
        self._devices = devices

    def appKey(self, current: Ice.Current = None) -> str:
        return self._live.app_key

    def pushApi(self, current: Ice.Current = None) -> PushGrid.PartnerPushPrx:
        return self._push

    def devicesApi(self, current: Ice.Current = None) -> PushGrid.PartnerDevicesPrx:
        return self._devices

    def destroy(self, current: Ice.Current = None) -> None:
        self._manager.end(self._live.category, "destroyed")


class SessionManagerI(Glacier2.SessionManager):
    """Creates sessions for app keys the router has verified, and ends them."""

    def __init__(self, adapter: Ice.ObjectAdapter, backends: Backends, table: SessionTable | None = None) -> None:
        self._adapter = adapter
        self._backends = backends
        self.table = table or SessionTable()
        self.objects = ServantTable()  # every session's objects
        adapter.addServantLocator(self.objects, "")

    def create(
        self, userId: str, control: Glacier2.SessionControlPrx, current: Ice.Current = None
    ) -> PushGrid.PartnerSessionPrx:
        if control is None:  # the router has no server endpoints: it could not filter this session
            log.error("router gave no SessionControl; refusing a session of %s", userId)
            raise Glacier2.CannotCreateSessionException(reason="the router cannot restrict sessions; tell the operator")
        category = uuid.uuid4().hex
        live = Live(userId, category, control)
        self.table.add(live)
        try:
            ids = {name: Ice.Identity(name=name, category=category) for name in NAMES}
            push = PushGrid.PartnerPushPrx.uncheckedCast(self._add(PartnerPushI(userId, self._backends), ids["push"]))
            devices = PushGrid.PartnerDevicesPrx.uncheckedCast(
                self._add(PartnerDevicesI(userId, self._backends), ids["devices"])
            )
            session = PushGrid.PartnerSessionPrx.uncheckedCast(
                self._add(PartnerSessionI(self, live, push, devices), ids["session"])
            )
            control.categories().add([category])
        except Exception:
            self.end(category, "could not be set up")
            raise
        log.info("session %s of %s created (%d open here)", category[:8], userId, self.table.count())
        return session

    def _add(self, servant: Ice.Object, identity: Ice.Identity) -> Ice.ObjectPrx:
        """Adds servant; its proxy names this gateway's own adapter id, not the replica group
        (the other gateway does not have the session) and not endpoints (the router refuses
        proxies with endpoints: glacier2/router.xml)."""
        self.objects.add(identity, servant)
        return self._adapter.createIndirectProxy(identity)

    def end(self, category: str, why: str) -> None:
        """Removes a session's objects; a second end of the same session does nothing."""
        live = self.table.pop(category)
        for name in NAMES:
            self.objects.remove(Ice.Identity(name=name, category=category))
        if live is not None:
            log.info("session %s of %s ended: %s", category[:8], live.app_key, why)

    def sweep(self) -> int:
        """Ends the sessions whose router no longer knows them (it restarted, or died): their
        SessionControl is gone. Returns how many were ended."""
        ended = 0
        for live in self.table.snapshot():
            try:
                live.control.ice_invocationTimeout(limits.PARTNER_SESSION_PING_MS).ice_ping()
            except (Ice.ObjectNotExistException, Ice.ConnectFailedException, Ice.ConnectionRefusedException):
                self.end(live.category, "its router no longer has it")
                ended += 1
            except Ice.LocalException as exc:  # a slow or busy router: look again next time
                log.debug("session %s not checked: %s", live.category[:8], exc)
        self.table.refresh()
        return ended


class Sweeper(threading.Thread):
    """Runs SessionManagerI.sweep every PARTNER_SESSION_SWEEP_SECONDS until stopped."""

    def __init__(self, manager: SessionManagerI, every: float = limits.PARTNER_SESSION_SWEEP_SECONDS) -> None:
        super().__init__(name="session-sweeper", daemon=True)
        self._manager = manager
        self._every = every
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._manager.sweep()
            except Exception:  # the sweeper must outlive one bad round (logged with its traceback)
                log.exception("session sweep failed")

    def stop(self) -> None:
        self._stop.set()
