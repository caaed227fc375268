"""The partner SDK and pushgrid-partner against the real grid: through the deployed Glacier2 router
(SSL, configured by the run directory's partner.cfg) to a simulated device (tools/device/sdk.py).

A push by registration id reaches the device and its report counts it; tags and aliases work;
named errors arrive unchanged; the session outlives the router's idle timeout and a router
restart (killed, or stopped and started) without the caller doing anything; the CLI pushes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import IceGrid
import pytest

from services.common import limits
from services.common.contract import Glacier2, PushGrid
from tests.integration.waiting import until, until_async
from tools.device.sdk import Device, Message, register
from tools.grid import icegrid
from tools.grid.rundir import RunDir
from tools.partner import PartnerClient
from tools.partner import builders as b

pytestmark = pytest.mark.integration

ROUTER = "Glacier2Router"
CLI = os.path.join(os.path.dirname(sys.executable), "pushgrid-partner")


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def creds(dbagent) -> PushGrid.AppCredentials:
    """A fresh app with its master secret (the conftest app fixture keeps only the key)."""
    return dbagent.createApp("sdk-" + uuid.uuid4().hex[:8], 0)


@pytest.fixture
def client(grid: RunDir, creds) -> PartnerClient:
    c = PartnerClient(creds.appKey, creds.masterSecret, config=grid.partner_config)
    yield c
    c.close()


class Phone:
    """One simulated device of the app, connected, recording what it shows."""

    def __init__(self, grid: RunDir, app_key: str) -> None:
        self.grid, self.app_key = grid, app_key
        self.shown: list[Message] = []
        self.device: Device | None = None

    async def __aenter__(self) -> Phone:
        creds = await register(self.grid.device_urls[0], self.app_key)
        self.device = Device(creds, self.grid.device_urls, on_message=self.shown.append, backoff=(0.3, 2.0))
        self.device.start()
        await asyncio.wait_for(self.device.connected.wait(), 20)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.device.close()

    @property
    def rid(self) -> str:
        return self.device.creds.registration_id

    def got(self, msg_id: int) -> Message | None:
        return next((m for m in self.shown if m.msg_id == msg_id), None)


def to(rid: str, alert: str = "hello") -> PushGrid.PushRequest:
    return b.push_request(
        b.audience(registration_ids=[rid]),
        notification=b.notification(alert, "pushgrid"),
        options=b.options(ttl=600, sendno=5),
    )


def stats(client: PartnerClient, msg_id: int) -> PushGrid.MessageStats:
    [s] = client.report([msg_id])
    return s


async def pushed_and_shown(client: PartnerClient, phone: Phone, alert: str) -> int:
    res = await asyncio.to_thread(client.push, to(phone.rid, alert))
    await until_async(lambda: phone.got(res.msgId), f"the device to show {alert!r}", 30)
    return res.msgId


def router_state(admin: IceGrid.AdminPrx) -> tuple[IceGrid.ServerState, int]:
    state = admin.getServerState(ROUTER)
    return state, admin.getServerPid(ROUTER) if state == IceGrid.ServerState.Active else 0


# ---------------------------------------------------------------- pushing through the router


def test_push_by_registration_id_reaches_the_device_and_is_reported(grid, creds, client) -> None:
    async def main() -> None:
        async with Phone(grid, creds.appKey) as phone:
            res = await asyncio.to_thread(client.push, to(phone.rid, "hello partner"))
            assert res.sendno == 5
            await until_async(lambda: phone.got(res.msgId), "the device to show the push", 30)
            m = phone.got(res.msgId)
            assert m.notification["alert"] == "hello partner" and not m.replay
            s = await asyncio.to_thread(
                until, lambda: (s := stats(client, res.msgId)).received == 1 and s, "the receipt to be counted", 30
            )
            assert (s.targets, s.sentOnline, s.received) == (1, 1, 1)

    asyncio.run(main())


def test_the_receipt_curve_shows_when_the_devices_got_the_push(grid, creds, client, app, push) -> None:
    async def main() -> None:
        async with Phone(grid, creds.appKey) as one, Phone(grid, creds.appKey) as two:
            req = b.push_request(b.audience(registration_ids=[one.rid, two.rid]), notification="when?")
            res = await asyncio.to_thread(client.push, req)
            await asyncio.to_thread(
                until, lambda: stats(client, res.msgId).received == 2, "both receipts to be counted", 30
            )
            curve = await asyncio.to_thread(client.report_curve, res.msgId)
            assert sum(p.received for p in curve) == stats(client, res.msgId).received == 2
            assert all(p.widthSeconds == 1 and p.offsetSeconds < 60 for p in curve)  # in its first seconds
            done = await asyncio.to_thread(cli, grid, creds, "report", "--curve", str(res.msgId))
            assert done.returncode == 0, done.stderr
            assert done.stdout.splitlines()[-1].split() == ["total", "2"]

    asyncio.run(main())
    theirs = push.push(app, b.push_request(b.audience(tags=["nobody"]), notification="not yours")).msgId
    with pytest.raises(PushGrid.UnknownMessage):  # another app's message, through the router
        client.report_curve(theirs)


def test_a_push_batch_through_the_router_answers_each_push_and_each_reaches_its_device(grid, creds, client) -> None:
    async def main() -> None:
        async with Phone(grid, creds.appKey) as one, Phone(grid, creds.appKey) as two:
            nobody = to(one.rid)
            nobody.audience = b.audience(registration_ids=[])  # names no device: refused alone
            batch = [to(one.rid, "first"), nobody, to(two.rid, "second")]
            results = await asyncio.to_thread(client.push_batch, batch)
            assert [r.error for r in results] == ["", "InvalidArgument", ""]
            assert results[1].msgId == 0 and results[1].reason
            await until_async(lambda: one.got(results[0].msgId), "the first device to show its push", 30)
            await until_async(lambda: two.got(results[2].msgId), "the second device to show its push", 30)
            assert one.got(results[0].msgId).notification["alert"] == "first" and not two.got(results[0].msgId)
            await asyncio.to_thread(
                until,
                lambda: [s.received for s in client.report([results[0].msgId, results[2].msgId])] == [1, 1],
                "both receipts to be counted",
                30,
            )
            with pytest.raises(PushGrid.InvalidArgument):
                await asyncio.to_thread(client.push_batch, [to(one.rid)] * (limits.PUSH_BATCH_MAX + 1))

    asyncio.run(main())


def test_the_sdk_talks_ssl_to_the_router(client) -> None:
    client.device_count()
    connection = client.communicator.getDefaultRouter().ice_getCachedConnection()
    assert connection.type() == "ssl"


def test_tags_and_aliases_of_the_apps_own_devices(grid, creds, client) -> None:
    async def main() -> None:
        async with Phone(grid, creds.appKey) as phone:
            rid = phone.rid
            await asyncio.to_thread(client.add_tags, rid, ["vip", "beta"])
            assert sorted(client.get_tags(rid)) == ["beta", "vip"]
            assert client.is_member("vip", rid) and sorted(client.list_tags()) == ["beta", "vip"]
            client.remove_tags(rid, ["beta"])
            assert client.get_tags(rid) == ["vip"]
            client.set_alias(rid, "user-1")
            assert client.get_alias(rid) == "user-1" and client.alias_devices("user-1") == [rid]
            assert client.device_count() == 1
            # a tag push and an alias push reach it too
            res = await asyncio.to_thread(
                client.push, b.push_request(b.audience(tags=["vip"], tag_not=["muted"]), notification="by tag")
            )
            await until_async(lambda: phone.got(res.msgId), "the tag push", 30)
            res = await asyncio.to_thread(
                client.push, b.push_request(b.audience(aliases="user-1"), message=b.message("{}", content_type="json"))
            )
            await until_async(lambda: phone.got(res.msgId), "the alias push", 30)
            assert phone.got(res.msgId).message["content"] == "{}"
            client.delete_alias("user-1")
            client.delete_tag("vip")
            assert client.get_alias(rid) == "" and client.get_tags(rid) == [] and not client.is_member("vip", rid)

    asyncio.run(main())


def test_schedule_and_cancel(client) -> None:
    res = client.schedule(b.push_request(b.broadcast(), notification="later"), int(time.time() * 1000) + 3_600_000)
    assert stats(client, res.msgId).state == PushGrid.MessageState.Scheduled
    client.cancel(res.msgId)
    assert stats(client, res.msgId).state == PushGrid.MessageState.Cancelled


# ---------------------------------------------------------------- named errors arrive unchanged


def test_a_wrong_secret_is_refused_at_login(grid, creds) -> None:
    with pytest.raises(Glacier2.PermissionDeniedException) as e:
        PartnerClient(creds.appKey, "not-the-secret", config=grid.partner_config)
    assert e.value.reason


def test_named_errors_reach_the_caller(client) -> None:
    with pytest.raises(PushGrid.UnknownDevice):
        client.add_tags("nosuchdevice1", ["t"])
    with pytest.raises(PushGrid.InvalidArgument) as e:
        client.validate(b.push_request(b.audience(), notification="x"))
    assert e.value.field == "audience"
    with pytest.raises(PushGrid.UnknownMessage):
        client.cancel(123456789)
    assert client.reopened == 0  # none of them touched the session


def test_rate_limited_says_when_to_retry(grid, dbagent) -> None:
    creds = dbagent.createApp("sdk-quota-" + uuid.uuid4().hex[:8], 2)
    with PartnerClient(creds.appKey, creds.masterSecret, config=grid.partner_config) as client:
        req = b.push_request(b.broadcast(), notification="x", options=b.options(ttl=0))
        client.push(req)
        client.push(req)
        with pytest.raises(PushGrid.RateLimited) as e:
            client.push(req)
        assert 0 < e.value.retryAfterMs <= 60_000


# ---------------------------------------------------------------- the session stays and comes back


def test_an_idle_session_outlives_the_routers_session_timeout(client) -> None:
    client.device_count()
    time.sleep(limits.PARTNER_SESSION_TIMEOUT_SECONDS + 5)  # idle on purpose: only heartbeats flow
    assert client.device_count() == 0
    assert client.reopened == 0


def seen_closed(connection) -> bool:
    """Whether the client has noticed its router connection close."""
    try:
        connection.throwException()
    except Exception:  # noqa: BLE001 - any exception means the connection is closed
        return True
    return False


def start_unless_active(admin: IceGrid.AdminPrx) -> None:
    try:
        if admin.getServerState(ROUTER) != IceGrid.ServerState.Active:
            admin.startServer(ROUTER)
    except IceGrid.ServerStartException:
        pass  # IceGrid started it first (activation always)


def test_the_same_client_survives_router_restarts(grid, creds, client) -> None:
    async def main() -> None:
        async with Phone(grid, creds.appKey) as phone:
            await pushed_and_shown(client, phone, "before")
            with icegrid.admin_session(grid) as admin:
                # killed: IceGrid starts it again (activation always); the next call waits for it
                _, pid = router_state(admin)
                os.kill(pid, signal.SIGKILL)
                assert await asyncio.to_thread(client.device_count) == 1
                assert client.reopened == 1
                await pushed_and_shown(client, phone, "after a kill")
                state, new_pid = router_state(admin)
                assert state == IceGrid.ServerState.Active and new_pid != pid

                # stopped by an operator and started again a moment later; the partner pushes in
                # between: its session is known gone before the push, so the push waits and goes out
                connection = client.communicator.getDefaultRouter().ice_getCachedConnection()
                await asyncio.to_thread(admin.stopServer, ROUTER)
                await until_async(lambda: seen_closed(connection), "the client to see the router go", 10)
                starter = threading.Timer(2.0, start_unless_active, [admin])
                starter.start()
                try:
                    await pushed_and_shown(client, phone, "while it restarts")
                finally:
                    starter.join()
                assert client.reopened == 2

    asyncio.run(main())


# ---------------------------------------------------------------- the CLI


def cli(grid: RunDir, creds, *argv: str, secret: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PUSHGRID_MASTER_SECRET": secret or creds.masterSecret}
    return subprocess.run(
        [CLI, "--config", grid.partner_config, "--app-key", creds.appKey, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_the_cli_pushes_and_prints_the_msg_id(grid, creds, client) -> None:
    async def main() -> None:
        async with Phone(grid, creds.appKey) as phone:
            done = await asyncio.to_thread(
                cli,
                grid,
                creds,
                "--json",
                "push",
                "--rid",
                phone.rid,
                "--alert",
                "from the cli",
                "--extra",
                "k=v",
                "--sendno",
                "9",
            )
            assert done.returncode == 0, done.stderr
            res = json.loads(done.stdout)
            assert res["sendno"] == 9
            await until_async(lambda: phone.got(res["msg_id"]), "the device to show the CLI's push", 30)
            assert phone.got(res["msg_id"]).notification["extras"] == {"k": "v"}

            done = await asyncio.to_thread(cli, grid, creds, "push", "--rid", phone.rid, "--alert", "again")
            assert done.returncode == 0 and done.stdout.startswith("pushed msg_id ")
            msg_id = int(done.stdout.split()[2])
            await until_async(lambda: phone.got(msg_id), "the second push", 30)

            done = await asyncio.to_thread(cli, grid, creds, "report", str(msg_id))
            assert done.returncode == 0 and str(msg_id) in done.stdout

    asyncio.run(main())


def test_the_cli_says_in_one_line_why_it_failed(grid, creds) -> None:
    done = cli(grid, creds, "devices", "count", secret="wrong")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("pushgrid-partner: login refused: ") and done.stderr.count("\n") == 1
    done = cli(grid, creds, "tags", "list", "nosuchdevice1")
    assert done.returncode == 1 and done.stderr.startswith("pushgrid-partner: unknown device nosuchdevice1")


def test_a_request_larger_than_the_router_takes_is_refused_before_it_is_sent(client) -> None:
    from tools.partner.sdk import REQUEST_MAX_BYTES

    huge = b.push_request(b.audience(all=True), notification="x" * REQUEST_MAX_BYTES)
    with pytest.raises(PushGrid.LimitExceeded) as err:
        client.push(huge)
    assert err.value.limit == "request size" and err.value.max == REQUEST_MAX_BYTES
    assert "the router takes at most" in err.value.reason
    half = b.push_request(b.audience(all=True), notification="x" * (REQUEST_MAX_BYTES // 2))
    with pytest.raises(PushGrid.LimitExceeded):
        client.push_batch([half, half, half])  # too big together
    # just under the limit: the router takes it, and Push names what is wrong with it
    with pytest.raises(PushGrid.LimitExceeded) as named:
        client.push(b.push_request(b.audience(all=True), notification="x" * (REQUEST_MAX_BYTES - 4096)))
    assert named.value.limit == "payload"
    assert client.reopened == 0  # never a lost connection, a login or a repeated call
    assert client.device_count() == 0
