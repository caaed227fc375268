"""Push and the dispatchers through the deployed grid: partner calls over Ice, tasks on the real
broker, fan-out into the real Redis Cluster, devices (tools/device/sdk.py) on the real STC ports.

Every test makes its own app, so the shared session grid never mixes their messages.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Collection
from typing import Any

import IceGrid
import pytest

from services.common import kafka_client, limits
from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.ice import push as push_proxy
from services.common.tasks import Task
from services.dbagent.pool import connector
from tests.integration.waiting import until, until_async
from tools.device.sdk import Device, Message, register
from tools.grid import icegrid, lifecycle
from tools.grid.rundir import RunDir
from tools.partner import builders as b

pytestmark = pytest.mark.integration

S = PushGrid.MessageState
A = PushGrid.Audience
PLATFORM = PushGrid.Platform.Android


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def push(communicator) -> PushGrid.PushServicePrx:
    """Asks the locator on every call, so round-robin spreads calls over both Push replicas."""
    return push_proxy(communicator).ice_connectionCached(False).ice_locatorCacheTimeout(0)


@pytest.fixture
def tasks(kafka_settings, grid: RunDir):
    """Watches the tasks topic from now on, outside the dispatchers' group."""
    reader = kafka_client.reader(kafka_settings, kafka_settings.tasks_topic, "test-push-tasks")
    yield reader
    reader.close()


def request(audience: A, alert: str = "hello", **options: Any) -> PushGrid.PushRequest:
    return b.push_request(audience, notification=alert, options=PushGrid.PushOptions(**options))


def stats(push: PushGrid.PushServicePrx, app: str, msg_id: int) -> PushGrid.MessageStats:
    [s] = push.report(app, [msg_id])
    return s


def wait_state(
    push: PushGrid.PushServicePrx, app: str, msg_id: int, state: PushGrid.MessageState, timeout: float = 60.0
) -> PushGrid.MessageStats:
    return until(lambda: (s := stats(push, app, msg_id)).state == state and s, f"message {msg_id} {state}", timeout)


def offline_devices(dbagent, tagalias, app: str, count: int, tag: str = "t") -> list[str]:
    """Registered devices with a tag, never connected (as an installed app that is not running)."""
    rids = [dbagent.registerDevice(app, PLATFORM).registrationId for _ in range(count)]
    for f in [tagalias.addDeviceAsync(app, r, PLATFORM) for r in rids]:
        f.result()
    for f in [tagalias.addTagsAsync(app, r, [tag]) for r in rids]:
        f.result()
    return rids


def tagged_only(tagalias, app: str, count: int, tag: str) -> list[str]:
    """Many tag members quickly (TagAlias only): enough for a tag push of several pages."""
    rids = [f"bulk{uuid.uuid4().hex[:16]}" for _ in range(count)]
    for i in range(0, count, 200):
        for f in [tagalias.addTagsAsync(app, r, [tag]) for r in rids[i : i + 200]]:
            f.result()
    return rids


def message_rows(mysql_settings, app: str) -> int:
    conn = connector(mysql_settings, mysql_settings.host, mysql_settings.port)()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM messages WHERE app_key = %s", (app,))
            return int(cur.fetchone()["n"])
    finally:
        conn.close()


def published(reader, msg_ids: Collection[int] = (), timeout: float = 5.0) -> list[dict]:
    """Task values read from the topic within timeout (or until every one of msg_ids shows up)."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for recs in reader.poll(timeout_ms=200).values():
            out += [r.value for r in recs]
        if msg_ids and set(msg_ids) <= {v.get("msgId") for v in out}:
            break
    return out


# ---------------------------------------------------------------- accepting


def test_bad_requests_are_refused_by_name_and_leave_nothing(push, app, tasks, mysql_settings) -> None:
    good = request(A(tags=["t"]))
    cases = [
        (request(A()), PushGrid.InvalidArgument, "audience"),
        (request(A(tags=["no spaces"])), PushGrid.InvalidArgument, "audience.tags"),
        (
            request(A(registrationIds=[f"r{i}" for i in range(1001)])),
            PushGrid.LimitExceeded,
            "audience.registrationIds",
        ),
        (request(A(tags=["t"]), alert=""), PushGrid.InvalidArgument, "request"),
        (request(A(tags=["t"]), alert="x" * 5000), PushGrid.LimitExceeded, "payload"),
        (request(A(tags=["t"]), timeToLive=limits.TTL_MAX_SECONDS + 1), PushGrid.InvalidArgument, "options.timeToLive"),
        (
            request(A(tags=["t"]), bigPushDuration=limits.BIG_PUSH_MAX_MINUTES + 1),
            PushGrid.InvalidArgument,
            "options.bigPushDuration",
        ),
        (request(A(tags=["t"]), overrideMsgId=-3), PushGrid.InvalidArgument, "options.overrideMsgId"),
        (request(A(tags=["t"]), overrideMsgId=123456789), PushGrid.InvalidArgument, "options.overrideMsgId"),
    ]
    for req, exc, name in cases:
        for call in (push.push, push.validate):
            with pytest.raises(exc) as e:
                call(app, req)
            assert (e.value.field if exc is PushGrid.InvalidArgument else e.value.limit) == name, name
    with pytest.raises(PushGrid.UnknownApp):
        push.push("f" * 24, good)
    with pytest.raises(PushGrid.InvalidArgument) as e:
        push.push("NOT A KEY", good)
    assert e.value.field == "appKey"
    with pytest.raises(PushGrid.InvalidArgument) as e:
        push.schedule(app, good, now_ms() - 1000)
    assert e.value.field == "sendAt"
    push.validate(app, good)
    assert message_rows(mysql_settings, app) == 0
    assert [t for t in published(tasks, timeout=2) if t.get("appKey") == app] == []


def test_push_answers_msg_id_and_sendno_after_publishing(push, app, tasks, dbagent) -> None:
    ids = []
    for sendno in (7, -1, 2**31 - 1):
        res = push.push(app, request(A(tags=["t"]), sendno=sendno))
        assert res.sendno == sendno
        ids.append(res.msgId)
    assert ids == sorted(ids) and len(set(ids)) == 3
    seen = [v for v in published(tasks, ids) if v.get("appKey") == app]
    assert sorted(v["msgId"] for v in seen) == ids  # one task each (spread over partitions by msg id)
    task = Task.from_dict(next(v for v in seen if v["msgId"] == ids[0]))
    record = dbagent.getMessage(app, ids[0])
    assert task.expires_at == record.expiresAt == record.sendAt + limits.TTL_DEFAULT_SECONDS * 1000
    assert task.request.notification.alert == "hello"


def test_msg_ids_increase_across_replicas(push, app) -> None:
    ids = [push.push(app, request(A(tags=["t"]), timeToLive=0)).msgId for _ in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert len({(i >> 12) & 0x3FF for i in ids}) == 2  # both Push replicas answered (worker bits)


# ---------------------------------------------------------------- fan-out and counting


def test_tag_push_to_offline_devices_is_queued_and_counted(push, app, dbagent, tagalias, mailbox) -> None:
    rids = offline_devices(dbagent, tagalias, app, 30)
    res = push.push(app, request(A(tags=["t"]), sendno=1))
    s = wait_state(push, app, res.msgId, S.Done)
    assert (s.targets, s.sentOnline, s.storedOffline, s.received) == (30, 0, 30, 0)
    assert all(res.msgId in mailbox.pending(r, now_ms()) for r in rids)
    [stored] = mailbox.load([res.msgId]).values()
    assert '"alert":"hello"' in stored.frame and '"replay":false' in stored.frame


def test_ttl_zero_stores_nothing(push, app, dbagent, tagalias, mailbox) -> None:
    rids = offline_devices(dbagent, tagalias, app, 5)
    res = push.push(app, request(A(tags=["t"]), timeToLive=0))
    s = wait_state(push, app, res.msgId, S.Done)
    assert (s.targets, s.sentOnline, s.storedOffline) == (5, 0, 0)
    assert mailbox.load([res.msgId]) == {}
    assert all(mailbox.pending(r, now_ms()) == [] for r in rids)


def test_override_replaces_the_old_message(push, app, dbagent, tagalias, mailbox) -> None:
    rids = offline_devices(dbagent, tagalias, app, 5)
    old = push.push(app, request(A(tags=["t"]), alert="v1")).msgId
    wait_state(push, app, old, S.Done)
    new = push.push(app, request(A(tags=["t"]), alert="v2", overrideMsgId=old)).msgId
    assert stats(push, app, old).state == S.Overridden  # at once, when the new one is accepted
    wait_state(push, app, new, S.Done)
    assert mailbox.load([old]) == {} and new in mailbox.load([new])
    assert all(mailbox.pending(r, now_ms()) == [new] for r in rids)


def test_schedule_and_cancel(push, app) -> None:
    res = push.schedule(app, request(A(tags=["t"]), sendno=3), now_ms() + 60_000)
    assert res.sendno == 3 and stats(push, app, res.msgId).state == S.Scheduled
    push.cancel(app, res.msgId)
    assert stats(push, app, res.msgId).state == S.Cancelled
    with pytest.raises(PushGrid.InvalidState):
        push.cancel(app, res.msgId)
    sent = push.push(app, request(A(tags=["t"]))).msgId
    with pytest.raises(PushGrid.InvalidState):
        push.cancel(app, sent)
    with pytest.raises(PushGrid.UnknownMessage):
        push.cancel(app, 42)


def test_scheduled_push_goes_out_at_its_time(push, app, dbagent, tagalias, mailbox) -> None:
    rids = offline_devices(dbagent, tagalias, app, 3)
    send_at = now_ms() + 4000
    res = push.schedule(app, request(A(tags=["t"])), send_at)
    time.sleep(1.5)
    assert stats(push, app, res.msgId).state == S.Scheduled
    assert mailbox.pending(rids[0], now_ms()) == []
    s = wait_state(push, app, res.msgId, S.Done, timeout=30)
    assert s.targets == 3 and now_ms() >= send_at
    assert all(mailbox.pending(r, now_ms()) == [res.msgId] for r in rids)


def test_receipts_on_kafka_update_the_report(push, app, dbagent, tagalias, kafka_settings) -> None:
    rids = offline_devices(dbagent, tagalias, app, 4)
    msg = push.push(app, request(A(tags=["t"]))).msgId
    wait_state(push, app, msg, S.Done)
    producer = kafka_client.producer(kafka_settings, "test-receipts")
    try:
        for value in (
            {"app": app, "receipts": [[msg + 1, [rids[0]]]]},  # unknown msg id: skipped
            {"app": app, "receipts": [[msg, rids[:3]]]},
            {"app": app, "receipts": [[msg, [rids[0]]]]},  # a repeat
            {"app": "f" * 24, "receipts": [[msg, [rids[3]]]]},  # another app's devices: skipped
        ):
            producer.send(kafka_settings.receipts_topic, key=app, value=value).get(timeout=10)
        old = {"acks": [[msg, app, rids[3]]]}  # as an STC of the release before writes it
        producer.send(kafka_settings.receipts_topic, key=app, value=old).get(timeout=10)
    finally:
        producer.close()
    until(lambda: stats(push, app, msg).received == 4, "4 receipts counted")
    time.sleep(1)
    assert stats(push, app, msg).received == 4


# ---------------------------------------------------------------- real devices


def test_devices_online_get_it_now_offline_ones_on_connect(push, app, grid: RunDir) -> None:
    async def main() -> None:
        shown: dict[str, list[Message]] = {}
        creds = [await register(grid.device_urls[i % 2], app) for i in range(3)]
        devices = []

        def connect(c) -> Device:
            d = Device(
                c, grid.device_urls, on_message=shown.setdefault(c.registration_id, []).append, backoff=(0.3, 2.0)
            )
            d.start()
            devices.append(d)
            return d

        try:
            for c in creds[:2]:
                await asyncio.wait_for(connect(c).connected.wait(), 15)
            res = await asyncio.to_thread(
                push.push, app, request(A(registrationIds=[c.registration_id for c in creds]))
            )
            bc = await asyncio.to_thread(push.push, app, request(A(all=True), alert="to all"))
            now = await asyncio.to_thread(
                push.push,
                app,
                request(A(registrationIds=[c.registration_id for c in creds]), alert="online only", timeToLive=0),
            )
            want = {res.msgId, bc.msgId, now.msgId}
            for c in creds[:2]:
                await until_async(
                    lambda c=c: {m.msg_id for m in shown.get(c.registration_id, [])} == want,
                    "online devices to show all three",
                )
            s = await asyncio.to_thread(wait_state, push, app, res.msgId, S.Done)
            assert (s.targets, s.sentOnline, s.storedOffline) == (3, 2, 1)
            n = await asyncio.to_thread(wait_state, push, app, now.msgId, S.Done)
            assert (n.targets, n.sentOnline, n.storedOffline) == (3, 2, 0)
            b = await asyncio.to_thread(wait_state, push, app, bc.msgId, S.Done)
            assert (b.targets, b.sentOnline, b.storedOffline) == (3, 2, 1)
            await asyncio.wait_for(connect(creds[2]).connected.wait(), 15)  # the offline one comes back
            late = creds[2].registration_id
            await until_async(
                lambda: {m.msg_id for m in shown.get(late, [])} == {res.msgId, bc.msgId},
                "the late device to get both by replay (not the online-only one)",
            )
            assert all(m.replay for m in shown[late])
            await until_async(lambda: stats(push, app, res.msgId).received == 3, "3 receipts")
        finally:
            await asyncio.gather(*(d.close() for d in devices))

    asyncio.run(main())


# ---------------------------------------------------------------- a dispatcher dies mid-task


def test_killed_dispatcher_task_is_finished_without_double_counting(push, app, tagalias, mailbox, grid: RunDir) -> None:
    """A one-minute big push of two pages (at 0 s and 30 s): the worker running it is killed
    after the first page; another one finishes it from the checkpoint."""
    lifecycle.wait_dispatchers(grid, 120)  # start from a settled consumer group
    rids = tagged_only(tagalias, app, 2 * limits.DISPATCH_PAGE, "big")
    res = push.push(app, request(A(tags=["big"]), bigPushDuration=1))
    owner = until(
        lambda: (
            mailbox.checkpoint(res.msgId).get("owner") if mailbox.checkpoint(res.msgId).get("page") == "1" else None
        ),
        "the first page",
        60,
    )
    with icegrid.admin_session(grid) as admin:
        pid = admin.getServerPid(owner)
        os.kill(pid, signal.SIGKILL)
    first = stats(push, app, res.msgId)  # a page is about DISPATCH_PAGE (resolve's limit is a hint)
    assert first.state == S.Dispatching and limits.DISPATCH_PAGE <= first.targets < 2 * limits.DISPATCH_PAGE
    s = wait_state(push, app, res.msgId, S.Done, timeout=120)
    assert (s.targets, s.sentOnline, s.storedOffline) == (2 * limits.DISPATCH_PAGE, 0, 2 * limits.DISPATCH_PAGE)
    assert all(mailbox.pending(r, now_ms()) == [res.msgId] for r in rids[::97])
    cp = mailbox.checkpoint(res.msgId)
    assert cp["done"] == "1" and int(cp["page"]) >= 2
    with icegrid.admin_session(grid) as admin:  # activation="always": IceGrid started it again
        until(
            lambda: admin.getServerState(owner) == IceGrid.ServerState.Active and admin.getServerPid(owner) != pid,
            f"{owner} to restart",
            60,
        )
