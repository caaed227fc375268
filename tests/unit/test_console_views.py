"""What the console's JSON says: the grid, a push looked up by msg id alone, and an upgrade's
progress from the rollout's record (services/common/upgrades.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.common import upgrades
from services.common.contract import PushGrid
from services.console import views
from tests.unit.fakes import APP
from tests.unit.push_fakes import FakeDB, request

BIG_ID = 2**60 + 7  # msg ids are above 2**53: JSON carries them as strings


def server(sid: str, release: str = "v1", state: str = "Active", distributed: bool = True) -> dict[str, Any]:
    return {
        "id": sid,
        "node": "node1",
        "state": state,
        "pid": 10,
        "enabled": True,
        "replica_groups": [],
        "distributed": distributed,
        "release": release,
    }


def test_the_grid_as_lists_with_each_nodes_host() -> None:
    status = {
        "registries": {"Replica": True, "Master": True},
        "nodes": {"node2": False, "node1": True},
        "replica_groups": {"DBAgentGroup": {"policy": "adaptive", "objects": ["DBAgent"]}},
        "servers": [server("DBAgent-1"), server("DBAgent-2", state="NodeDown")],
    }
    body = views.grid(status, {"node1": {"hostname": "h1"}, "node2": None})
    assert body["registries"] == [{"name": "Master", "up": True}, {"name": "Replica", "up": True}]
    assert body["nodes"] == [
        {"name": "node1", "up": True, "info": {"hostname": "h1"}},
        {"name": "node2", "up": False, "info": None},
    ]
    assert body["replica_groups"] == [{"id": "DBAgentGroup", "policy": "adaptive", "objects": ["DBAgent"]}]
    assert body["active"] == 1 and len(body["servers"]) == 2
    json.dumps(body)


@pytest.mark.parametrize("text", ["", "abc", "-1", "0", "1.5", "1" * 20, str(2**63), " 12x"])
def test_a_msg_id_is_a_positive_64_bit_number(text: str) -> None:
    with pytest.raises(views.BadRequest):
        views.msg_id(text)


def test_a_msg_id_is_read_whole() -> None:
    assert views.msg_id(f" {BIG_ID} ") == BIG_ID
    assert views.msg_id(str(2**63 - 1)) == 2**63 - 1


def test_a_push_with_its_report_and_cumulative_curve() -> None:
    req = request(audience=PushGrid.Audience(tags=["vip", "beta"], registrationIds=["r1"]))
    rec = PushGrid.MessageRecord(BIG_ID, APP, req, PushGrid.MessageState.Done, 1000, 1000, 2000)
    stats = PushGrid.MessageStats(BIG_ID, 3, 2, 1, 2, PushGrid.MessageState.Done)
    curve = [PushGrid.CurvePoint(3, 1, 1), PushGrid.CurvePoint(0, 1, 1)]
    body = views.message(rec, stats, curve, "")
    assert body["msg_id"] == str(BIG_ID) and body["app"] == APP and body["state"] == "Done"
    assert (body["created_at"], body["send_at"], body["expires_at"]) == (1000, 1000, 2000)
    assert body["kind"] == "notification"
    assert body["audience"] == {
        "everyone": False,
        "parts": [{"kind": "tags", "count": 2}, {"kind": "registration_ids", "count": 1}],
        "platforms": [],
    }
    assert "vip" not in json.dumps(body)  # kinds and sizes, never names
    assert body["report"] == {"targets": 3, "sent_online": 2, "stored_offline": 1, "received": 2, "error": ""}
    assert body["curve"] == [
        {"offset": 0, "width": 1, "received": 1, "total": 1},
        {"offset": 3, "width": 1, "received": 1, "total": 2},
    ]


def test_a_lookup_needs_only_the_msg_id() -> None:
    db = FakeDB()
    db.add(BIG_ID, request(audience=PushGrid.Audience(all=True)), state=PushGrid.MessageState.Done, send_at=1000)
    db.recordTimedReceipts([PushGrid.TimedReceipts(APP, BIG_ID, ["r1", "r2"], 1500)])
    db.errors[BIG_ID] = "redis lost data"
    db.calls.clear()
    body = views.lookup(db, BIG_ID)  # type: ignore[arg-type]  # the fake answers as DBAgent does
    assert body["audience"]["everyone"] and body["report"]["error"] == "redis lost data"
    assert body["curve"] == [{"offset": 0, "width": 1, "received": 2, "total": 2}]
    assert db.calls[0] == "findMessage"
    with pytest.raises(PushGrid.UnknownMessage):
        views.lookup(db, 12345)  # type: ignore[arg-type]


def test_a_lookup_through_a_dbagent_without_curves_has_an_empty_curve() -> None:
    db = FakeDB()
    db.add(7, request())
    db.before_curves = True
    assert views.lookup(db, 7)["curve"] == []  # type: ignore[arg-type]


SERVERS = [
    server("DBAgent-1"),
    server("DBAgent-2"),
    server("Push-1"),
    server("Glacier2Router", release="", distributed=False),
]


def test_every_server_on_one_release() -> None:
    body = views.upgrade(SERVERS, None)
    assert body["summary"] == "every server on v1 (3 servers)" and not body["in_progress"]
    assert body["releases"] == [{"release": "v1", "servers": 3}] and body["record"] is None
    assert [s["id"] for s in body["servers"]] == ["DBAgent-1", "DBAgent-2", "Push-1"]  # the router runs no release


def test_servers_on_different_releases_are_an_upgrade_in_progress() -> None:
    mixed = [server("DBAgent-1", "v2"), server("DBAgent-2"), server("Push-1")]
    body = views.upgrade(mixed, None)
    assert body["summary"] == "upgrade in progress: 2 of 3 servers on v1" and body["in_progress"]
    record = upgrades.Progress("v2", "v1", servers={"DBAgent-1": "done", "DBAgent-2": "patching", "Push-1": "pending"})
    mixed[1] = server("DBAgent-2", release="", state="Inactive")
    body = views.upgrade(mixed, record)
    assert body["summary"] == "upgrade in progress: 1 of 3 servers on v2" and body["target"] == "v2"
    assert [(s["id"], s["release"], s["step"]) for s in body["servers"]] == [
        ("DBAgent-1", "v2", "done"),
        ("DBAgent-2", "", "patching"),
        ("Push-1", "v1", "pending"),
    ]
    assert body["record"]["steps"][1] == {"server": "DBAgent-2", "step": "patching"}


def test_a_finished_record_and_a_stopped_server_are_no_upgrade() -> None:
    done = upgrades.Progress("v1", "v0", phase=upgrades.FINISHED, servers={"DBAgent-1": "done"})
    body = views.upgrade([server("DBAgent-1"), server("Push-1", release="", state="Inactive")], done, "")
    assert body["summary"] == "1 of 2 servers on v1; the others are not running" and not body["in_progress"]
    assert body["record"]["phase"] == "finished"
    assert views.upgrade([], None, "redis did not answer")["record_error"] == "redis did not answer"


class FakeRedis:
    def __init__(self, fail: bool = False) -> None:
        self.values: dict[str, str] = {}
        self.written: list[str] = []
        self.fail = fail

    def set(self, key: str, value: str, ex: int) -> None:
        if self.fail:
            raise RedisConnectionError("down")
        assert ex == upgrades.KEEP_SECONDS
        self.values[key] = value
        self.written.append(value)

    def get(self, key: str) -> str | None:
        return self.values.get(key)


def test_the_recorder_writes_the_whole_record_at_each_step() -> None:
    redis = FakeRedis()
    now = iter(range(100, 200))
    recorder = upgrades.Recorder(lambda: redis, clock=lambda: next(now))
    recorder.step("DBAgent-1", upgrades.DONE)  # nothing begun: nothing written
    recorder.begin("v2", "v1", ["DBAgent-1", "Push-1"])
    recorder.step("DBAgent-1", upgrades.STOPPING)
    recorder.phase(upgrades.FINISHED, "every server runs v2")
    read = upgrades.read(redis)
    assert read == upgrades.Progress(
        "v2", "v1", upgrades.FINISHED, "every server runs v2", {"DBAgent-1": "stopping", "Push-1": "pending"}, 100, 103
    )
    assert len(redis.written) == 3


def test_a_redis_that_fails_never_fails_the_upgrade() -> None:
    recorder = upgrades.Recorder(lambda: FakeRedis(fail=True))
    recorder.begin("v2", "v1", ["DBAgent-1"])
    recorder.step("DBAgent-1", upgrades.PATCHING)
    assert recorder.progress is not None and recorder.progress.servers["DBAgent-1"] == "patching"


@pytest.mark.parametrize("text", [None, "", "not json", "[]", '{"target": "v2"}', '{"servers": 3}'])
def test_a_record_that_is_not_one_reads_as_none(text: str | None) -> None:
    assert upgrades.Progress.from_json(text) is None


def test_a_record_with_unknown_steps_or_phase_keeps_only_what_it_knows() -> None:
    progress = upgrades.Progress("v2", "v1", "dancing", "", {"A-1": "done", "B-1": "<script>"}, 1, 2)
    read = upgrades.Progress.from_json(progress.to_json())
    assert read is not None and read.phase == upgrades.STOPPED and read.servers == {"A-1": "done"}
