"""STC's WebSocket side: device connections on /v1/device, and the web device page on / .

Each connection gets a reader (this module: frame checks, auth and heartbeat timeouts, rate
limit, close codes of PROTOCOL.md) and a writer (Link: a bounded outbox, so the engine never
waits on a device and a device that stops reading is closed instead of holding memory). Several
STC processes bind the same port (SO_REUSEPORT); the kernel spreads new connections over them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from services.common import limits
from services.stc import protocol
from services.stc.engine import BackendUnavailable, Engine, Session
from services.stc.protocol import Close, DeviceError

log = logging.getLogger(__name__)

DEVICE_PATH = "/v1/device"
WEB_DIR = Path(__file__).parent / "web"  # the web device page, part of this package
WEB_FILES = {  # path -> (file in WEB_DIR, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/device.html": ("index.html", "text/html; charset=utf-8"),
    "/device.js": ("device.js", "text/javascript; charset=utf-8"),
}


@dataclass(frozen=True)
class DeviceLimits:
    """Per-connection limits (PROTOCOL.md); tests shrink the timeouts."""

    frame_max: int = limits.DEVICE_FRAME_MAX_BYTES
    auth_timeout: float = limits.DEVICE_AUTH_TIMEOUT_SECONDS
    heartbeat: float = limits.HEARTBEAT_SECONDS
    frames_per_second: int = limits.DEVICE_FRAMES_PER_SECOND
    outbox_max: int = limits.DEVICE_OUTBOX_MAX


class TokenBucket:
    """At most `rate` frames per second on average, in bursts of at most `rate`."""

    def __init__(self, rate: float, now: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class DeviceConnection(ServerConnection):
    """Notes when the device last sent anything, WebSocket pings included, for the heartbeat."""

    last_heard: float = 0.0

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()
        super().data_received(data)


class Link:
    """The engine's handle on one connection (engine.Conn): a bounded outbox and its writer task."""

    def __init__(self, ws: ServerConnection, outbox_max: int) -> None:
        self._ws = ws
        self._outbox: asyncio.Queue[str] = asyncio.Queue(outbox_max)
        self._writer = asyncio.create_task(self._write())
        self._closer: asyncio.Task[Any] | None = None

    def send(self, frame: str) -> bool:
        if self._closer is not None:
            return False
        try:
            self._outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(Close.TOO_SLOW, "too many frames waiting: the device does not read")
            return False
        return True

    @property
    def closing(self) -> bool:
        return self._closer is not None

    def close(self, code: int, reason: str) -> None:
        if self._closer is None:
            self._writer.cancel()
            self._closer = asyncio.create_task(self._ws.close(code, reason))

    async def _write(self) -> None:
        try:
            while True:
                await self._ws.send(await self._outbox.get())
        except ConnectionClosed:
            pass

    async def finish(self) -> None:
        """Stops the writer and waits for a close this link started."""
        self._writer.cancel()
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)


class DeviceHandler:
    """One connection's conversation: register, or hello then pings and acks."""

    def __init__(self, ws: DeviceConnection, engine: Engine, lim: DeviceLimits) -> None:
        self.ws = ws
        self.engine = engine
        self.lim = lim
        self.link = Link(ws, lim.outbox_max)
        self.session: Session | None = None
        loop = asyncio.get_running_loop()
        self.auth_deadline = loop.time() + lim.auth_timeout
        self.bucket = TokenBucket(lim.frames_per_second, loop.time())
        ws.last_heard = loop.time()

    async def run(self) -> None:
        try:
            await self._converse()
        except DeviceError as err:
            self.link.close(err.code, err.reason)
        except BackendUnavailable as exc:  # PROTOCOL.md: 4011, the device reconnects with backoff
            internal = protocol.InternalError(str(exc))
            self.link.close(internal.code, internal.reason)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("device connection failed")
            self.link.close(Close.INTERNAL, "STC internal error")
        finally:
            if self.session is not None:
                self.engine.disconnected(self.session)
            await self._drain()
            await self.link.finish()

    async def _drain(self) -> None:
        """Drops what the device still sends until the close handshake ends: websockets stops
        reading the socket while frames wait unread, and would never see the device's close."""
        try:
            async with asyncio.timeout(self.ws.close_timeout or 5):
                while True:
                    await self.ws.recv()
        except (ConnectionClosed, TimeoutError):
            pass

    async def _converse(self) -> None:
        while not self.link.closing:  # closed by the engine (takeover, too slow, restart)
            frame = await self._next_frame()
            if self.session is None:
                if isinstance(frame, protocol.Register):
                    await self.ws.send(await self.engine.register(frame.app_key, frame.platform))
                    self.link.close(Close.NORMAL, "registered")
                    return
                if not isinstance(frame, protocol.Hello):
                    raise protocol.OutOfOrder("hello must be the first frame")
                self.session = await self.engine.hello(self.link, frame)
                await self.engine.replay(self.session)
            elif isinstance(frame, protocol.Ack):
                self.engine.ack(self.session, frame.msg_ids)
            elif isinstance(frame, protocol.Ping):
                self.link.send(protocol.PONG)
            else:
                raise protocol.OutOfOrder("hello or register sent twice")

    async def _next_frame(self) -> protocol.Frame:
        """The next frame, within the auth timeout (before hello) or three heartbeats (after)."""
        loop = asyncio.get_running_loop()
        while True:
            if self.session is None:
                deadline = self.auth_deadline
                if loop.time() >= deadline:
                    raise protocol.AuthTimeout(f"no hello within {self.lim.auth_timeout:g} seconds")
            else:
                deadline = self.ws.last_heard + 3 * self.lim.heartbeat
                if loop.time() >= deadline:
                    raise protocol.HeartbeatTimeout("no heartbeat")
            try:
                async with asyncio.timeout_at(deadline):
                    data = await self.ws.recv()
            except TimeoutError:
                continue  # a WebSocket ping may have moved last_heard: look again
            if not self.bucket.take(loop.time()):
                raise protocol.RateLimited(f"more than {self.lim.frames_per_second} frames per second")
            if not isinstance(data, str):
                raise protocol.BadFrame("binary frames are not allowed")
            return protocol.parse(data)


class Transport:
    """The device listener of one STC process."""

    def __init__(self, engine: Engine, host: str, port: int, lim: DeviceLimits = DeviceLimits()) -> None:
        self._engine = engine
        self._host = host
        self._port = port
        self._lim = lim
        self._pages = {path: ((WEB_DIR / name).read_bytes(), ctype) for path, (name, ctype) in WEB_FILES.items()}
        self._server: Server | None = None

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            reuse_port=True,
            create_connection=DeviceConnection,
            process_request=self._http,
            max_size=self._lim.frame_max,
            compression=None,  # zlib state per connection costs too much
            ping_interval=None,  # devices send heartbeats; STC only listens for them
            close_timeout=5,
        )

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self, timeout: float = 10) -> None:
        """Stops listening, then closes every connection with 1012 so devices reconnect elsewhere."""
        if self._server is None:
            return
        self._server.close(close_connections=True, code=Close.RESTARTING, reason="STC restarting")
        try:
            await asyncio.wait_for(self._server.wait_closed(), timeout)
        except TimeoutError:
            log.warning("device connections still closing after %.0fs", timeout)

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, DeviceConnection)  # serve() makes every connection with create_connection
        await DeviceHandler(ws, self._engine, self._lim).run()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Lets /v1/device through to the WebSocket handshake and serves the web device page."""
        path = urlsplit(request.path).path
        if path == DEVICE_PATH:
            return None
        page = self._pages.get(path)
        if page is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        body, ctype = page
        headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache")])
        return Response(HTTPStatus.OK, "OK", headers, body)
