"""A Python device SDK for the pushgrid device protocol (services/stc/PROTOCOL.md).

`register` makes a new device; `Device` keeps one connected: hello, heartbeats, batched acks,
each msg id shown once, and reconnects as the protocol says (1012: at once to the same address;
anything else: backoff from 1 s doubling to 60 s with jitter, moving to the next address). One
task per device and no threads, so thousands of devices run in one process.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

SDK_NAME = "pushgrid-py/1"
REGISTRATION_REFUSED = 4029  # PROTOCOL.md: too many registrations (retry in N s), or the app's device limit
ACKS_PER_FRAME = 100  # PROTOCOL.md: acks go in batches of at most 100 ids
ACK_DELAY = 0.05  # seconds a device gathers acks, so a burst of messages costs one ack frame
DEDUPE_WINDOW = 10_000  # msg ids remembered to show each once


def _connect(url: str, local_host: str | None = None) -> connect:
    """Opens a connection to STC (use with `async with`), from local_host if given: no WebSocket
    pings (the device sends heartbeat frames instead) and no compression (STC does not offer it)."""
    local: dict[str, Any] = {"local_addr": (local_host, 0)} if local_host else {}
    return connect(url, ping_interval=None, compression=None, open_timeout=10, close_timeout=5, **local)


class DeviceError(Exception):
    """The device cannot go on: its reason says why (close code and reason from STC)."""


class RegistrationFailed(DeviceError):
    pass


class AuthenticationFailed(DeviceError):
    """STC closed with 4001: the credentials are not (or no longer) valid; register again."""


class Replaced(DeviceError):
    """STC closed with 4004: a newer connection of the same registration id took over."""


@dataclass(frozen=True)
class Credentials:
    app_key: str
    registration_id: str
    device_token: str
    platform: str = "android"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Credentials:
        return cls(d["app_key"], d["registration_id"], d["device_token"], d.get("platform", "android"))


@dataclass(frozen=True)
class Message:
    """One msg frame as the device shows it."""

    msg_id: int
    replay: bool
    notification: dict[str, Any] | None
    message: dict[str, Any] | None
    override_msg_id: int

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> Message:
        return cls(
            int(f["msg_id"]),
            bool(f.get("replay")),
            f.get("notification"),
            f.get("message"),
            int(f.get("override_msg_id") or 0),
        )


async def register(
    url: str, app_key: str, platform: str = "android", local_host: str | None = None, patience: float = 60.0
) -> Credentials:
    """Registers a new device of app_key (once per install), from local_host if given.

    Told to wait (close 4029 with `retry in N s`: too many registrations from this address or
    for this app), it waits and tries again while patience (seconds) lasts; any other refusal,
    and the app's device limit, raise RegistrationFailed."""
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        try:
            async with _connect(url, local_host) as ws:
                await ws.send(json.dumps({"op": "register", "app_key": app_key, "platform": platform}))
                reply = json.loads(await ws.recv())
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd else ""
            wait = _retry_after(reason) if _code(exc) == REGISTRATION_REFUSED else None
            if wait is not None and asyncio.get_running_loop().time() + wait < deadline:
                await asyncio.sleep(wait * random.uniform(1.0, 1.5))
                continue
            raise RegistrationFailed(f"STC closed with {_code(exc)}: {reason}") from None
        if reply.get("op") != "registered":
            raise RegistrationFailed(f"unexpected reply {reply!r}")
        return Credentials(app_key, reply["registration_id"], reply["device_token"], platform)


def _retry_after(reason: str) -> float | None:
    """The N of `retry in N s` in a close reason; None if it gives none."""
    found = re.search(r"retry in (\d+) s", reason)
    return float(found.group(1)) if found else None


def _code(exc: ConnectionClosed) -> int | None:
    return exc.rcvd.code if exc.rcvd else None


@dataclass
class Stats:
    """What a device has seen; a simulator sums these over its devices."""

    received: int = 0  # distinct msg ids shown
    duplicates: int = 0  # msg ids seen again (at least once delivery), not shown
    acked: int = 0  # msg ids acknowledged
    connects: int = 0  # welcomes
    closes: dict[int | None, int] = field(default_factory=dict)  # close code (None: network) -> count


class Device:
    """One device kept connected to STC until close() or a close code that ends it (4001, 4004)."""

    def __init__(
        self,
        creds: Credentials,
        urls: Sequence[str],
        on_message: Callable[[Message], None] | None = None,
        ack_delay: float = ACK_DELAY,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        if not urls:
            raise ValueError("a device needs at least one STC url")
        self.creds = creds
        self.urls = list(urls)
        self.on_message = on_message
        self.ack_delay = ack_delay
        self.backoff = backoff
        self.stats = Stats()
        self.stc = ""  # the STC id from the last welcome
        self.connected = asyncio.Event()  # set between a welcome and the connection's end
        self.error: DeviceError | None = None  # why run() ended, if STC ended it
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._ws: ClientConnection | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None

    # ---- life cycle

    def start(self) -> asyncio.Task[Any]:
        self._task = asyncio.create_task(self.run())
        return self._task

    async def close(self) -> None:
        """Disconnects (close 1000) and stops reconnecting."""
        self._stopping.set()
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        """Connects, and reconnects as PROTOCOL.md says, until close() or a terminal close code."""
        attempt, index = 0, 0
        while not self._stopping.is_set():
            welcomed, code = await self._connect_once(self.urls[index % len(self.urls)])
            self.stats.closes[code] = self.stats.closes.get(code, 0) + 1
            if welcomed:
                attempt = 0
            if self._stopping.is_set():
                return
            if code == 4001:
                self.error = AuthenticationFailed("STC refused the credentials (4001)")
                return
            if code == 4004:
                self.error = Replaced("replaced by a newer connection (4004)")
                return
            if code == 1012:
                continue  # STC restarting: at once, same address (another process takes it)
            index += 1
            delay = min(self.backoff[1], self.backoff[0] * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    # ---- one connection

    async def _connect_once(self, url: str) -> tuple[bool, int | None]:
        """One connection's life; (welcomed, close code or None for a network error)."""
        welcomed = False
        try:
            async with _connect(url) as ws:
                self._ws = ws
                if self._stopping.is_set():
                    return False, 1000
                c = self.creds
                await ws.send(
                    json.dumps(
                        {
                            "op": "hello",
                            "app_key": c.app_key,
                            "registration_id": c.registration_id,
                            "device_token": c.device_token,
                            "sdk": SDK_NAME,
                        }
                    )
                )
                async with asyncio.timeout(15):
                    welcome = json.loads(await ws.recv())
                if welcome.get("op") != "welcome":
                    return False, None
                welcomed = True
                self.stc = welcome.get("stc", "")
                self.stats.connects += 1
                self.connected.set()
                await self._serve(ws, float(welcome.get("heartbeat") or 30))
                return True, 1000
        except ConnectionClosed as exc:
            return welcomed, _code(exc)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError):
            return welcomed, None
        finally:
            self._ws = None
            self.connected.clear()

    async def _serve(self, ws: ClientConnection, heartbeat: float) -> None:
        """Reads messages; sends acks (batched) and pings (every heartbeat) between them."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + heartbeat
        acks: list[int] = []
        ack_due = 0.0
        while True:
            wake = min(next_ping, ack_due) if acks else next_ping
            raw = None
            try:
                async with asyncio.timeout_at(wake):
                    raw = await ws.recv()
            except TimeoutError:
                pass
            if raw is not None:
                msg_id = self._take(json.loads(raw))
                if msg_id is not None:
                    if not acks:
                        ack_due = loop.time() + self.ack_delay
                    acks.append(msg_id)
            now = loop.time()
            if acks and (len(acks) >= ACKS_PER_FRAME or now >= ack_due):
                await ws.send(json.dumps({"op": "ack", "msg_ids": acks}))
                self.stats.acked += len(acks)
                acks = []
            if now >= next_ping:
                await ws.send('{"op":"ping"}')
                next_ping = now + heartbeat

    def _take(self, frame: dict[str, Any]) -> int | None:
        """Shows a msg frame unless its id was seen; returns the id to ack (None: not a message)."""
        if frame.get("op") != "msg":
            return None
        msg = Message.from_frame(frame)
        if msg.msg_id in self._seen:
            self.stats.duplicates += 1
            return msg.msg_id
        self._seen[msg.msg_id] = None
        if len(self._seen) > DEDUPE_WINDOW:
            self._seen.popitem(last=False)
        self.stats.received += 1
        if self.on_message is not None:
            self.on_message(msg)
        return msg.msg_id
