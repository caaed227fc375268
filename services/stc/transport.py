"""STC's WebSocket side: device connections on /v1/device, and the web device page on / .

Connections are asyncio protocols on uvloop, framed by framing.py: a frame from a device is a
callback, a frame to a device is written to the socket at once (a broadcast framed once for all
its devices), and an idle device costs no task, no queue and no buffer of its own. The only tasks are short ones for
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

from services.common import limits
from services.stc import framing, metrics, protocol
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


# The frame of the last message sent, kept with the message: a broadcast hands every device the
# same bytes object, so it is framed once and the same frame is written to each.
_last_framed: tuple[bytes, bytes] = (b"", framing.frame(b""))


def _framed(message: str | bytes) -> bytes:
    """message (text, or its UTF-8 bytes) as one WebSocket text frame."""
    global _last_framed
    if isinstance(message, str):
        return framing.frame(message.encode())
    if message is not _last_framed[0]:
        _last_framed = (message, framing.frame(message))
    return _last_framed[1]


class DeviceConnection(asyncio.Protocol):
    """One device connection: the engine's Conn (send, close) and the reader of its frames.

    It starts as an HTTP request: /v1/device upgrades to a WebSocket, the web device page is
    answered and closed. Bytes of a frame not yet whole wait in `_buf`; otherwise a connection
    holds no buffer of its own (uvloop reads into one buffer per loop)."""

    __slots__ = (
        "_bucket",
        "_buf",
        "_closing",
        "_open",
        "_server",
        "_waiting",
        "busy",
        "deadline",
        "last_heard",
        "session",
        "transport",
    )

    def __init__(self, server: Transport) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.last_heard = 0.0
        self.deadline = 0.0  # before hello: when the auth timeout closes it
        self._bucket: TokenBucket | None = None
        self.busy = False  # a hello or register is waiting on the directory
        self._waiting: list[protocol.Frame] | None = None  # frames that came while it waited
        self._buf: bytes = b""
        self._open = False  # the WebSocket handshake is done
        self._closing = False

    # ---- Conn, for the engine

    def send(self, frame: str | bytes) -> bool:
        """Writes a text frame now; False if closing, or if the device stopped reading."""
        transport = self.transport
        if self._closing or transport is None or not self._open:
            return False
        if transport.get_write_buffer_size() > self._server.limits.outbox_bytes:
            self.close(Close.TOO_SLOW, "too many frames waiting: the device does not read")
            return False
        transport.write(_framed(frame))
        return True

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self, code: int, reason: str) -> None:
        """Sends a close frame; the device answers with its own, or is cut off after a while."""
        transport = self.transport
        if self._closing or transport is None:
            return
        self._closing = True
        metrics.closed(code, "stc")
        transport.write(framing.close_frame(code, reason))
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_SECONDS, transport.abort)

    def abort(self) -> None:
        """Cuts the connection off at once."""
        if self.transport is not None:
            self.transport.abort()

    # ---- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        now = asyncio.get_running_loop().time()
        self.last_heard = now
        self.deadline = now + self._server.limits.auth_timeout
        self._bucket = TokenBucket(self._server.limits.frames_per_second, now)
        self._server.connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closing and self._open:  # neither side sent a close frame
            metrics.closed(metrics.ABNORMAL, "network")
        self._closing = True
        self._server.disconnected(self)
        if self.session is not None:
            self._server.engine.disconnected(self.session)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        if not self._open:
            buf = self._handshake(buf)
        lim = self._server.limits.frame_max
        try:
            while buf and self._open:
                found = framing.next_frame(buf, lim)
                if found is None:
                    if len(buf) > lim + 14:  # a frame's header and payload, at most
                        raise framing.ProtocolViolation(1009, f"frames are at most {lim} bytes")
                    self._buf = buf
                    return
                fin, opcode, payload, used = found
                buf = buf[used:]
                self._frame(fin, opcode, payload)
        except framing.ProtocolViolation as err:
            self._violation(err.code, err.reason)

    def _handshake(self, buf: bytes) -> bytes:
        """Reads the HTTP request head; answers it. Returns the bytes after it."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > framing.HEAD_MAX_BYTES:
                self._reply(framing.response(431, "Request Header Fields Too Large", b"request head too large\n"))
            else:
                self._buf = buf
            return b""
        try:
            request = framing.parse_request(buf[:end])
        except ValueError:
            self._reply(framing.response(400, "Bad Request", b"bad request\n"))
            return b""
        assert self.transport is not None
        if request.path == DEVICE_PATH and request.wants_websocket and request.method == "GET":
            self.transport.write(framing.accept(request))
            self._open = True
            return buf[end + 4 :]
        self._reply(self._server.page(request))
        return b""

    def _reply(self, answer: bytes) -> None:
        """An HTTP answer, then the connection ends."""
        assert self.transport is not None
        self._closing = True
        self.transport.write(answer)
        self.transport.close()

    def _violation(self, code: int, reason: str) -> None:
        """A peer that breaks the framing cannot be read further: close frame, then the socket."""
        self.close(code, reason)
        self._buf = b""
        self._open = False
        if self.transport is not None:
            self.transport.close()

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self.last_heard = now
        if opcode == framing.CLOSE:  # the device's close, or its answer to ours
            if not self._closing:
                self._closing = True
                try:
                    code = framing.close_code(payload)  # echoed, as RFC 6455 asks
                except framing.ProtocolViolation as err:
                    code = err.code
                metrics.closed(code, "device")
                assert self.transport is not None
                self.transport.write(framing.close_frame(code))
            assert self.transport is not None
            self.transport.close()
            self._open = False
            return
        if opcode == framing.PING:  # WebSocket pings count as heartbeats
            if not self._closing and self.transport is not None:
                self.transport.write(framing.frame(payload, framing.PONG))
            return
        if opcode == framing.PONG or self._closing:
            return
        try:
            assert self._bucket is not None
            if not self._bucket.take(now):
                raise protocol.RateLimited(f"more than {self._server.limits.frames_per_second} frames per second")
            if opcode != framing.TEXT:
                raise protocol.BadFrame("binary frames are not allowed")
            if not fin:
                raise protocol.BadFrame("fragmented frames are not allowed")
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise protocol.InvalidUtf8("a text frame must be UTF-8") from None
            parsed = protocol.parse(text)
            if self.busy:
                if self._waiting is None:
                    self._waiting = []
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
            self._waiting = None
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
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        reply = await self._server.engine.register(frame.app_key, frame.platform, peer[0] if peer else "")
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
        self._server = await asyncio.get_running_loop().create_server(
            lambda: DeviceConnection(self), self._host, self._port, reuse_port=True, backlog=4096
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
                conn.abort()

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

    def page(self, request: framing.Request) -> bytes:
        """The HTTP answer to a request that is not a device's WebSocket: the web device page, or
        an error."""
        if request.path == DEVICE_PATH:
            return framing.response(426, "Upgrade Required", b"this is a WebSocket endpoint\n")
        page = self._pages.get(request.path)
        if page is None:
            return framing.response(404, "Not Found", b"not found\n")
        if request.method != "GET":
            return framing.response(405, "Method Not Allowed", b"GET only\n")
        body, ctype = page
        return framing.response(200, "OK", body, ctype)
