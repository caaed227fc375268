"""PartnerSessionManager: one PartnerSession per partner login, with its own objects and filters.

Each session gets a fresh random category. Its three objects (session, push, devices) are added
to this gateway's adapter under it, and the router is told, through the session's
SessionControl, that the partner may reach that category and nothing else: not DBAgent, Push,
STC or IceGrid, and not another session's objects. The app key the objects act for is the one
the router verified; no operation lets the partner name another.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass

import Ice

from glacier2.partner import Backends, PartnerDevicesI, PartnerPushI
from services.common import limits
from services.common.contract import Glacier2, PushGrid

log = logging.getLogger(__name__)

NAMES = ("session", "push", "devices")


@dataclass
class Live:
    """A session this gateway holds."""

    app_key: str
    category: str
    control: Glacier2.SessionControlPrx


class SessionTable:
    """The live sessions of this gateway, by category, with a count per app."""

    def __init__(self, per_app: int = limits.PARTNER_SESSIONS_PER_APP) -> None:
        self._per_app = per_app
        self._lock = threading.Lock()
        self._live: dict[str, Live] = {}

    def add(self, live: Live) -> None:
        """Raises CannotCreateSessionException when the app holds its limit of sessions already."""
        with self._lock:
            held = sum(1 for s in self._live.values() if s.app_key == live.app_key)
            if held >= self._per_app:
                raise Glacier2.CannotCreateSessionException(
                    reason=f"the app has {held} open sessions, the most allowed; close one first"
                )
            self._live[live.category] = live

    def pop(self, category: str) -> Live | None:
        with self._lock:
            return self._live.pop(category, None)

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
        self._adapter.add(servant, identity)
        return self._adapter.createIndirectProxy(identity)

    def end(self, category: str, why: str) -> None:
        """Removes a session's objects; a second end of the same session does nothing."""
        live = self.table.pop(category)
        for name in NAMES:
            try:
                self._adapter.remove(Ice.Identity(name=name, category=category))
            except (Ice.NotRegisteredException, Ice.ObjectAdapterDeactivatedException):
                pass
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
