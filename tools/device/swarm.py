"""Many devices in one process, as cheaply as the device protocol allows: the load generator.

Each device is a picows protocol object on a uvloop loop: no task, no queue and no timer of its
own while idle. A frame from the server is a callback that records the msg id it carries. Acks
are gathered as the device SDK gathers them (ACK_DELAY), and sent once the swarm has had no
message for that long (at most ACK_DELAY_MAX late): on a real network every device has a CPU of
its own, so one device's ack never holds up another's message, and the swarm keeps that true on
shared cores by taking messages before it writes acks. One task per swarm sends the heartbeats
that are due, and a bounded number of handshakes run at once, as real devices arrive. The swarm
counts the CPU its process used, so a benchmark can show the load generator was not the limit.

Two kinds of server are spoken to (`hello` says which): pushgrid's STC (hello, welcome, msg
frames acknowledged by msg id; services/stc/PROTOCOL.md) and a plain subscriber endpoint such
as nginx nchan's, where the connection is the subscription and every frame is a message whose
JSON names its msg_id.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tools.device.sdk import ACK_DELAY, ACKS_PER_FRAME

ACK_DELAY_MAX = 2.0  # seconds an ack may wait while messages keep arriving

HANDSHAKES_IN_FLIGHT = 100
RECONNECT_SECONDS = 1.0  # plus up to as much again at random, like the device SDK's backoff
NEVER = float("inf")


@dataclass
class Tally:
    """What a swarm reports: devices connected now, handshakes refused, and (msg id, arrival time)
    of each message the first time a device saw it."""

    connected: int = 0
    failed: int = 0
    received: list[tuple[int, float]] = field(default_factory=list)

    def take_received(self) -> list[tuple[int, float]]:
        got, self.received = self.received, []
        return got


class SwarmDevice(WSListener):
    """One device of the swarm (a pushgrid device when app is set, else a plain subscriber)."""

    __slots__ = ("_seen", "acks", "app", "heartbeat", "index", "next_ping", "rid", "swarm", "token", "welcomed", "ws")

    def __init__(self, swarm: Swarm, index: int, rid: str, token: str) -> None:
        self.swarm, self.index = swarm, index
        self.rid, self.token = rid, token
        self.app = swarm.app
        self.ws: WSTransport | None = None
        self.welcomed = False
        self.heartbeat = NEVER
        self.next_ping = NEVER
        self._seen: set[int] = set()
        self.acks: list[int] = []  # msg ids taken, not yet acknowledged

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        if not self.app:  # a subscriber: connected is subscribed
            self._welcome(NEVER)
            return
        hello = {"op": "hello", "app_key": self.app, "registration_id": self.rid, "device_token": self.token}
        transport.send(WSMsgType.TEXT, orjson.dumps({**hello, "sdk": "swarm/1"}))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        obj = orjson.loads(frame.get_payload_as_memoryview())
        op = obj.get("op") if self.app else "msg"
        if op == "msg":
            msg_id = int(obj["msg_id"])
            if msg_id not in self._seen:
                self._seen.add(msg_id)
                self.swarm.tally.received.append((msg_id, time.time()))
            if self.app:
                self.swarm.last_message = time.monotonic()
                if not self.acks:
                    self.swarm.ack_later(self)
                self.acks.append(msg_id)
        elif op == "welcome":
            self._welcome(float(obj.get("heartbeat", 30)))

    def _welcome(self, heartbeat: float) -> None:
        self.welcomed = True
        self.swarm.tally.connected += 1
        self.heartbeat = heartbeat * 0.8  # a ping a little before the server expects one
        self.next_ping = time.monotonic() + self.heartbeat

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.ws = None
        if self.welcomed:
            self.welcomed = False
            self.swarm.tally.connected -= 1
        self.swarm.lost(self)

    def send_acks(self) -> None:
        """Acknowledges what the device took since its last ack, ACKS_PER_FRAME ids a frame."""
        ids, self.acks = self.acks, []
        if self.ws is None:
            return  # lost with the connection: the next hello replays them
        for i in range(0, len(ids), ACKS_PER_FRAME):
            listed = b",".join(b"%d" % m for m in ids[i : i + ACKS_PER_FRAME])
            self.ws.send(WSMsgType.TEXT, b'{"op":"ack","msg_ids":[%s]}' % listed)

    def ping(self, now: float) -> None:
        if self.ws is not None:
            self.ws.send(WSMsgType.TEXT, b'{"op":"ping"}')
        self.next_ping = now + self.heartbeat


class Swarm:
    """Devices (rid, token) spread over urls, each from a source address of local_ips (so no
    source address runs out of ports); runs on the calling event loop until stop()."""

    def __init__(
        self, app: str, devices: Sequence[tuple[str, str]], urls: Sequence[str], local_ips: Sequence[str]
    ) -> None:
        self.app = app
        self.tally = Tally()
        self._devices = [SwarmDevice(self, i, rid, token) for i, (rid, token) in enumerate(devices)]
        self._urls, self._ips = list(urls), list(local_ips)
        self._handshakes = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._acking: list[SwarmDevice] = []  # devices with acks to send when the timer fires
        self._acks_since = 0.0  # when the oldest of those acks was taken
        self.last_message = 0.0  # when a device of the swarm last took a message

    def start(self) -> None:
        for device in self._devices:
            self._spawn(self._connect(device))
        self._spawn(self._heartbeats())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, device: SwarmDevice, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        url, ip = self._urls[device.index % len(self._urls)], self._ips[device.index % len(self._ips)]
        async with self._handshakes:
            if self._stopping:
                return
            try:
                await ws_connect(lambda: device, url, local_addr=(ip, 0), websocket_handshake_timeout=120)
            except Exception:  # noqa: BLE001 - refused, reset or timed out: try again as a device would
                self.tally.failed += 1
                self.lost(device)

    def ack_later(self, device: SwarmDevice) -> None:
        """Sends device's acks with those of every device that takes a message meanwhile, when
        messages pause for ACK_DELAY: one timer for the swarm, not one per device."""
        if not self._acking:
            self._acks_since = time.monotonic()
            asyncio.get_running_loop().call_later(ACK_DELAY, self._send_acks)
        self._acking.append(device)

    def _send_acks(self) -> None:
        now = time.monotonic()
        if now - self.last_message < ACK_DELAY and now - self._acks_since < ACK_DELAY_MAX:
            asyncio.get_running_loop().call_later(ACK_DELAY, self._send_acks)  # messages still coming
            return
        devices, self._acking = self._acking, []
        for device in devices:
            device.send_acks()

    def lost(self, device: SwarmDevice) -> None:
        """A device's connection ended: it comes back after a pause, unless the swarm stops."""
        if not self._stopping:
            self._spawn(self._connect(device, RECONNECT_SECONDS * (1 + random.random())))

    async def _heartbeats(self) -> None:
        """Pings every device whose heartbeat is due, once a second."""
        while not self._stopping:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for device in self._devices:
                if device.next_ping <= now:
                    device.ping(now)

    async def stop(self) -> None:
        self._stopping = True
        for device in self._devices:
            if device.ws is not None:
                device.ws.disconnect(graceful=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
