"""A backend that dies gives callers a prompt Unavailable, and service resumes when it returns;
a Redis master that dies fails over to its replica with its data."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from services.common import canaries
from services.common.contract import PushGrid
from tests.integration.waiting import answered, until
from tools.grid import mariadb, redis_cluster
from tools.grid.rundir import REDIS_NODES
from tools.partner import builders as b

pytestmark = pytest.mark.integration


def test_dead_mysql_is_unavailable_then_dbagent_recovers(grid, dbagent):
    creds = dbagent.createApp("outage-" + uuid.uuid4().hex[:8], 600)
    mariadb.stop(grid)
    try:
        for call in (
            lambda: dbagent.getApp(creds.appKey),
            lambda: dbagent.createApp("x" + uuid.uuid4().hex, 1),
            lambda: dbagent.registerDevice(creds.appKey, PushGrid.Platform.Web),
        ):
            started = time.monotonic()
            with pytest.raises(PushGrid.Unavailable) as err:
                call()
            assert err.value.backend == "mysql"
            assert time.monotonic() - started < 10  # an error, not a hung thread
    finally:
        mariadb.start(grid)
    assert answered(lambda: dbagent.getApp(creds.appKey)).appKey == creds.appKey
    assert answered(lambda: dbagent.registerDevice(creds.appKey, PushGrid.Platform.Web)).registrationId


def test_a_killed_redis_master_fails_over_to_its_replica_with_its_data(grid, tagalias):
    app = uuid.uuid4().hex[:24]
    rids = [f"dev{i:03d}{uuid.uuid4().hex[:8]}" for i in range(40)]  # over all 32 buckets, so every master
    for rid in rids:
        tagalias.addTags(app, rid, ["before"])
    roles = redis_cluster.roles(grid)
    victim = next(name for name in REDIS_NODES if roles[name] == "master")
    redis_cluster.stop_node(grid, victim, kill=True)
    try:
        started = time.monotonic()
        # 32 buckets span every master, so a resolve touches the dead one until its replica takes over
        answered(lambda: tagalias.resolve(app, PushGrid.Audience(all=True), [], "", 1000), timeout=60)
        recovered = time.monotonic() - started
        print(f"TagAlias answered again {recovered:.1f} s after {victim} was killed")
        assert recovered < 30
        assert all(tagalias.getTags(app, rid) == ["before"] for rid in rids)  # nothing lost
        tagalias.addTags(app, rids[0], ["after"])
        status = _status(grid)
        assert status.returncode == 1 and f"{victim} DOWN" in status.stdout and "DEGRADED" in status.stdout
    finally:
        redis_cluster.start(grid)  # back, as a replica of the node that took its place
    assert redis_cluster.roles(grid)[victim] == "slave" and redis_cluster.healthy(grid)
    assert tagalias.getTags(app, rids[0]) == ["after", "before"]


def test_every_redis_node_keeps_an_append_only_file(grid):
    import redis

    for name in REDIS_NODES:
        node = redis.Redis(grid.internal_host, grid.ports[name], password=grid.secrets["redis"], decode_responses=True)
        assert node.config_get("appendonly") == {"appendonly": "yes"}, name
        assert node.config_get("appendfsync") == {"appendfsync": "everysec"}, name


def _status(grid) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", grid.path, "status"], capture_output=True, text=True
    )


def _done(push, app: str, msg_id: int) -> None:
    until(lambda: push.report(app, [msg_id])[0].state == PushGrid.MessageState.Done, "the push to be done", 30)


def test_a_master_that_came_back_empty_makes_status_and_reports_say_data_was_lost(grid, dbagent, tagalias, push, app):
    import redis

    victim = next(name for name, role in redis_cluster.roles(grid).items() if role == "master")
    node = redis.Redis(grid.internal_host, grid.ports[victim], password=grid.secrets["redis"], decode_responses=True)
    its_canaries = [key for key in canaries.KEYS if redis_cluster.master_of(grid, key) == victim]
    assert its_canaries  # every master holds some
    rid = dbagent.registerDevice(app, PushGrid.Platform.Android).registrationId
    tagalias.addDevice(app, rid, PushGrid.Platform.Android)
    request = b.push_request(b.audience(registration_ids=[rid]), notification="while data was lost")
    for key in its_canaries:  # what a master (and its replica) restarted without their data would lack
        node.delete(key)
    try:
        status = _status(grid)
        assert status.returncode == 1 and "DATA LOST" in status.stdout, status.stdout
        lost = push.push(app, request).msgId
        _done(push, app, lost)
        [error] = push.reportErrors(app, [lost])
        assert error.msgId == lost and f"{len(its_canaries)} of {len(canaries.KEYS)} canary keys" in error.error
    finally:
        replant = subprocess.run(
            [sys.executable, "-m", "tools.cli", "--run-dir", grid.path, "redis-replant"], capture_output=True, text=True
        )
    assert replant.returncode == 0 and f"{len(its_canaries)} canary keys were missing" in replant.stdout
    assert _status(grid).returncode == 0
    time.sleep(canaries.CHECK_SECONDS)  # what the dispatchers last saw has aged
    fine = push.push(app, request).msgId
    _done(push, app, fine)
    assert push.reportErrors(app, [fine, lost]) == [PushGrid.MessageError(msgId=lost, error=error.error)]
