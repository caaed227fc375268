"""The WebSocket transport on a loopback port, with the engine over fakes: every protocol
violation gets its close code, and one device's garbage never disturbs another device."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.stc.engine import BackendUnavailable, Engine, Outgoing, Settings
from services.stc.transport import DeviceLimits, TokenBucket, Transport
from tests.unit.fakes import APP, FakeMailbox, sample
from tests.unit.stc_fakes import FakeDirectory, FakeReceipts

LIMITS = DeviceLimits(auth_timeout=0.5, heartbeat=0.2, frames_per_second=20, outbox_bytes=64 * 1024)


class Server:
    def __init__(self) -> None:
        self.directory = FakeDirectory()
        self.directory.add("r1")
        self.directory.add("r2")
        self.mailbox = FakeMailbox()
        self.engine = Engine(Settings(stc_id="STC-t"), self.directory, self.mailbox, FakeReceipts())
        self.transport = Transport(self.engine, "127.0.0.1", 0, LIMITS)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.transport.port}/v1/device"

    async def hello(self, rid: str = "r1") -> ClientConnection:
        ws = await connect(self.url)
        await ws.send(json.dumps({"op": "hello", "app_key": APP, "registration_id": rid, "device_token": "good"}))
        assert json.loads(await ws.recv())["op"] == "welcome"
        return ws


def run(test: Callable[[Server], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        server = Server()
        await server.transport.start()
        try:
            await test(server)
        finally:
            await server.transport.close(timeout=2)

    asyncio.run(main())


async def closed_with(ws: ClientConnection, timeout: float = 3) -> int | None:
    """Reads until the server closes; the close code it sent."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


async def after_hello(server: Server, *frames: str | bytes) -> int | None:
    ws = await server.hello()
    for f in frames:
        await ws.send(f)
    return await closed_with(ws)


def test_garbage_after_hello_gets_its_close_code_and_others_keep_going() -> None:
    async def t(s: Server) -> None:
        bystander = await s.hello("r2")
        cases: list[tuple[list[str | bytes], int]] = [
            ([b"\x00\x01binary"], 4000),
            (["not json"], 4000),
            (["[1,2,3]"], 4000),
            (['{"op":"dance"}'], 4000),
            (['{"op":"ack","msg_ids":"all"}'], 4000),
            (["x" * 9000], 1009),
            ([json.dumps({"op": "hello", "app_key": APP, "registration_id": "r1", "device_token": "good"})], 4003),
            (['{"op":"register","app_key":"' + APP + '","platform":"ios"}'], 4003),
        ]
        for frames, code in cases:
            assert await after_hello(s, *frames) == code, frames
        await bystander.send('{"op":"ping"}')
        assert json.loads(await bystander.recv()) == {"op": "pong"}
        await bystander.close()

    run(t)


def test_invalid_utf8_closes_with_1007() -> None:
    async def t(s: Server) -> None:
        ws = await s.hello()
        await ws.send(b"\xff\xfe{}", text=True)
        assert await closed_with(ws) == 1007

    run(t)


def test_before_hello() -> None:
    async def t(s: Server) -> None:
        for first, code in [
            ('{"op":"ack","msg_ids":[1]}', 4003),
            ('{"op":"ping"}', 4003),
            ("nope", 4000),
            (json.dumps({"op": "hello", "app_key": APP, "registration_id": "r1", "device_token": "bad"}), 4001),
            (json.dumps({"op": "hello", "app_key": APP, "registration_id": "nobody", "device_token": "good"}), 4001),
        ]:
            ws = await connect(s.url)
            await ws.send(first)
            assert await closed_with(ws) == code, first
        silent = await connect(s.url)
        assert await closed_with(silent) == 4002

    run(t)


def test_register_answers_then_closes_normally() -> None:
    async def t(s: Server) -> None:
        ws = await connect(s.url)
        await ws.send(json.dumps({"op": "register", "app_key": APP, "platform": "web"}))
        reply = json.loads(await ws.recv())
        assert reply["op"] == "registered" and reply["device_token"] == "good"
        assert await closed_with(ws) == 1000
        ws = await connect(s.url)
        await ws.send(json.dumps({"op": "register", "app_key": "f" * 24, "platform": "web"}))
        assert await closed_with(ws) == 4001

    run(t)


def test_unreachable_backends_close_with_4011() -> None:
    async def t(s: Server) -> None:
        def no_dbagent(app_key: str, platform: str) -> tuple[str, str]:
            raise BackendUnavailable("registration failed: ConnectionRefusedException")

        def no_redis(rids: Sequence[str], stc_id: str, ttl_seconds: int) -> None:
            raise ConnectionError("redis down")

        s.directory.register = no_dbagent  # type: ignore[method-assign]  # the fake, made to fail as a dead DBAgent
        s.mailbox.set_online = no_redis  # type: ignore[method-assign]  # the fake, made to fail as a dead Redis
        ws = await connect(s.url)
        await ws.send(json.dumps({"op": "register", "app_key": APP, "platform": "web"}))
        assert await closed_with(ws) == 4011
        ws = await connect(s.url)
        await ws.send(json.dumps({"op": "hello", "app_key": APP, "registration_id": "r1", "device_token": "good"}))
        assert await closed_with(ws) == 4011
        assert ws.close_reason == "STC could not reach its backends; try again"

    run(t)


def test_heartbeats_keep_a_device_and_silence_closes_it() -> None:
    async def t(s: Server) -> None:
        pinger = await s.hello("r1")
        silent = await s.hello("r2")
        for _ in range(8):  # 0.8 s: four heartbeats of 0.2 s, more than the three allowed
            await pinger.send('{"op":"ping"}')
            assert json.loads(await pinger.recv()) == {"op": "pong"}
            await asyncio.sleep(0.1)
        assert await closed_with(silent) == 4005
        ws_pinger = await s.hello("r1")  # WebSocket ping frames count as heartbeats too
        for _ in range(8):
            await (await ws_pinger.ping())
            await asyncio.sleep(0.1)
        assert ws_pinger.close_code is None

    run(t)


def test_too_many_frames_per_second() -> None:
    async def t(s: Server) -> None:
        assert await after_hello(s, *['{"op":"ping"}'] * 40) == 4008

    run(t)


def test_takeover_and_slow_devices() -> None:
    async def t(s: Server) -> None:
        old = await s.hello("r1")
        new = await s.hello("r1")
        assert await closed_with(old) == 4004
        big = json.dumps({"op": "msg", "msg_id": 1, "text": "x" * 16000})
        msg = Outgoing(msg_id=1, app_key=APP, broadcast=False, expires_at=2**62, override_msg_id=0, body=big)
        sent = 0
        for _ in range(2000):  # 32 MB in one go, never read: the device cannot keep up
            got = len(await s.engine.deliver(msg, ["r1"]))
            if not got:
                break
            sent += got
        assert 0 < sent < 2000  # written until the socket's buffers and the outbox were full, then refused
        assert await closed_with(new) == 4009

    run(t)


def test_web_page_is_served_beside_the_device_path() -> None:
    async def t(s: Server) -> None:
        base = f"http://127.0.0.1:{s.transport.port}"

        def get(path: str) -> tuple[int, str, bytes]:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as r:
                    return r.status, r.headers["Content-Type"], r.read()
            except urllib.error.HTTPError as err:
                return err.code, "", b""

        status, ctype, page = await asyncio.to_thread(get, "/?app_key=" + APP)
        assert status == 200 and ctype.startswith("text/html") and b"device.js" in page
        assert (await asyncio.to_thread(get, "/device.js"))[0] == 200
        assert (await asyncio.to_thread(get, "/device.html"))[0] == 200
        assert (await asyncio.to_thread(get, "/etc/passwd"))[0] == 404

    run(t)


def test_raw_requests_and_frames_that_break_http_or_websocket_rules() -> None:
    """What a WebSocket library never sends: a plain GET of the device path, a request head that
    never ends, an unmasked frame; each answered, and the connection ended."""

    async def raw(s: Server, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.transport.port)
        writer.write(data)
        try:
            async with asyncio.timeout(3):
                return await reader.read()  # until the server closes
        finally:
            writer.close()

    async def t(s: Server) -> None:
        assert (await raw(s, b"GET /v1/device HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 426 ")
        assert (await raw(s, b"GET / HTTP/1.1\r\n" + b"X-Pad: y\r\n" * 1000)).startswith(b"HTTP/1.1 431 ")
        assert (await raw(s, b"BREW /v1/device\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        upgrade = (
            b"GET /v1/device HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        unmasked = bytes((0x81, 2)) + b"{}"
        answer = await raw(s, upgrade + unmasked)
        assert answer.startswith(b"HTTP/1.1 101 ")
        close = answer[answer.index(b"\r\n\r\n") + 4 :]
        assert close[0] == 0x88 and int.from_bytes(close[2:4], "big") == 1002

    run(t)


def test_shutdown_closes_devices_with_1012() -> None:
    async def t(s: Server) -> None:
        ws = await s.hello()
        await s.transport.close(timeout=2)
        await s.engine.shutdown()
        assert await closed_with(ws) == 1012

    run(t)


def test_token_bucket() -> None:
    b = TokenBucket(5, now=0.0)
    assert [b.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert b.take(0.2) and not b.take(0.2)


def test_closes_are_counted_by_code_and_by_whom() -> None:
    """The operator's view of why devices leave: a device's own close, STC's verdicts, and
    connections that just vanish; a code no standard knows is not a label of its own."""

    def closes(code: str, by: str) -> float:
        return sample("pushgrid_stc_closes_total", code=code, by=by)

    async def t(s: Server) -> None:
        before = {
            k: closes(*k) for k in [("1000", "device"), ("4000", "stc"), ("other", "device"), ("1006", "network")]
        }
        ws = await s.hello("r1")
        await ws.close(1000)
        ws = await s.hello("r1")
        await ws.send("nope")
        assert await closed_with(ws) == 4000
        ws = await s.hello("r2")
        await ws.close(3999)  # a code of the device's own
        ws = await s.hello("r1")
        ws.transport.abort()  # gone without a close frame
        for _ in range(100):
            if closes("1006", "network") > before[("1006", "network")]:
                break
            await asyncio.sleep(0.02)
        assert {k: closes(*k) - v for k, v in before.items()} == {
            ("1000", "device"): 1,
            ("4000", "stc"): 1,
            ("other", "device"): 1,
            ("1006", "network"): 1,
        }
        assert sample("pushgrid_stc_closes_total", code="3999", by="device") == 0

    run(t)
