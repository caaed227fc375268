"""The load generator's swarm against STC's real transport and engine (over fakes): its devices
say hello, take a broadcast once each and acknowledge it, and come back after a drop."""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop

from services.stc.engine import Engine, Outgoing, Settings
from services.stc.protocol import Close
from services.stc.transport import DeviceLimits, Transport
from tests.unit.fakes import APP, FakeMailbox
from tests.unit.stc_fakes import FakeDirectory, FakeReceipts
from tests.unit.test_stc_engine import body
from tools.device.swarm import Swarm

DEVICES = 40


async def until(cond: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_swarm_says_hello_takes_a_broadcast_once_acks_it_and_reconnects() -> None:
    async def main() -> None:
        directory, receipts = FakeDirectory(), FakeReceipts()
        devices = [(f"s{i}", "good") for i in range(DEVICES)]
        for rid, _ in devices:
            directory.add(rid)
        engine = Engine(Settings(stc_id="STC-s", flush_seconds=0.05), directory, FakeMailbox(), receipts)
        transport = Transport(engine, "127.0.0.1", 0, DeviceLimits())
        engine.start()
        await transport.start()
        swarm = Swarm(APP, devices, [f"ws://127.0.0.1:{transport.port}/v1/device"], ["127.0.0.1"])
        swarm.start()
        try:
            await until(lambda: swarm.tally.connected == DEVICES and engine.connections == DEVICES)
            msg = Outgoing(msg_id=7, app_key=APP, broadcast=True, expires_at=2**62, override_msg_id=0, body=body(7))
            assert await engine.broadcast(msg, [], 0) == DEVICES
            assert await engine.broadcast(msg, [], 0) == DEVICES  # sent twice: each device counts it once
            await until(lambda: len(swarm.tally.received) == DEVICES)
            assert {m for m, _ in swarm.tally.take_received()} == {7}
            acked = lambda: sorted(rid for _, _, rid in receipts.acked())  # noqa: E731 - a probe
            await until(lambda: len(acked()) == DEVICES)  # every device acknowledged it by msg id
            await asyncio.sleep(0.2)
            assert acked() == sorted(rid for rid, _ in devices)  # ... and counts once for it

            for session in list(engine._sessions.values())[:5]:  # five devices lose their connection
                session.conn.close(Close.RESTARTING, "STC restarting")
            await until(lambda: swarm.tally.connected == DEVICES - 5, timeout=5)
            await until(lambda: swarm.tally.connected == DEVICES, timeout=10)  # back after their pause
        finally:
            await swarm.stop()
            await transport.close(timeout=2)
            await engine.shutdown()

    uvloop.run(main())


class RecordingWS:
    """Stands in for a picows transport: keeps the frames sent."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, _type: Any, payload: bytes) -> None:
        self.frames.append(payload)


def test_a_devices_gathered_acks_go_in_frames_of_at_most_a_hundred_ids() -> None:
    import orjson

    from tools.device.swarm import SwarmDevice

    device = SwarmDevice(Swarm(APP, [], [], []), 0, "r", "t")
    ws = RecordingWS()
    device.ws = ws  # type: ignore[assignment]  # the recorder speaks the one method used
    device.acks = list(range(1, 151))
    device.send_acks()
    sent = [orjson.loads(f) for f in ws.frames]
    assert [f["op"] for f in sent] == ["ack", "ack"]
    assert sent[0]["msg_ids"] == list(range(1, 101)) and sent[1]["msg_ids"] == list(range(101, 151))
    assert device.acks == []
    device.ws = None  # the connection was lost: nothing is sent, the acks are dropped
    device.acks = [7]
    device.send_acks()
    assert len(ws.frames) == 2 and device.acks == []
