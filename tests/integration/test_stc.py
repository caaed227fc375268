"""STC through the deployed grid: devices (tools/device/sdk.py) on the real STC ports, deliveries
and broadcasts over Ice, replay from the real Redis Cluster, garbage from devices, a killed STC.

Messages are written as a dispatcher would (services.common.mailbox: stored, queued, logged)
and sent with STC.deliver/broadcast directly, so these tests need no Push or dispatcher.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import IceGrid
import pytest
from kafka import KafkaConsumer, TopicPartition
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.common import msgid
from services.common.clock import now_ms
from services.common.config import KafkaSettings
from services.common.contract import PushGrid
from services.common.ice import all_stcs, stc
from services.common.mailbox import Stored
from tests.integration.waiting import until_async as until
from tools.device.sdk import Credentials, Device, Message, register
from tools.grid import icegrid, lifecycle
from tools.grid.rundir import RunDir

pytestmark = pytest.mark.integration

IDS = msgid.MsgIdGenerator(worker=1023)  # a worker number no Push replica uses
STC_IDS = {f"STC-{node}-{i}" for node in ("node1", "node2") for i in (1, 2, 3)}  # icegrid/pushgrid.xml


# ---------------------------------------------------------------- fixtures and helpers


def frame(msg_id: int, alert: str) -> str:
    return json.dumps(
        {"op": "msg", "msg_id": msg_id, "replay": False, "notification": {"alert": alert}, "override_msg_id": 0}
    )


def envelope(
    msg_id: int, app: str, alert: str = "hi", broadcast: bool = False, expires_at: int | None = None
) -> PushGrid.Envelope:
    return PushGrid.Envelope(
        msgId=msg_id,
        appKey=app,
        broadcast=broadcast,
        expiresAt=expires_at or now_ms() + 600_000,
        overrideMsgId=0,
        body=frame(msg_id, alert),
    )


def stored(msg_id: int, alert: str = "hi", platforms: tuple[str, ...] = (), ttl_ms: int = 600_000) -> Stored:
    return Stored(msg_id, frame(msg_id, alert), platforms, now_ms() + ttl_ms)


class Fleet:
    """Devices of a test, each with the msg ids it showed (in order); closed at the end."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self.devices: list[Device] = []
        self.shown: dict[str, list[Message]] = {}

    async def new(self, app: str, platform: str = "android", url_index: int | None = None) -> Device:
        i = len(self.devices) if url_index is None else url_index
        creds = await register(self.urls[i % len(self.urls)], app, platform)
        return await self.connect(creds, i)

    async def connect(self, creds: Credentials, url_index: int = 0) -> Device:
        shown = self.shown.setdefault(creds.registration_id, [])
        urls = self.urls[url_index % len(self.urls) :] + self.urls[: url_index % len(self.urls)]
        device = Device(creds, urls, on_message=shown.append, backoff=(0.3, 2.0))
        self.devices.append(device)
        device.start()
        await until(device.connected.is_set, f"{creds.registration_id} to connect")
        return device

    def ids(self, device: Device) -> list[int]:
        return [m.msg_id for m in self.shown[device.creds.registration_id]]

    async def close(self) -> None:
        await asyncio.gather(*(d.close() for d in self.devices))


def with_fleet(grid: RunDir, test: Callable[[Fleet], Awaitable[None]]) -> None:
    async def main() -> None:
        fleet = Fleet(grid.device_urls)
        try:
            await test(fleet)
        finally:
            await fleet.close()

    asyncio.run(main())


async def ice(call: Callable[..., Any], *args: Any) -> Any:
    """A blocking Ice call, off the event loop the devices run on."""
    return await asyncio.to_thread(call, *args)


# ---------------------------------------------------------------- delivery


def test_deliver_reaches_exactly_the_target_and_acks_become_receipts(
    grid, communicator, mailbox, app, dbagent, kafka_settings
) -> None:
    other_app = dbagent.createApp("stc-other-" + uuid.uuid4().hex[:8], 0).appKey
    receipts = _receipts_reader(kafka_settings)

    async def t(fleet: Fleet) -> None:
        d1, d2, d3 = [await fleet.new(app) for _ in range(3)]
        stranger = await fleet.new(other_app)
        rids = [d.creds.registration_id for d in (d1, d2, d3)]
        assert mailbox.where(rids) == {d.creds.registration_id: d.stc for d in (d1, d2, d3)}
        assert {d.stc for d in (d1, d2, d3, stranger)} <= STC_IDS

        m1 = IDS.next()
        mailbox.store(stored(m1))
        mailbox.enqueue(stored(m1), [rids[0]])
        prx = stc(communicator, d1.stc)
        assert await ice(prx.deliver, envelope(m1, app), [rids[0], "nobody"]) == [rids[0]]
        await until(lambda: fleet.ids(d1) == [m1], "the target to show m1")
        # a fence: a later message to everyone arrives after m1 would have, had it been sent
        fence = IDS.next()
        for d in (d1, d2, d3, stranger):
            await ice(stc(communicator, d.stc).deliver, envelope(fence, d.creds.app_key), [d.creds.registration_id])
        for d in (d1, d2, d3, stranger):
            await until(lambda d=d: fence in fleet.ids(d), "the fence")
        assert fleet.ids(d1) == [m1, fence] and fleet.ids(d2) == [fence] == fleet.ids(stranger)
        assert fleet.shown[rids[0]][0].notification == {"alert": "hi"} and not fleet.shown[rids[0]][0].replay

        # the wrong process, or the wrong app, sends nothing
        elsewhere = next(iter(STC_IDS - {d1.stc}))
        assert await ice(stc(communicator, elsewhere).deliver, envelope(IDS.next(), app), [rids[0]]) == []
        assert await ice(prx.deliver, envelope(IDS.next(), other_app), [rids[0]]) == []

        await until(lambda: mailbox.pending(rids[0], now_ms()) == [], "the ack to leave the queue")
        want = [m1, app, rids[0]]
        await until(lambda: want in _read_acks(receipts), "the receipt on Kafka", timeout=30)

    try:
        with_fleet(grid, t)
    finally:
        receipts.close()


def test_deliver_many_sends_each_message_to_its_own_devices(grid, communicator, app, dbagent) -> None:
    other_app = dbagent.createApp("stc-other-" + uuid.uuid4().hex[:8], 0).appKey

    async def t(fleet: Fleet) -> None:
        d1 = await fleet.new(app, url_index=0)

        async def beside(app_key: str) -> Device:
            """A device of app_key held by d1's process (the node's processes share its port)."""
            for _ in range(30):
                d = await fleet.new(app_key, url_index=0)
                if d.stc == d1.stc:
                    return d
            raise AssertionError("30 devices and none on d1's process")

        d2, stranger = await beside(app), await beside(other_app)
        r1, r2, rs = (d.creds.registration_id for d in (d1, d2, stranger))
        m1, m2, m3 = IDS.next(), IDS.next(), IDS.next()
        deliveries = [
            PushGrid.Delivery(envelope(m1, app), [r1]),
            PushGrid.Delivery(envelope(m2, app), [r1, r2, "nobody"]),
            PushGrid.Delivery(envelope(m3, app), [rs]),  # another app's device: not sent
        ]
        assert await ice(stc(communicator, d1.stc).deliverMany, deliveries) == [[r1], [r1, r2], []]
        await until(lambda: fleet.ids(d1) == [m1, m2] and fleet.ids(d2) == [m2], "each device to show its messages")
        assert fleet.ids(stranger) == []
        too_many = [PushGrid.Delivery(envelope(IDS.next(), app), [r1] * 600)] * 2
        with pytest.raises(PushGrid.InvalidArgument):
            await ice(stc(communicator, d1.stc).deliverMany, too_many)

    with_fleet(grid, t)


_seen_acks: list[list[Any]] = []


def _receipts_reader(settings: KafkaSettings) -> KafkaConsumer:
    """Reads the receipts topic from its current end, outside any consumer group."""
    c = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    parts = [TopicPartition(settings.receipts_topic, p) for p in c.partitions_for_topic(settings.receipts_topic) or ()]
    c.assign(parts)
    c.seek_to_end(*parts)
    for p in parts:
        c.position(p)
    _seen_acks.clear()
    return c


def _read_acks(c: KafkaConsumer) -> list[list[Any]]:
    for records in c.poll(timeout_ms=200).values():
        for r in records:
            value = json.loads(r.value)
            assert r.key.decode() == value["app"]  # keyed by app
            _seen_acks.extend([m, value["app"], rid] for m, rids in value["receipts"] for rid in rids)
    return _seen_acks


def test_broadcast_reaches_every_device_of_the_app_on_every_process(grid, communicator, app, dbagent) -> None:
    other_app = dbagent.createApp("stc-bc-" + uuid.uuid4().hex[:8], 0).appKey

    async def t(fleet: Fleet) -> None:
        devices: list[Device] = []
        while {d.stc for d in devices} != STC_IDS:  # the kernel picks the process per connection
            assert len(devices) < 60, f"devices landed only on {sorted({d.stc for d in devices})}"
            devices.append(await fleet.new(app, "ios" if len(devices) % 3 == 0 else "android"))
        stranger = await fleet.new(other_app)
        stcs = await ice(all_stcs, communicator)
        assert sorted(p.ice_getIdentity().name for p in stcs) == sorted(STC_IDS)
        counts = [await ice(p.onlineCount, app) for p in stcs]
        assert sum(counts) == len(devices) and all(counts)

        b1 = IDS.next()
        sent = [await ice(p.broadcast, envelope(b1, app, "all", broadcast=True), [], 0) for p in stcs]
        assert sum(sent) == len(devices)
        for d in devices:
            await until(lambda d=d: b1 in fleet.ids(d), "the broadcast everywhere")

        ios = [d for d in devices if d.creds.platform == "ios"]
        b2 = IDS.next()
        spread = [
            await ice(p.broadcast, envelope(b2, app, "ios", broadcast=True), [PushGrid.Platform.Ios], 500) for p in stcs
        ]
        assert sum(spread) == len(ios)
        fence = IDS.next()
        for p in stcs:
            await ice(p.broadcast, envelope(fence, app, "fence", broadcast=True), [], 0)
        for d in devices:
            await until(lambda d=d: fence in fleet.ids(d), "the fence")
            assert fleet.ids(d) == ([b1, b2, fence] if d in ios else [b1, fence])
        assert fleet.ids(stranger) == []
        info = await ice(stcs[0].info)
        assert info.id in STC_IDS and info.deviceEndpoint.startswith("ws://") and info.connections >= 1

    with_fleet(grid, t)


# ---------------------------------------------------------------- replay


def test_offline_device_gets_its_queue_and_newer_broadcasts_once(grid, communicator, mailbox, app, dbagent) -> None:
    async def t(fleet: Fleet) -> None:
        url = fleet.urls[0]
        creds = await register(url, app, "android")
        rid = creds.registration_id
        created = dbagent.getDevice(app, rid).createdAt
        now = now_ms()
        # before the device registered: never replayed
        old_bc = stored(msgid.floor_for_time(created - 60_000) + 1)
        mailbox.store(old_bc)
        mailbox.log_broadcast(app, old_bc, now)
        q1, q2, b1, b_ios, short = IDS.next(), IDS.next(), IDS.next(), IDS.next(), IDS.next()
        for m in (q2, q1):  # queue order is by expiry; replay is oldest first
            mailbox.store(stored(m, ttl_ms=600_000 if m == q1 else 300_000))
            mailbox.enqueue(stored(m, ttl_ms=600_000 if m == q1 else 300_000), [rid])
        mailbox.store(stored(short, ttl_ms=1000))  # its TTL ends before the device comes back
        mailbox.enqueue(stored(short, ttl_ms=1000), [rid])
        for m, plats in ((b1, ()), (b_ios, ("ios",))):
            mailbox.store(stored(m, platforms=plats))
            mailbox.log_broadcast(app, stored(m, platforms=plats), now)
        await until(lambda: not mailbox.load([short]), "the short message to expire")

        device = await fleet.connect(creds)
        await until(lambda: len(fleet.ids(device)) >= 3, "the replay")
        await until(
            lambda: mailbox.pending(rid, now_ms()) == [] and mailbox.last_broadcast(rid) == b1,
            "the acks to reach Redis",
        )
        assert fleet.ids(device) == [q1, q2, b1]
        assert all(m.replay for m in fleet.shown[rid])
        await device.close()

        # acknowledged: nothing comes again on the next connection, only what is new
        again = await fleet.connect(creds)
        fence = IDS.next()
        assert await ice(stc(communicator, again.stc).deliver, envelope(fence, app), [rid]) == [rid]
        await until(lambda: fence in fleet.ids(again), "the fence")
        assert fleet.ids(again) == [q1, q2, b1, fence] and again.stats.duplicates == 0

    with_fleet(grid, t)


def test_a_newer_connection_takes_over(grid, app) -> None:
    async def t(fleet: Fleet) -> None:
        first = await fleet.new(app)
        second = await fleet.connect(first.creds, url_index=1)  # likely another process, maybe another node
        await until(
            lambda: first.error is not None, "the older connection to be replaced", timeout=40
        )  # across processes it is noticed on the next presence refresh
        assert type(first.error).__name__ == "Replaced" and second.connected.is_set()

    with_fleet(grid, t)


# ---------------------------------------------------------------- garbage from devices


@pytest.mark.parametrize(
    "frames, code",
    [
        ([b"\x00binary"], 4000),
        (["not json"], 4000),
        (["x" * 10_000], 1009),
        (['{"op":"fly"}'], 4000),
        (['{"op":"hello","app_key":1,"registration_id":[],"device_token":null}'], 4000),
        (['{"op":"ack","msg_ids":[1]}'], 4003),
        (['{"op":"hello","app_key":"%s","registration_id":"nobody","device_token":"x"}' % ("0" * 24)], 4001),
    ],
)
def test_garbage_gets_its_close_code_and_stc_keeps_serving(grid, communicator, app, frames, code) -> None:
    async def t(fleet: Fleet) -> None:
        healthy = [await fleet.new(app, url_index=i) for i in range(4)]
        for url in fleet.urls:
            async with connect(url) as ws:
                for f in frames:
                    await ws.send(f)
                with pytest.raises(ConnectionClosed):
                    async with asyncio.timeout(15):
                        while True:
                            await ws.recv()
                assert ws.close_code == code
        for d in healthy:
            m = IDS.next()
            assert await ice(stc(communicator, d.stc).deliver, envelope(m, app), [d.creds.registration_id])
            await until(lambda d=d, m=m: m in fleet.ids(d), "delivery after the garbage")

    with_fleet(grid, t)


def test_double_hello_is_out_of_order(grid, app) -> None:
    async def t(fleet: Fleet) -> None:
        creds = await register(fleet.urls[0], app)
        hello = json.dumps(
            {
                "op": "hello",
                "app_key": app,
                "registration_id": creds.registration_id,
                "device_token": creds.device_token,
            }
        )
        async with connect(fleet.urls[0]) as ws:
            await ws.send(hello)
            assert json.loads(await ws.recv())["op"] == "welcome"
            await ws.send(hello)
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 4003

    with_fleet(grid, t)


# ---------------------------------------------------------------- a dying STC process


def _same_node(a: str, b: str) -> bool:
    return a.rsplit("-", 1)[0] == b.rsplit("-", 1)[0]


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_devices_of_a_dead_stc_reconnect_and_miss_nothing(grid, communicator, mailbox, app, how) -> None:
    victim = "STC-node1-1"

    async def t(fleet: Fleet) -> None:
        ours: list[Device] = []
        while len(ours) < 2:
            assert len(fleet.devices) < 40, "no device landed on the victim"
            d = await fleet.new(app, url_index=0)  # node1's port: the victim or its sibling
            if d.stc == victim:
                ours.append(d)
        rids = [d.creds.registration_id for d in ours]
        before = IDS.next()
        mailbox.store(stored(before))
        mailbox.enqueue(stored(before), rids)
        try:
            icegrid.icegridadmin(grid, f"server disable {victim}")
            if how == "stop":
                icegrid.icegridadmin(grid, f"server stop {victim}")  # graceful: devices get 1012
            else:
                with icegrid.admin_session(grid) as admin:
                    os.kill(admin.getServerPid(victim), signal.SIGKILL)
            during = IDS.next()  # queued while the devices are away
            mailbox.store(stored(during))
            mailbox.enqueue(stored(during), rids)
            # stopped, the victim closes with 1012 and its devices come back at once to the same
            # port, where only the sibling listens now; killed, they back off and may go anywhere
            for d in ours:
                await until(lambda d=d: d.connected.is_set() and d.stc != victim, "the device to reconnect")
                if how == "stop":
                    # 1012: back at once to the same port, so to another process of the same node
                    assert _same_node(d.stc, victim)
                await until(lambda d=d: {before, during} <= set(fleet.ids(d)), "the queued messages")
                assert sorted(fleet.ids(d)) == sorted({before, during})
            await until(
                lambda: mailbox.where(rids) == {d.creds.registration_id: d.stc for d in ours}, "presence to move"
            )
        finally:
            icegrid.icegridadmin(grid, f"server enable {victim}")
            await asyncio.to_thread(lifecycle.wait_servers_active, grid, 60, lambda *_: None)
        with icegrid.admin_session(grid) as admin:
            assert admin.getServerState(victim) == IceGrid.ServerState.Active

    with_fleet(grid, t)


def test_broadcast_marks_rise_many_per_node_and_never_fall(mailbox) -> None:
    """STC writes a broadcast's acks as one script call per Redis node (keys in many slots)."""
    rids = [f"mark{uuid.uuid4().hex[:12]}" for _ in range(300)]  # spread over every node's slots
    mailbox.ack_broadcasts({rid: 1000 + i for i, rid in enumerate(rids)})
    assert [mailbox.last_broadcast(r) for r in rids] == [1000 + i for i in range(300)]
    lower, higher = rids[:150], rids[150:]
    mailbox.ack_broadcasts({**{r: 5 for r in lower}, **{r: 10**6 for r in higher}})
    assert [mailbox.last_broadcast(r) for r in lower] == [1000 + i for i in range(150)]
    assert all(mailbox.last_broadcast(r) == 10**6 for r in higher)


def test_presence_refresh_keeps_what_this_stc_holds_and_names_what_others_took(mailbox) -> None:
    """STC refreshes every device it holds with one script call per Redis node."""
    mine = [f"pres{uuid.uuid4().hex[:12]}" for _ in range(200)]
    mailbox.set_online(mine, "STC-a", 5)
    mailbox.set_online(mine[:20], "STC-b", 5)  # twenty moved to another process
    lapsed = mine[-10:]
    mailbox.set_offline_many(lapsed, "STC-a")  # ten lapsed meanwhile: taken back
    assert sorted(mailbox.refresh_online(mine, "STC-a", 90)) == sorted(mine[:20])
    held = mailbox.where(mine)
    assert all(held[r] == "STC-b" for r in mine[:20]) and all(held[r] == "STC-a" for r in mine[20:])
    assert mailbox.refresh_online([], "STC-a", 90) == []
