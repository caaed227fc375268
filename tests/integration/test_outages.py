"""A backend that dies gives callers a prompt Unavailable, and service resumes when it returns."""

from __future__ import annotations

import time
import uuid

import pytest

from services.common.contract import PushGrid
from tools.grid import mariadb, redis_cluster
from tools.grid.rundir import REDIS_NODES

pytestmark = pytest.mark.integration


def _eventually(call, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except PushGrid.Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


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
    assert _eventually(lambda: dbagent.getApp(creds.appKey)).appKey == creds.appKey
    assert _eventually(lambda: dbagent.registerDevice(creds.appKey, PushGrid.Platform.Web)).registrationId


def test_dead_redis_master_is_unavailable_then_tagalias_recovers(grid, tagalias):
    app = uuid.uuid4().hex[:24]
    redis_cluster.stop_node(grid, REDIS_NODES[1])
    try:
        started = time.monotonic()
        with pytest.raises(PushGrid.Unavailable) as err:
            # 32 buckets span every master, so a resolve touches the dead one
            tagalias.resolve(app, PushGrid.Audience(all=True), [], "", 1000)
        assert err.value.backend == "redis"
        assert time.monotonic() - started < 15
    finally:
        redis_cluster.start(grid)
    rid = "dev" + uuid.uuid4().hex[:12]
    _eventually(lambda: tagalias.addTags(app, rid, ["back"]))
    assert _eventually(lambda: tagalias.getTags(app, rid)) == ["back"]
