"""The device SDK against a scripted server: each msg id shown once, everything acked, 1012
reconnects at once, 4004 ends the device; plus the servant's input checks."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from websockets.asyncio.server import ServerConnection, serve

from services.common.contract import PushGrid
from services.stc import protocol
from services.stc.engine import Engine, Settings
from services.stc.servant import STCI, Identity
from tests.unit.fakes import APP, FakeMailbox
from tests.unit.stc_fakes import FakeConn, FakeDirectory, FakeReceipts
from tests.unit.test_stc_engine import body
from tools.device.sdk import Credentials, Device, Message, Replaced


def msg(msg_id: int, replay: bool = False) -> str:
    return json.dumps({"op": "msg", "msg_id": msg_id, "replay": replay, "notification": {"alert": f"m{msg_id}"}})


class Scripted:
    """Connection n gets script[n]: frames to send after the welcome, then a close code."""

    def __init__(self, script: list[tuple[list[str], int]]) -> None:
        self.script = script
        self.connections = 0
        self.acks: list[int] = []
        self.hellos: list[dict] = []

    async def handler(self, ws: ServerConnection) -> None:
        n = self.connections
        self.connections += 1
        self.hellos.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"op": "welcome", "heartbeat": 30, "stc": f"S{n}", "server_time": 0}))
        frames, code = self.script[min(n, len(self.script) - 1)]
        for f in frames:
            await ws.send(f)
        try:
            async with asyncio.timeout(0.5):
                async for raw in ws:
                    self.acks += json.loads(raw).get("msg_ids", [])
        except TimeoutError:
            pass
        await ws.close(code)


def test_each_message_is_shown_once_acked_and_1012_reconnects_at_once() -> None:
    async def t() -> None:
        server = Scripted([([msg(1), msg(1), msg(2)], 1012), ([msg(1, True), msg(3)], 4004)])
        async with serve(server.handler, "127.0.0.1", 0) as srv:
            url = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1/device"
            shown: list[Message] = []
            device = Device(Credentials(APP, "r1", "tok"), [url], on_message=shown.append, backoff=(30, 60))
            async with asyncio.timeout(5):
                await device.run()  # ends at 4004; a backoff of 30 s would have timed out
        assert [m.msg_id for m in shown] == [1, 2, 3]
        assert sorted(server.acks) == [1, 1, 1, 2, 3]  # duplicates are acked too
        assert device.stats.received == 3 and device.stats.duplicates == 2 and device.stats.connects == 2
        assert isinstance(device.error, Replaced) and server.connections == 2
        assert server.hellos[1] == {
            "op": "hello",
            "app_key": APP,
            "registration_id": "r1",
            "device_token": "tok",
            "sdk": "pushgrid-py/1",
        }

    asyncio.run(t())


def test_other_closes_back_off_and_rotate_urls() -> None:
    async def t() -> None:
        server = Scripted([([], 4005)])
        async with serve(server.handler, "127.0.0.1", 0) as srv:
            good = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1/device"
            dead = "ws://127.0.0.1:9/v1/device"
            device = Device(Credentials(APP, "r1", "tok"), [good, dead], backoff=(0.05, 0.2))
            device.start()
            async with asyncio.timeout(10):
                while server.connections < 2:
                    await asyncio.sleep(0.05)
            await device.close()
        assert device.stats.closes.get(4005, 0) >= 1 and device.stats.closes.get(None, 0) >= 1

    asyncio.run(t())


# ---------------------------------------------------------------- the servant: input checks, hand-over


def _servant() -> STCI:
    loop = asyncio.new_event_loop()
    engine = Engine(Settings(stc_id="S"), FakeDirectory(), FakeMailbox(), FakeReceipts())
    return STCI(engine, loop, Identity("S", "n", "ws://x/"))


def _env(**kw) -> PushGrid.Envelope:
    args = dict(msgId=5, appKey=APP, broadcast=False, expiresAt=2**62, overrideMsgId=0, body=body(5))
    args.update(kw)
    return PushGrid.Envelope(**args)


@pytest.mark.parametrize(
    "env, rids, field",
    [
        (_env(appKey="nope"), [], "appKey"),
        (_env(msgId=0), [], "env.msgId"),
        (_env(body="{}"), [], "env.body"),
        (_env(body=body(6)), [], "env.body"),
        (_env(), ["bad id!"], "registrationIds"),
        (_env(), ["r"] * 1001, "registrationIds"),
    ],
)
def test_deliver_refuses_bad_input(env: PushGrid.Envelope, rids: list[str], field: str) -> None:
    with pytest.raises(PushGrid.InvalidArgument) as err:
        _servant().deliver(env, rids)
    assert err.value.field == field


def test_broadcast_refuses_bad_spread() -> None:
    with pytest.raises(PushGrid.InvalidArgument) as err:
        _servant().broadcast(_env(), [], -1)
    assert err.value.field == "spreadMs"


def test_the_servant_hands_envelopes_to_the_engine() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        directory = FakeDirectory()
        directory.add("r1")  # an android device
        engine = Engine(Settings(stc_id="S"), directory, FakeMailbox(), FakeReceipts())
        conn = FakeConn()
        asyncio.run_coroutine_threadsafe(engine.hello(conn, protocol.Hello(APP, "r1", "good", "")), loop).result(5)
        servant = STCI(engine, loop, Identity("S", "n", "ws://x/"))
        assert servant.deliver(_env(), ["r1", "r2"]).result(5) == ["r1"]
        assert conn.frames[-1] == body(5)
        assert servant.broadcast(_env(msgId=6, body=body(6)), [PushGrid.Platform.Ios], 0).result(5) == 0
        assert servant.broadcast(_env(msgId=7, body=body(7)), [PushGrid.Platform.Android], 0).result(5) == 1
        assert conn.frames[-1] == body(7) and len(conn.frames) == 3  # welcome, 5, 7
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
