"""Is an upgraded server well? Real calls through that very server, not "the process is up".

Every check goes to one server, not to its replica group: the proxy names the server's own
adapter (`DBAgent@DBAgent-1.DBAgent`) or identity (`STC-node1-2`). A server is healthy when it
is active, says it runs the expected release, and does its job:
  DBAgent        answers listApps (MySQL)
  TagAlias       answers tagSize (Redis)
  Push           answers report (through DBAgent)
  PartnerGateway its verifier and session manager answer
  Dispatcher     owns task partitions again (the consumer group took it back)
  STC            a device connecting to the node's port lands on it and gets a push sent
                 through the grid
  Console        answers on the URL it publishes (its health page, no login)
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import Ice
import IceGrid

from services import console
from services.common.contract import PushGrid
from services.common.mailbox import Mailbox
from tools.device.sdk import Credentials, Device, Message, register
from tools.grid import icegrid
from tools.partner import builders

KINDS = ("DBAgent", "TagAlias", "Push", "PartnerGateway", "Dispatcher", "STC", "Console")
HEALTH_APP = "pushgrid-health"  # the app whose device STC checks use
CALL_TIMEOUT_MS = 5000


class Unhealthy(Exception):
    """A server failed a check; the message says which and how."""


def kind(server_id: str) -> str:
    """The service a server id belongs to ("STC-node1-2" -> "STC")."""
    for k in KINDS:
        if server_id.startswith(k + "-"):
            return k
    raise ValueError(f"{server_id} is no pushgrid server")


@dataclass
class Checks:
    """The checks of one grid, through an admin session and a client communicator."""

    admin: IceGrid.AdminPrx
    communicator: Ice.Communicator
    mailbox: Mailbox
    device_url: Callable[[str], str]  # node name -> the ws:// URL its STC processes share
    timeout: float = 60.0
    _app: str = ""
    _device: Credentials | None = None

    # ---- what every server is asked

    def release_of(self, server_id: str) -> str:
        """The release a server says it runs; "" when it is not active or does not answer."""
        try:
            if self.admin.getServerState(server_id) != IceGrid.ServerState.Active:
                return ""
        except (Ice.Exception, IceGrid.ServerNotExistException, IceGrid.NodeUnreachableException):
            return ""
        return icegrid.server_release(self.admin, server_id)

    def check(self, server_id: str, version: str) -> None:
        """The full check after a server started: its release, then its job (Unhealthy if not)."""
        deadline = time.monotonic() + self.timeout
        running = self.release_of(server_id)
        while running != version:  # a server without adapters is Active before it is ready
            if running or time.monotonic() > deadline:
                raise Unhealthy(f"{server_id} runs {running or 'nothing'}, not {version}")
            time.sleep(0.2)
            running = self.release_of(server_id)
        self.probe(server_id)
        if kind(server_id) == "Dispatcher":
            self._owns_partitions(server_id)
        elif kind(server_id) == "STC":
            self._device_reaches(server_id)

    def probe(self, server_id: str) -> None:
        """One cheap real call through the server (also what a soak repeats)."""
        k = kind(server_id)
        try:
            if k == "DBAgent":
                self._prx(PushGrid.DBAgentPrx, f"DBAgent@{server_id}.DBAgent").listApps()
            elif k == "TagAlias":
                self._prx(PushGrid.TagAliasPrx, f"TagAlias@{server_id}.TagAlias").tagSize(self.app(), "health")
            elif k == "Push":
                self._prx(PushGrid.PushServicePrx, f"Push@{server_id}.Push").report(self.app(), [])
            elif k == "PartnerGateway":
                for name in ("PartnerVerifier", "PartnerSessionManager"):
                    self._prx(Ice.ObjectPrx, f"{name}@{server_id}.PartnerGateway").ice_ping()
            elif k == "STC":
                self._prx(PushGrid.STCPrx, server_id).info()
            elif k == "Dispatcher":  # no Ice object: its liveness is its process and partitions
                if self.admin.getServerState(server_id) != IceGrid.ServerState.Active:
                    raise Unhealthy(f"{server_id} is not active")
            elif k == "Console":  # no Ice object: its web server
                url = icegrid.server_property(self.admin, server_id, console.URL_PROPERTY)
                if not url:
                    raise Unhealthy(f"{server_id} publishes no {console.URL_PROPERTY}")
                with urllib.request.urlopen(url + console.HEALTH_PATH.lstrip("/"), timeout=CALL_TIMEOUT_MS / 1000):
                    pass
        except (Ice.Exception, PushGrid.PushGridError, OSError) as exc:
            raise Unhealthy(f"{server_id} failed a real call: {type(exc).__name__}: {exc}") from None

    # ---- kind-specific

    def _prx(self, cls: Any, text: str) -> Any:  # Ice's proxy classes are untyped
        prx = self.communicator.stringToProxy(text).ice_invocationTimeout(CALL_TIMEOUT_MS)
        return cls.uncheckedCast(prx.ice_connectionCached(False))

    def _owns_partitions(self, server_id: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.mailbox.partitions().get(server_id):
            if time.monotonic() > deadline:
                raise Unhealthy(f"{server_id} owns no task partitions {self.timeout:.0f}s after starting")
            time.sleep(0.2)

    def app(self) -> str:
        """The health app's key, made through DBAgent the first time."""
        if not self._app:
            db = PushGrid.DBAgentPrx.uncheckedCast(self.communicator.stringToProxy("DBAgent"))
            found = [a.appKey for a in db.listApps() if a.name == HEALTH_APP]
            self._app = found[0] if found else db.createApp(HEALTH_APP, 0).appKey
        return self._app

    def _device_reaches(self, server_id: str) -> None:
        node = self.admin.getServerInfo(server_id).node
        try:
            asyncio.run(asyncio.wait_for(self._device_check(server_id, self.device_url(node)), self.timeout))
        except TimeoutError:
            raise Unhealthy(f"no device reached {server_id} and got a push within {self.timeout:.0f}s") from None

    async def _device_check(self, server_id: str, url: str) -> None:
        """Connects the health device until the kernel hands it to server_id (SO_REUSEPORT
        spreads connections over the node's STC processes), then pushes to it through Push."""
        if self._device is None:
            self._device = await register(url, self.app(), "android")
        got: asyncio.Queue[Message] = asyncio.Queue()
        while True:
            device = Device(self._device, [url], on_message=got.put_nowait)
            device.start()
            await device.connected.wait()
            if device.stc == server_id:
                break
            await device.close()
        try:
            push = PushGrid.PushServicePrx.uncheckedCast(self.communicator.stringToProxy("Push"))
            request = builders.push_request(
                builders.audience(registration_ids=[self._device.registration_id]),
                notification=f"health check of {server_id}",
                options=builders.options(ttl=0),
            )
            sent = await asyncio.get_running_loop().run_in_executor(None, push.push, self.app(), request)
            while (await got.get()).msg_id != sent.msgId:
                pass
        finally:
            await device.close()
