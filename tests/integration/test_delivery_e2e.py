"""End to end through the whole grid: Push -> Kafka -> dispatcher -> STC -> devices (the SDK).

Each audience kind reaches exactly its devices; a queued message past its TTL is not replayed;
a throttled broadcast is spread over its big_push_duration and still reaches every device once
when the dispatcher running it is killed midway.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import pytest
from kafka.partitioner.default import murmur2

from services.common.contract import PushGrid
from tests.integration.waiting import until_async as until
from tools.device.sdk import Device, Message, register
from tools.grid import icegrid, kafka, lifecycle
from tools.grid.rundir import RunDir
from tools.partner import builders as b

pytestmark = pytest.mark.integration

A = PushGrid.Audience


def request(audience: PushGrid.Audience, alert: str, ttl: int = 600, big_push_minutes: int = 0) -> PushGrid.PushRequest:
    return b.push_request(
        audience, notification=alert, options=b.options(sendno=7, ttl=ttl, big_push_duration=big_push_minutes)
    )


class Phones:
    """Devices registered over the protocol, each recording the messages it shows (once each)."""

    def __init__(self, grid: RunDir, app: str) -> None:
        self.grid, self.app = grid, app
        self.shown: dict[str, list[tuple[Message, float]]] = {}
        self.devices: list[Device] = []

    async def new(self, connect: bool = True) -> Device:
        creds = await register(self.grid.device_urls[len(self.devices) % 2], self.app)
        rid = creds.registration_id
        self.shown[rid] = []
        d = Device(
            creds,
            self.grid.device_urls,
            backoff=(0.3, 2.0),
            on_message=lambda m, rid=rid: self.shown[rid].append((m, time.time())),
        )
        self.devices.append(d)
        if connect:
            await self.connect(d)
        return d

    async def connect(self, d: Device) -> None:
        d.start()
        await asyncio.wait_for(d.connected.wait(), 20)

    def ids(self, d: Device) -> set[int]:
        return {m.msg_id for m, _ in self.shown[d.creds.registration_id]}

    async def close(self) -> None:
        await asyncio.gather(*(d.close() for d in self.devices))


def run(coro_fn: Callable[[Phones], object], grid: RunDir, app: str) -> None:
    async def main() -> None:
        phones = Phones(grid, app)
        try:
            await coro_fn(phones)
        finally:
            await phones.close()

    asyncio.run(main())


def test_each_audience_kind_reaches_exactly_its_devices(grid, app, push, tagalias) -> None:
    async def t(phones: Phones) -> None:
        d = [await phones.new() for _ in range(5)]
        rid = [x.creds.registration_id for x in d]
        for i, tags in enumerate([["a", "b"], ["a"], ["b"], ["a", "b", "vip"], []]):
            if tags:
                await asyncio.to_thread(tagalias.addTags, app, rid[i], tags)
        await asyncio.to_thread(tagalias.setAlias, app, rid[0], "al0")
        await asyncio.to_thread(tagalias.setAlias, app, rid[4], "al4")
        cases = {
            "tag": (A(tags=["a"]), {0, 1, 3}),
            "tag OR": (A(tags=["vip", "b"]), {0, 2, 3}),
            "tag_and": (A(tagsAnd=["a", "b"]), {0, 3}),
            "tag_not": (A(tags=["a"], tagsNot=["vip"]), {0, 1}),
            "tag_not alone": (A(tagsNot=["a"]), {2, 4}),
            "alias": (A(aliases=["al0", "al4"]), {0, 4}),
            "registration id": (A(registrationIds=[rid[1], rid[2]]), {1, 2}),
            "broadcast": (A(all=True), {0, 1, 2, 3, 4}),
        }
        sent = {}
        for name, (aud, _) in cases.items():
            sent[name] = (await asyncio.to_thread(push.push, app, request(aud, name))).msgId
        for name, (_, want) in cases.items():
            for i in want:
                await until(lambda i=i, name=name: sent[name] in phones.ids(d[i]), f"{name} to reach device {i}")
        for name in cases:  # every message done: nothing more can arrive
            await until(
                lambda name=name: push.report(app, [sent[name]])[0].state == PushGrid.MessageState.Done,
                f"{name} to be done",
            )
        await asyncio.sleep(0.5)
        for i in range(5):
            got = {name for name, mid in sent.items() if mid in phones.ids(d[i])}
            assert got == {name for name, (_, want) in cases.items() if i in want}, f"device {i}"
        report = {s.msgId: s for s in push.report(app, list(sent.values()))}
        for name, (_, want) in cases.items():
            s = report[sent[name]]
            assert (s.targets, s.sentOnline) == (len(want), len(want)), name

    run(t, grid, app)


def test_a_queued_message_past_its_ttl_is_not_replayed(grid, app, push) -> None:
    async def t(phones: Phones) -> None:
        late = await phones.new(connect=False)
        rid = late.creds.registration_id
        short = (await asyncio.to_thread(push.push, app, request(A(registrationIds=[rid]), "short", ttl=2))).msgId
        long_ = (await asyncio.to_thread(push.push, app, request(A(registrationIds=[rid]), "long", ttl=600))).msgId
        for mid in (short, long_):
            await until(lambda mid=mid: push.report(app, [mid])[0].storedOffline == 1, "the message to be queued")
        await asyncio.sleep(3)  # the short one's time to live ends
        await phones.connect(late)
        await until(lambda: long_ in phones.ids(late), "the long-lived message to be replayed")
        await asyncio.sleep(1)
        assert phones.ids(late) == {long_}

    run(t, grid, app)


def _dispatcher_of(mailbox, app: str) -> str:
    """The dispatcher owning the task partition of app's broadcasts (keyed by app key: Task.key)."""
    partition = (murmur2(app.encode()) & 0x7FFFFFFF) % kafka.TOPICS["pushgrid.tasks"]
    return next(owner for owner, parts in mailbox.partitions().items() if partition in parts)


def test_throttled_broadcast_is_spread_and_survives_its_dispatcher_dying(grid, app, push, mailbox) -> None:
    """big_push_duration 1 minute to 12 devices (about two per STC process): arrivals spread over
    tens of seconds; the dispatcher running it is killed after the first arrival, and still every
    device shows it exactly once and the report counts each device once."""

    async def t(phones: Phones) -> None:
        d = [await phones.new() for _ in range(12)]
        victim = _dispatcher_of(mailbox, app)
        started = time.time()
        mid = (await asyncio.to_thread(push.push, app, request(A(all=True), "slowly", big_push_minutes=1))).msgId
        await until(lambda: any(mid in phones.ids(x) for x in d), "the first device", 30)
        with icegrid.admin_session(grid) as admin:
            os.kill(admin.getServerPid(victim), signal.SIGKILL)
        await until(lambda: all(mid in phones.ids(x) for x in d), "every device", 180)
        times = sorted(at for x in d for m, at in phones.shown[x.creds.registration_id] if m.msg_id == mid)
        assert len(times) == 12  # each device showed it once (the SDK dedupes a re-sent broadcast)
        assert times[-1] - times[0] >= 20, f"spread only {times[-1] - times[0]:.1f}s"
        assert times[0] - started < 10
        await until(lambda: push.report(app, [mid])[0].state == PushGrid.MessageState.Done, "the task to finish", 180)
        s = push.report(app, [mid])[0]
        assert s.targets == 12 and s.sentOnline <= 12
        # leave the grid as found: the killed dispatcher back, the consumer group settled
        await asyncio.to_thread(lifecycle.wait_servers_active, grid, 60, lambda *_: None)
        await asyncio.to_thread(lifecycle.wait_dispatchers, grid, 120)

    run(t, grid, app)


def test_an_accepted_message_whose_task_was_lost_is_still_delivered(grid, app, dbagent) -> None:
    """What a broker restart does to a task it had taken: the message is Accepted in DBAgent and
    no task exists anywhere. The leading dispatcher's reconciler publishes it again once it has
    waited limits.TASK_START_DEADLINE_SECONDS, and the device gets it."""
    import uuid

    from services.common import limits
    from services.common.clock import now_ms

    async def t(phones: Phones) -> None:
        d = await phones.new()
        accepted_at = now_ms() - limits.TASK_START_DEADLINE_SECONDS * 1000 - 1000
        record = PushGrid.MessageRecord(
            msgId=uuid.uuid4().int >> 65,
            appKey=app,
            request=request(A(registrationIds=[d.creds.registration_id]), "its task was lost"),
            state=PushGrid.MessageState.Accepted,
            createdAt=accepted_at,
            sendAt=accepted_at,
            expiresAt=accepted_at + 3_600_000,
        )
        await asyncio.to_thread(dbagent.recordMessage, record)  # recorded, never published
        started = time.monotonic()
        deadline = 3 * limits.TASK_START_DEADLINE_SECONDS
        await until(lambda: record.msgId in phones.ids(d), "the republished task's delivery", timeout=deadline)
        print(f"delivered {time.monotonic() - started:.0f} s after its task was lost")
        await until(
            lambda: dbagent.getMessage(app, record.msgId).state == PushGrid.MessageState.Done, "Done", timeout=30
        )

    run(t, grid, app)
