"""STC's WebSocket side: device connections on /v1/device, and the web device page on / .

Connections are picows protocol objects (a Cython WebSocket framer on asyncio's protocols): a
frame from a device is a callback, a frame to a device is written to the socket at once, and an
idle device costs no task, no queue and no buffer of its own. The only tasks are short ones for
hello and register, which wait on the directory. One sweeper per process closes devices that
did not say hello in time or stopped sending heartbeats. A device whose unwritten bytes pile up
beyond the outbox limit does not read, and is closed instead of holding memory. Several STC
processes bind the same port (SO_REUSEPORT); the kernel spreads new connections over them.

Close codes and limits are PROTOCOL.md's; the engine (engine.py) sees each connection only as a
Conn: send a frame, close with a code.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

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
READ_BUFFER_BYTES = 512  # device frames are acks and pings; picows grows it for a larger one
CLOSE_TIMEOUT_SECONDS = 5.0  # a device that does not answer our close frame is cut off after this


@dataclass(frozen=True)
class DeviceLimits:
    """Per-connection limits (PROTOCOL.md); tests shrink the timeouts."""

    frame_max: int = limits.DEVICE_FRAME_MAX_BYTES
    auth_timeout: float = limits.DEVICE_AUTH_TIMEOUT_SECONDS
    heartbeat: float = limits.HEARTBEAT_SECONDS
    frames_per_second: int = limits.DEVICE_FRAMES_PER_SECOND
    outbox_bytes: int = limits.DEVICE_OUTBOX_MAX_BYTES


class TokenBucket:
    """At most `rate` frames per second on average, in bursts of at most `rate`."""

    __slots__ = ("_at", "_rate", "_tokens")

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


def close_code(code: int) -> WSCloseCode:
    """A close code of PROTOCOL.md as picows takes it: its enum covers only the 1000s, and the
    Cython side takes any int (4000-4999 are the application's own)."""
    return cast(WSCloseCode, code)


class DeviceConnection(WSListener):
    """One device connection: the engine's Conn (send, close) and the reader of its frames."""

    __slots__ = ("_bucket", "_closing", "_server", "_waiting", "busy", "deadline", "last_heard", "session", "ws")

    def __init__(self, server: Transport) -> None:
        self._server = server
        self.ws: WSTransport | None = None
        self.session: Session | None = None
        self.last_heard = 0.0
        self.deadline = 0.0  # before hello: when the auth timeout closes it
        self._bucket: TokenBucket | None = None
        self.busy = False  # a hello or register is waiting on the directory
        self._waiting: list[protocol.Frame] = []  # frames that came while it waited
        self._closing = False

    # ---- Conn, for the engine

    def send(self, frame: str | bytes) -> bool:
        """Writes a text frame now; False if closing, or if the device stopped reading."""
        ws = self.ws
        if self._closing or ws is None:
            return False
        if ws.underlying_transport.get_write_buffer_size() > self._server.limits.outbox_bytes:
            self.close(Close.TOO_SLOW, "too many frames waiting: the device does not read")
            return False
        ws.send(WSMsgType.TEXT, frame.encode() if isinstance(frame, str) else frame)
        return True

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self, code: int, reason: str) -> None:
        """Sends a close frame; the device answers with its own, or is cut off after a while."""
        if self._closing or self.ws is None:
            return
        self._closing = True
        self.ws.send_close(close_code(code), reason.encode()[:123])
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_SECONDS, self.ws.disconnect)

    # ---- picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        now = asyncio.get_running_loop().time()
        self.last_heard = now
        self.deadline = now + self._server.limits.auth_timeout
        self._bucket = TokenBucket(self._server.limits.frames_per_second, now)
        self._server.connected(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closing = True
        self._server.disconnected(self)
        if self.session is not None:
            self._server.engine.disconnected(self.session)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = asyncio.get_running_loop().time()
        self.last_heard = now
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:  # the device's close, or its answer to ours
            if not self._closing:
                self._closing = True
                transport.send_close(frame.get_close_code(), b"")  # echoes the device's code
            transport.disconnect()
            return
        if kind == WSMsgType.PING:  # WebSocket pings count as heartbeats
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if kind == WSMsgType.PONG or self._closing:
            return
        try:
            assert self._bucket is not None
            if not self._bucket.take(now):
                raise protocol.RateLimited(f"more than {self._server.limits.frames_per_second} frames per second")
            if kind != WSMsgType.TEXT:
                raise protocol.BadFrame("binary frames are not allowed")
            if not frame.fin:
                raise protocol.BadFrame("fragmented frames are not allowed")
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                raise protocol.InvalidUtf8("a text frame must be UTF-8") from None
            parsed = protocol.parse(text)
            if self.busy:
                self._waiting.append(parsed)
            else:
                self._take(parsed)
        except DeviceError as err:
            self.close(err.code, err.reason)

    # ---- the conversation: register, or hello then pings and acks

    def _take(self, frame: protocol.Frame) -> None:
        """One parsed frame; hello and register wait on the directory in a task of their own."""
        session = self.session
        if session is None:
            if isinstance(frame, protocol.Register):
                self._run(self._register(frame))
            elif isinstance(frame, protocol.Hello):
                self._run(self._hello(frame))
            else:
                raise protocol.OutOfOrder("hello must be the first frame")
        elif isinstance(frame, protocol.Ack):
            self._server.engine.ack(session, frame.msg_ids)
        elif isinstance(frame, protocol.Ping):
            self.send(protocol.PONG)
        else:
            raise protocol.OutOfOrder("hello or register sent twice")

    def _run(self, step: Any) -> None:
        self.busy = True
        task = asyncio.get_running_loop().create_task(self._guarded(step))
        self._server.tasks.add(task)
        task.add_done_callback(self._server.tasks.discard)

    async def _guarded(self, step: Any) -> None:
        """Runs hello or register; a verdict or an unreachable backend closes with its code."""
        try:
            await step
            while self._waiting and not self._closing:
                self._take(self._waiting.pop(0))
        except DeviceError as err:
            self.close(err.code, err.reason)
        except BackendUnavailable as exc:  # PROTOCOL.md: 4011, the device reconnects with backoff
            internal = protocol.InternalError(str(exc))
            self.close(internal.code, internal.reason)
        except Exception:
            log.exception("device connection failed")
            self.close(Close.INTERNAL, "STC internal error")
        finally:
            self.busy = False

    async def _register(self, frame: protocol.Register) -> None:
        reply = await self._server.engine.register(frame.app_key, frame.platform)
        self.send(reply)
        self.close(Close.NORMAL, "registered")

    async def _hello(self, frame: protocol.Hello) -> None:
        engine = self._server.engine
        session = await engine.hello(self, frame)
        if self._closing:  # the device left while it was verified
            engine.disconnected(session)
            return
        self.session = session
        await engine.replay(session)


class Transport:
    """The device listener of one STC process."""

    def __init__(self, engine: Engine, host: str, port: int, lim: DeviceLimits = DeviceLimits()) -> None:
        self.engine = engine
        self.limits = lim
        self._host = host
        self._port = port
        self._pages = {path: ((WEB_DIR / name).read_bytes(), ctype) for path, (name, ctype) in WEB_FILES.items()}
        self._server: asyncio.Server | None = None
        self._connections: set[DeviceConnection] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # hellos and registers under way

    async def start(self) -> None:
        self._server = await ws_create_server(
            self._route,
            self._host,
            self._port,
            reuse_port=True,
            max_frame_size=self.limits.frame_max,
            enable_auto_pong=False,  # pings are heartbeats: DeviceConnection answers them itself
            websocket_handshake_timeout=self.limits.auth_timeout,
            read_buffer_init_size=READ_BUFFER_BYTES,
            use_aiofastnet=False,  # uvloop's own transports: 9 KiB per device instead of 14
            # picows gives each connection a child of a Logger it is handed (about 1 KiB each),
            # but logs through anything else as it is
            logger_name=logging.LoggerAdapter(logging.getLogger("picows.server")),
        )
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._connections)

    def connected(self, conn: DeviceConnection) -> None:
        self._connections.add(conn)

    def disconnected(self, conn: DeviceConnection) -> None:
        self._connections.discard(conn)

    async def close(self, timeout: float = 10) -> None:
        """Stops listening, then closes every connection with 1012 so devices reconnect elsewhere."""
        if self._server is None:
            return
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self._connections):
            conn.close(Close.RESTARTING, "STC restarting")
        deadline = asyncio.get_running_loop().time() + timeout
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self._connections:
            log.warning("%d device connections still closing after %.0fs", len(self._connections), timeout)
            for conn in list(self._connections):
                if conn.ws is not None:
                    conn.ws.disconnect(graceful=False)

    async def _sweep(self) -> None:
        """Closes devices past their auth deadline (no hello) or three heartbeats quiet."""
        lim = self.limits
        interval = min(lim.auth_timeout, lim.heartbeat) / 4
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            quiet_since = now - 3 * lim.heartbeat
            for conn in list(self._connections):
                if conn.closing:
                    continue
                if conn.session is None and not conn.busy and now >= conn.deadline:
                    conn.close(Close.AUTH_TIMEOUT, f"no hello within {lim.auth_timeout:g} seconds")
                elif conn.session is not None and conn.last_heard <= quiet_since:
                    conn.close(Close.HEARTBEAT_TIMEOUT, "no heartbeat")

    def _route(self, request: WSUpgradeRequest) -> WSUpgradeResponseWithListener | DeviceConnection:
        """/v1/device upgrades to a device connection; the web device page is served beside it."""
        path = request.path.decode("latin-1").split("?", 1)[0]
        if path == DEVICE_PATH:
            return DeviceConnection(self)
        page = self._pages.get(path)
        if page is None:
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(404, b"not found\n"), None)
        body, ctype = page
        ok = WSUpgradeResponse.create_ok_response(body, {"Content-Type": ctype, "Cache-Control": "no-cache"})
        return WSUpgradeResponseWithListener(ok, None)
