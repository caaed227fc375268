"""The STC engine with fakes: takeover, replay order and filtering, ack routing, spreading."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from services.common import limits, msgid
from services.common.mailbox import Stored
from services.stc import protocol
from services.stc.engine import BackendUnavailable, Engine, Outgoing, Session, Settings, replay_order
from tests.unit.fakes import APP, OTHER_APP, FakeMailbox, sample
from tests.unit.stc_fakes import FakeConn, FakeDirectory, FakeReceipts

NOW = msgid.EPOCH_MS + 10 * 86400_000
STC = "STC-test-1"


def mid(ms_after_epoch_start: int, seq: int = 0) -> int:
    """A msg id assigned at NOW - 1 h + ms."""
    return msgid.floor_for_time(NOW - 3600_000 + ms_after_epoch_start) + seq


def body(msg_id: int) -> str:
    return json.dumps(
        {"op": "msg", "msg_id": msg_id, "replay": False, "notification": {"alert": "a"}, "override_msg_id": 0}
    )


def stored(msg_id: int, platforms: tuple[str, ...] = (), expires_at: int = NOW + 60_000) -> Stored:
    return Stored(msg_id, body(msg_id), platforms, expires_at)


def env(msg_id: int, app: str = APP, broadcast: bool = False, expires_at: int = NOW + 60_000) -> Outgoing:
    return Outgoing(
        msg_id=msg_id, app_key=app, broadcast=broadcast, expires_at=expires_at, override_msg_id=0, body=body(msg_id)
    )


class World:
    def __init__(self) -> None:
        self.directory = FakeDirectory()
        self.mailbox = FakeMailbox()
        self.receipts = FakeReceipts()
        self.engine = Engine(Settings(stc_id=STC), self.directory, self.mailbox, self.receipts, clock=lambda: NOW)

    async def connect(self, rid: str, conn: FakeConn | None = None, replay: bool = True) -> tuple[FakeConn, Session]:
        conn = conn or FakeConn()
        session = await self.engine.hello(conn, protocol.Hello(self.directory.devices[rid].app_key, rid, "good", ""))
        if replay:
            await self.engine.replay(session)
        return conn, session


def run(test: Callable[[World], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test(World()))


def frames(conn: FakeConn) -> list[dict]:
    return [json.loads(f) for f in conn.frames]


def test_hello_welcomes_and_marks_presence() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")
        conn, _ = await w.connect("r1")
        assert frames(conn)[0] == {
            "op": "welcome",
            "heartbeat": limits.HEARTBEAT_SECONDS,
            "stc": STC,
            "server_time": NOW,
        }
        assert w.mailbox.presence == {"r1": STC}
        assert w.engine.online_count(APP) == 1 and w.engine.connections == 1
        with pytest.raises(protocol.AuthFailed):
            await w.engine.hello(FakeConn(), protocol.Hello(APP, "r1", "bad", ""))
        with pytest.raises(protocol.AuthFailed):
            await w.engine.hello(FakeConn(), protocol.Hello(OTHER_APP, "r1", "good", ""))

    run(t)


def test_takeover_closes_the_older_connection_and_keeps_presence() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")
        old, old_session = await w.connect("r1")
        new, _ = await w.connect("r1")
        assert old.closed == (4004, "replaced by a newer connection") and new.closed is None
        w.engine.disconnected(old_session)  # the transport notices the old connection ending
        await w.engine.flush()
        assert w.mailbox.presence == {"r1": STC} and w.engine.connections == 1
        assert await w.engine.deliver(env(mid(1)), ["r1"]) == ["r1"]
        assert len(new.frames) == 2 and len(old.frames) == 1

    run(t)


def test_takeover_across_processes_is_found_on_refresh() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")
        w.directory.add("r2")
        c1, _ = await w.connect("r1")
        c2, _ = await w.connect("r2")
        w.mailbox.presence["r1"] = "STC-other-1"  # the device said hello to another process
        await w.engine.refresh()
        assert c1.closed and c1.closed[0] == 4004 and c2.closed is None
        assert w.engine.connections == 1 and w.mailbox.presence["r1"] == "STC-other-1"

    run(t)


def test_replay_order_and_filters() -> None:
    a, b, c, d, e = (mid(i * 1000) for i in range(5))
    msgs = {
        a: stored(a),
        b: stored(b, ("ios",)),
        c: stored(c, expires_at=NOW - 1),
        d: stored(d, ("android", "web")),
        e: stored(e),
    }
    plan = replay_order(queued=[e, a, 999], broadcasts=[d, b, c], stored=msgs, platform="android", now=NOW)
    assert [(m.msg_id, bc) for m, bc in plan] == [(a, False), (e, False), (d, True)]


def test_replay_sends_queue_then_broadcasts_newer_than_mark_and_registration() -> None:
    async def t(w: World) -> None:
        created = NOW - 1800_000
        w.directory.add("r1", created_at=created)
        before_registration, acked_bc, new_bc, newer_bc = mid(0), mid(2000_000), mid(2100_000), mid(2200_000)
        for m in (before_registration, acked_bc, new_bc, newer_bc):
            w.mailbox.log(APP, stored(m))
        w.mailbox.log(OTHER_APP, stored(mid(2300_000)))
        w.mailbox.marks["r1"] = acked_bc
        q1, q2 = mid(2050_000), mid(2060_000)
        w.mailbox.queue("r1", stored(q2, expires_at=NOW + 1000))  # expires first, but is newer
        w.mailbox.queue("r1", stored(q1, expires_at=NOW + 9000))
        conn, _ = await w.connect("r1")
        got = frames(conn)[1:]
        assert [f["msg_id"] for f in got] == [q1, q2, new_bc, newer_bc]
        assert all(f["replay"] is True for f in got)

    run(t)


def test_hellos_arriving_together_share_one_verify_and_replay_and_fail_alone() -> None:
    async def t(w: World) -> None:
        created = NOW - 1800_000
        for i in range(50):
            w.directory.add(f"r{i}", app=APP if i % 2 else OTHER_APP, created_at=created)
        old_bc, app_bc, other_bc = mid(1000_000), mid(2000_000), mid(2100_000)
        w.mailbox.log(APP, stored(old_bc))
        w.mailbox.log(APP, stored(app_bc))
        w.mailbox.log(OTHER_APP, stored(other_bc))
        w.mailbox.marks["r1"] = app_bc  # r1 has the app's broadcast already
        queued = mid(2050_000)
        w.mailbox.queue("r3", stored(queued))
        conns = [FakeConn() for _ in range(51)]
        hellos = [protocol.Hello(w.directory.devices[f"r{i}"].app_key, f"r{i}", "good", "") for i in range(50)]
        hellos.append(protocol.Hello(APP, "r5", "bad", ""))  # a wrong token among them
        outcomes = await asyncio.gather(
            *(w.engine.hello(c, h) for c, h in zip(conns, hellos, strict=True)), return_exceptions=True
        )
        assert isinstance(outcomes[-1], protocol.AuthFailed)
        sessions = [o for o in outcomes[:-1] if isinstance(o, Session)]
        assert len(sessions) == 50 and w.engine.connections == 50
        assert w.directory.verify_calls == [51]  # every hello of the turn in one directory call
        assert all(w.mailbox.presence[f"r{i}"] == STC for i in range(50))
        await asyncio.gather(*(w.engine.replay(s) for s in sessions))
        got = {f"r{i}": [f["msg_id"] for f in frames(conns[i])[1:]] for i in range(50)}
        assert got["r1"] == []  # the old broadcast predates the device; the newer one it acked
        assert got["r3"] == [queued, app_bc]
        assert got["r0"] == [other_bc] and got["r7"] == [app_bc]

    run(t)


def test_registrations_arriving_together_share_a_call_per_app() -> None:
    async def t(w: World) -> None:
        calls: list[tuple[str, int]] = []
        register = w.directory.register

        def counted(app_key: str, platform: str, count: int) -> list[tuple[str, str]]:
            calls.append((app_key, count))
            return register(app_key, platform, count)

        w.directory.register = counted  # type: ignore[method-assign]  # the fake, counting its calls
        apps = [APP, OTHER_APP, "unknown-app"] * 4
        frames_ = await asyncio.gather(*(w.engine.register(a, "ios") for a in apps), return_exceptions=True)
        assert sorted(calls) == sorted([(APP, 4), (OTHER_APP, 4), ("unknown-app", 4)])
        assert all(isinstance(f, protocol.AuthFailed) for f in frames_[2::3])
        rids = [json.loads(f)["registration_id"] for f in frames_ if isinstance(f, str)]
        assert len(set(rids)) == 8 and all(w.directory.devices[r].platform == "ios" for r in rids)

    run(t)


def test_registrations_the_gate_refuses_close_with_4029_and_reach_no_directory() -> None:
    from services.stc.registration import Refusal

    class Gate:
        """Refuses every registration from 10.0.0.9."""

        def admit(self, wanted: list[tuple[str, str]]) -> list[Refusal | None]:
            return [Refusal("from this address", 2500) if addr == "10.0.0.9" else None for addr, _ in wanted]

    async def t(w: World) -> None:
        w.engine._gate = Gate()  # type: ignore[assignment]
        before = len(w.directory.devices)
        answers = await asyncio.gather(
            w.engine.register(APP, "ios", "10.0.0.9"), w.engine.register(APP, "ios", "10.0.0.1"), return_exceptions=True
        )
        refused, registered = answers
        assert isinstance(refused, protocol.RegistrationRefused) and refused.code == 4029
        assert refused.reason == "too many registrations from this address; retry in 3 s"
        assert isinstance(registered, str) and json.loads(registered)["op"] == "registered"
        assert len(w.directory.devices) == before + 1

    run(t)


def test_acks_route_to_queue_or_broadcast_mark_and_become_receipts() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")
        t1, b1, b2 = mid(1), mid(2), mid(3)
        w.mailbox.queue("r1", stored(t1))
        w.mailbox.log(APP, stored(b1))
        conn, session = await w.connect("r1")
        assert await w.engine.broadcast(env(b2, broadcast=True), [], 0) == 1
        w.engine.ack(session, [b2, t1, b1, 424242])  # an id never sent here is ignored
        w.engine.ack(session, [t1])  # so is a second ack
        await w.engine.flush()
        assert w.mailbox.queues["r1"] == {} and w.mailbox.marks["r1"] == b2
        assert w.receipts.records == [(APP, [[b2, ["r1"]], [t1, ["r1"]], [b1, ["r1"]]])]

    run(t)


def test_deliver_reaches_only_connected_devices_of_the_app() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")
        w.directory.add("r2")
        w.directory.add("x1", app=OTHER_APP)
        c1, _ = await w.connect("r1")
        cx, _ = await w.connect("x1")
        m = mid(5)
        assert await w.engine.deliver(env(m), ["r1", "r2", "x1", "r1"]) == ["r1"]
        assert json.loads(c1.frames[-1])["msg_id"] == m and len(cx.frames) == 1
        assert await w.engine.deliver(env(mid(6), expires_at=NOW), ["r1"]) == []
        slow = FakeConn(accept=False)
        w.directory.add("r3")
        await w.connect("r3", slow)
        assert await w.engine.deliver(env(mid(7)), ["r3"]) == []

    run(t)


class TimedConn(FakeConn):
    """A FakeConn that notes (in a list shared by several) when each frame is sent."""

    def __init__(self, times: list[float]) -> None:
        super().__init__()
        self.times = times

    def send(self, frame: str) -> bool:
        self.times.append(asyncio.get_running_loop().time())
        return super().send(frame)


def test_broadcast_filters_platforms_and_spreads_sends() -> None:
    async def t(w: World) -> None:
        times: list[float] = []
        conns = []
        for i in range(6):
            w.directory.add(f"r{i}", platform="ios" if i % 2 else "android")
            conns.append((await w.connect(f"r{i}", TimedConn(times)))[0])
        w.directory.add("x", app=OTHER_APP)
        other, _ = await w.connect("x")
        assert await w.engine.broadcast(env(mid(1), broadcast=True), ["ios"], 0) == 3
        assert [len(c.frames) for c in conns] == [1, 2, 1, 2, 1, 2] and len(other.frames) == 1

        loop = asyncio.get_running_loop()
        times.clear()
        start = loop.time()
        assert await w.engine.broadcast(env(mid(2), broadcast=True), [], 500) == 6
        offsets = [t - start for t in times]
        assert offsets == sorted(offsets)
        assert offsets[0] < 0.2 and 0.3 < offsets[-1] < 2.0  # 6 sends at 0, 83, ..., 417 ms

    run(t)


def test_disconnect_clears_presence_unless_the_device_came_back() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")
        w.directory.add("r2")
        _, s1 = await w.connect("r1")
        _, s2 = await w.connect("r2")
        w.engine.disconnected(s1)
        w.engine.disconnected(s2)
        await w.connect("r2")  # back before the flush
        await w.engine.flush()
        assert w.mailbox.presence == {"r2": STC}
        await w.engine.refresh(touch_connected=True)
        assert sorted(r for _, rids, _ in w.directory.touched for r in rids) == ["r1", "r2"]

    run(t)


def test_a_device_that_connects_is_marked_seen_at_the_next_refresh() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")
        await w.connect("r1")
        await w.engine.refresh()  # hello does not write last-seen itself: the refresh batches it
        assert [(app, list(rids)) for app, rids, _ in w.directory.touched] == [(APP, ["r1"])]
        w.directory.touched.clear()
        await w.engine.refresh()  # once: a device still connected waits for touch_connected
        assert w.directory.touched == []

    run(t)


def test_shutdown_closes_with_1012_clears_presence_and_flushes() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")
        conn, session = await w.connect("r1")
        assert await w.engine.deliver(env(mid(1)), ["r1"]) == ["r1"]
        w.engine.ack(session, [mid(1)])
        w.engine.start()
        await w.engine.shutdown()
        assert conn.closed == (1012, "STC restarting")
        assert w.mailbox.presence == {} and w.engine.connections == 0
        assert w.receipts.records and w.receipts.flushed == 1

    run(t)


def test_backend_failure_is_backend_unavailable() -> None:
    async def t(w: World) -> None:
        w.directory.add("r1")

        def broken(rids: Sequence[str], stc_id: str, ttl_seconds: int) -> None:
            raise ConnectionError("redis down")

        w.mailbox.set_online = broken  # type: ignore[method-assign]  # the fake, made to fail as a dead Redis
        with pytest.raises(BackendUnavailable):
            await w.connect("r1")

    run(t)


def test_devices_still_connected_get_what_was_queued_while_their_stc_was_cut_off() -> None:
    """A partition of STC's host: presence refreshes fail, dispatchers only queue. The first
    refresh that works again replays the queues of every device still connected."""

    async def t(w: World) -> None:
        for rid in ("r1", "r2"):
            w.directory.add(rid)
        c1, _ = await w.connect("r1")
        c2, _ = await w.connect("r2")
        working = w.mailbox.refresh_online

        def cut_off(rids: Sequence[str], stc_id: str, ttl_seconds: int) -> list[str]:
            raise ConnectionError("no route to redis")

        w.mailbox.refresh_online = cut_off  # type: ignore[method-assign]  # the fake, made to fail as in a partition
        await w.engine.refresh()
        w.mailbox.store(stored(mid(5)))
        w.mailbox.enqueue(stored(mid(5)), ["r1"])  # what a dispatcher did meanwhile
        await w.engine.refresh()  # still cut off: nothing yet
        assert len(c1.frames) == 1
        w.mailbox.refresh_online = working  # type: ignore[method-assign]
        await w.engine.refresh()
        assert json.loads(c1.frames[-1]) == {**json.loads(body(mid(5))), "replay": True}
        assert len(c2.frames) == 1  # r2 had nothing queued: only its welcome
        await w.engine.refresh()  # in reach all along now: no second replay
        assert len(c1.frames) == 2

    run(t)


def test_stopping_ends_a_spread_broadcast_at_once() -> None:
    async def t(w: World) -> None:
        for i in range(3):
            w.directory.add(f"r{i}")
            await w.connect(f"r{i}")
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.create_task(w.engine.broadcast(env(mid(1), broadcast=True), [], 3_600_000))
        await asyncio.sleep(0.05)
        w.engine.stop_spreading()
        assert await asyncio.wait_for(task, 5) == 1 and loop.time() - started < 5

    run(t)


def test_receipts_are_grouped_by_message_in_records_of_bounded_size(monkeypatch) -> None:
    monkeypatch.setattr(limits, "RECEIPTS_PER_RECORD", 4)

    async def t(w: World) -> None:
        b1, b2 = mid(1), mid(2)
        sessions = []
        for i in range(5):
            w.directory.add(f"r{i}")
            sessions.append((await w.connect(f"r{i}"))[1])
        for b in (b1, b2):
            await w.engine.broadcast(env(b, broadcast=True), [], 0)
        for s in sessions:
            w.engine.ack(s, [b1, b2])
        await w.engine.flush()
        assert all(sum(len(rids) for _, rids in groups) <= 4 for _, groups in w.receipts.records)
        assert sorted(w.receipts.acked()) == sorted((APP, b, f"r{i}") for b in (b1, b2) for i in range(5))

    run(t)


def test_the_counters_say_what_devices_were_sent_and_acked() -> None:
    counters = {
        "hello ok": ("pushgrid_stc_hellos_total", {"outcome": "ok"}),
        "hello refused": ("pushgrid_stc_hellos_total", {"outcome": "AuthFailed"}),
        "live": ("pushgrid_stc_deliveries_total", {"kind": "live"}),
        "broadcast": ("pushgrid_stc_deliveries_total", {"kind": "broadcast"}),
        "replay": ("pushgrid_stc_deliveries_total", {"kind": "replay"}),
        "replays": ("pushgrid_stc_replays_total", {}),
        "acks": ("pushgrid_stc_acks_total", {}),
    }

    def read() -> dict[str, float]:
        return {what: sample(name, **labels) for what, (name, labels) in counters.items()}

    async def t(w: World) -> None:
        before = read()
        w.directory.add("r1")
        w.directory.add("r2")
        q1, q2, live, bc = mid(1), mid(2), mid(3), mid(4)
        w.mailbox.queue("r1", stored(q1))
        w.mailbox.queue("r1", stored(q2))
        _, s1 = await w.connect("r1")  # replays q1 and q2
        await w.connect("r2")  # nothing to replay: no replay counted
        with pytest.raises(protocol.AuthFailed):
            await w.engine.hello(FakeConn(), protocol.Hello(APP, "r1", "bad", ""))
        assert await w.engine.deliver(env(live), ["r1", "r2", "nobody"]) == ["r1", "r2"]
        assert await w.engine.broadcast(env(bc, broadcast=True), [], 0) == 2
        w.engine.ack(s1, [q1, live, bc, 424242, q1])  # one never sent and one repeated: not counted
        after = read()
        assert {what: after[what] - before[what] for what in counters} == {
            "hello ok": 2,
            "hello refused": 1,
            "live": 2,
            "broadcast": 2,
            "replay": 2,
            "replays": 1,
            "acks": 3,
        }

    run(t)
