"""Faults under steady mixed load, on a grid of this module's own (so nothing it breaks reaches
other tests): a partner pushes through the router to six listening devices, by registration id
and by tag in turn, while another session changes their tags and other devices connect and leave
(tests/integration/traffic.py). Meanwhile, in turn, every kind of server is killed (SIGKILL) and
frozen (SIGSTOP for a few seconds), a whole IceGrid node dies with its servers and comes back,
the IceGrid registry master is killed, a Redis master is killed (its replica takes over) and
comes back, MySQL restarts, and the broker restarts (dropping the tasks it held: the reconciler
publishes them again). A network partition of a node's host is test_partition.py's.

After each: every push the partner had accepted reached every device and was shown once, each
report counts every device once, and the time to recover is printed. Partner calls may fail
while a fault lasts (a refused call is not an accepted push); what was accepted may not be lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from services.common import limits, redis_client
from services.common.config import RedisSettings, load_properties
from services.common.contract import PushGrid
from services.common.ice import client_communicator, dbagent, tagalias
from services.tagalias import cursor as cursors
from services.tagalias import keys
from services.tagalias.audience import query
from tests.integration.traffic import LOAD_SECONDS, Traffic
from tests.integration.waiting import answered
from tools import tagalias_load
from tools.grid import icegrid, kafka, lifecycle, mariadb, procs, redis_cluster, router
from tools.grid.rundir import REDIS_NODES, RunDir

pytestmark = pytest.mark.integration

FROZEN_SECONDS = 4.0
SERVERS = {  # one of each kind
    "DBAgent": "DBAgent-1",
    "TagAlias": "TagAlias-1",
    "Push": "Push-1",
    "Dispatcher": "Dispatcher-1",
    "STC": "STC-node1-1",
    "PartnerGateway": "PartnerGateway-1",
    "Glacier2 router": router.SERVER_ID,
}


def quiet(*_: object) -> None:
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[RunDir]:
    grid = RunDir(str(tmp_path_factory.mktemp("faults")))
    try:
        lifecycle.start_backends(grid, progress=quiet)
        lifecycle.start_icegrid(grid, progress=quiet)
        lifecycle.deploy(grid, progress=quiet)
        lifecycle.wait_dispatchers(grid)
        yield grid
    finally:
        lifecycle.down(grid, progress=quiet)


@pytest.fixture(scope="module")
def traffic(run: RunDir) -> Iterator[Traffic]:
    with client_communicator(run.client_config) as comm:
        creds = dbagent(comm).createApp("faults-" + uuid.uuid4().hex[:8], limits.PUSH_QUOTA_MAX)
    t = Traffic(run, creds, churn=True)
    t.start()
    yield t
    t.close()


def server_pid(run: RunDir, server_id: str) -> int:
    return next(s["pid"] for s in icegrid.status(run)["servers"] if s["id"] == server_id)


@pytest.mark.parametrize("server", list(SERVERS.values()), ids=list(SERVERS))
def test_a_killed_server_loses_no_accepted_push(run: RunDir, traffic: Traffic, server: str) -> None:
    def kill() -> None:
        pid = server_pid(run, server)
        os.kill(pid, signal.SIGKILL)
        lifecycle.wait_restarted(run, server, pid)  # IceGrid starts it again (activation="always")

    traffic.under_fault(kill, f"SIGKILL {server}")


@pytest.mark.parametrize("server", list(SERVERS.values()), ids=list(SERVERS))
def test_a_frozen_server_loses_no_accepted_push(run: RunDir, traffic: Traffic, server: str) -> None:
    def freeze() -> None:
        pid = server_pid(run, server)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(FROZEN_SECONDS)
        finally:
            os.kill(pid, signal.SIGCONT)

    traffic.under_fault(freeze, f"SIGSTOP {server} for {FROZEN_SECONDS:g} s")


def test_a_node_killed_with_its_servers_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    """node2 and every server it runs die at once, as with a lost host; the node comes back and
    starts them again."""

    def kill_node() -> None:
        _, pid_file, _ = icegrid._files(run, "node2")
        pids = [s["pid"] for s in icegrid.status(run)["servers"] if s["node"] == "node2" and s["pid"]]
        procs.stop(pid_file, timeout=0, sig=signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(LOAD_SECONDS)  # the other node's replicas answer meanwhile
        icegrid.start_node(run, "node2")
        icegrid.wait_nodes(run, ["node2"])
        lifecycle.wait_servers_active(run, progress=quiet)

    traffic.under_fault(kill_node, "SIGKILL IceGrid node2 and its servers")


def test_the_registry_master_killed_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    def kill_master() -> None:
        _, pid_file, _ = icegrid._files(run, "master")
        procs.stop(pid_file, timeout=0, sig=signal.SIGKILL)
        time.sleep(LOAD_SECONDS)  # the replica answers meanwhile
        icegrid.start_registries(run)

    traffic.under_fault(kill_master, "SIGKILL IceGrid registry master")


def test_a_redis_master_killed_fails_over_and_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    victim = next(name for name in REDIS_NODES if redis_cluster.roles(run).get(name) == "master")

    def kill_master() -> None:
        redis_cluster.stop_node(run, victim, kill=True)
        procs.wait_for(lambda: sorted(redis_cluster.roles(run).values()).count("master") == 3, "failover", 30)
        redis_cluster.start(run)  # back, as a replica, once it has its new master's data

    traffic.under_fault(kill_master, f"SIGKILL Redis master {victim}")
    assert redis_cluster.roles(run)[victim] == "slave" and not redis_cluster.lost_canaries(run)


def test_an_audience_walk_reads_on_across_a_redis_failover(run: RunDir) -> None:
    """A tag walked page by page through TagAlias while the master holding the bucket it stands
    in dies: the pages after the failover carry on where the walk stood, every member once."""
    app, tag = uuid.uuid4().hex[:24], "walked"
    rids = sorted(f"walk{i:05d}" for i in range(6000))
    redis = redis_client.cluster(RedisSettings.from_properties(load_properties(run.client_config)))
    try:
        tagalias_load.tag_devices(redis, app, tag, rids)
    finally:
        redis.close()
    time.sleep(1)  # replicated to every replica
    with client_communicator(run.client_config) as comm:
        ta = tagalias(comm)

        def page(cursor: str) -> PushGrid.AudiencePage:
            # Unavailable on the dead master's slots, until its replica takes over
            return answered(lambda: ta.tagMembers(app, tag, cursor, 250), timeout=60)

        got: list[str] = []
        last = page("")
        got += last.registrationIds
        while len(got) < len(rids) // 2:
            last = page(last.cursor)
            got += last.registrationIds
        standing = cursors.decode(last.cursor, query(app, PushGrid.Audience(tags=[tag]), []).digest()[:8])
        victim = redis_cluster.master_of(run, keys.tag(app, standing.bucket, tag))
        procs.wait_for(lambda: redis_cluster.healthy(run), "every replica in sync", 60)  # one fault at a time
        redis_cluster.stop_node(run, victim, kill=True)
        try:
            while not last.done:
                last = page(last.cursor)
                got += last.registrationIds
        finally:
            redis_cluster.start(run)  # back, as a replica (if it failed over; else as the master again)
    assert len(got) == len(set(got)), "a member handed out twice"
    assert sorted(got) == rids, f"{len(set(rids) - set(got))} members skipped"


def test_a_mysql_restart_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    def restart() -> None:
        mariadb.stop(run)
        mariadb.start(run)

    traffic.under_fault(restart, "MariaDB restart")


def test_a_broker_restart_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    def restart() -> None:
        kafka.stop(run)
        kafka.start(run)

    # tasks the broker held are gone: the reconciler publishes them after TASK_START_DEADLINE_SECONDS
    traffic.under_fault(restart, "broker restart", timeout=3 * limits.TASK_START_DEADLINE_SECONDS + 30)


def test_the_grid_is_whole_after_every_fault(run: RunDir) -> None:
    st = icegrid.status(run)
    assert all(s["state"] == "Active" for s in st["servers"]), [s for s in st["servers"] if s["state"] != "Active"]
    assert redis_cluster.healthy(run) and not redis_cluster.lost_canaries(run)
