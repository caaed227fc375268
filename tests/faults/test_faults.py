"""Faults under steady load, on a grid of this module's own (so nothing it breaks reaches other
tests): a partner pushes through the router to six listening devices while, in turn, every kind
of server is killed (SIGKILL) and frozen (SIGSTOP for a few seconds), the IceGrid registry master
is killed, a Redis master is killed (its replica takes over) and comes back, MySQL restarts, and
the broker restarts (dropping the tasks it held: the reconciler publishes them again).

After each: every push the partner had accepted reached every device and was shown once, each
report counts every device once, and the time to recover is printed. Partner calls may fail
while a fault lasts (a refused call is not an accepted push); what was accepted may not be lost.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from services.common import limits
from services.common.ice import client_communicator, dbagent
from tests.integration.traffic import Traffic
from tools.grid import icegrid, kafka, lifecycle, mariadb, procs, redis_cluster, router
from tools.grid.rundir import REDIS_NODES, RunDir

pytestmark = pytest.mark.integration

LOAD_SECONDS = 3.0  # pushes flow this long before the fault, and again after it
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
    t = Traffic(run, creds)
    t.start()
    yield t
    t.close()


def under_load(traffic: Traffic, fault: Callable[[], None], what: str, timeout: float = 90) -> None:
    """Pushes steadily, does fault, pushes on, then checks that nothing accepted was lost."""
    since = len(traffic.accepted)
    traffic.push_steadily()
    time.sleep(LOAD_SECONDS)
    started = time.monotonic()
    fault()
    time.sleep(LOAD_SECONDS)
    traffic.assert_clean(since, calls_may_fail=True, timeout=timeout)
    print(
        f"\n{what}: {len(traffic.accepted) - since} pushes accepted, all delivered once and counted "
        f"{time.monotonic() - started:.1f} s after the fault began ({LOAD_SECONDS:g} s of pushing on included); "
        f"{len(traffic.failed)} partner calls refused so far"
    )


def server_pid(run: RunDir, server_id: str) -> int:
    return next(s["pid"] for s in icegrid.status(run)["servers"] if s["id"] == server_id)


@pytest.mark.parametrize("server", list(SERVERS.values()), ids=list(SERVERS))
def test_a_killed_server_loses_no_accepted_push(run: RunDir, traffic: Traffic, server: str) -> None:
    def kill() -> None:
        pid = server_pid(run, server)
        os.kill(pid, signal.SIGKILL)
        lifecycle.wait_restarted(run, server, pid)  # IceGrid starts it again (activation="always")

    under_load(traffic, kill, f"SIGKILL {server}")


@pytest.mark.parametrize("server", list(SERVERS.values()), ids=list(SERVERS))
def test_a_frozen_server_loses_no_accepted_push(run: RunDir, traffic: Traffic, server: str) -> None:
    def freeze() -> None:
        pid = server_pid(run, server)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(FROZEN_SECONDS)
        finally:
            os.kill(pid, signal.SIGCONT)

    under_load(traffic, freeze, f"SIGSTOP {server} for {FROZEN_SECONDS:g} s")


def test_the_registry_master_killed_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    def kill_master() -> None:
        _, pid_file, _ = icegrid._files(run, "master")
        procs.stop(pid_file, timeout=0, sig=signal.SIGKILL)
        time.sleep(LOAD_SECONDS)  # the replica answers meanwhile
        icegrid.start_registries(run)

    under_load(traffic, kill_master, "SIGKILL IceGrid registry master")


def test_a_redis_master_killed_fails_over_and_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    victim = next(name for name in REDIS_NODES if redis_cluster.roles(run).get(name) == "master")

    def kill_master() -> None:
        redis_cluster.stop_node(run, victim, kill=True)
        procs.wait_for(lambda: sorted(redis_cluster.roles(run).values()).count("master") == 3, "failover", 30)
        redis_cluster.start(run)  # back, as a replica

    under_load(traffic, kill_master, f"SIGKILL Redis master {victim}")
    assert redis_cluster.roles(run)[victim] == "slave" and not redis_cluster.lost_canaries(run)


def test_a_mysql_restart_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    def restart() -> None:
        mariadb.stop(run)
        mariadb.start(run)

    under_load(traffic, restart, "MariaDB restart")


def test_a_broker_restart_loses_no_accepted_push(run: RunDir, traffic: Traffic) -> None:
    def restart() -> None:
        kafka.stop(run)
        kafka.start(run)

    # tasks the broker held are gone: the reconciler publishes them after TASK_START_DEADLINE_SECONDS
    under_load(traffic, restart, "broker restart", timeout=3 * limits.TASK_START_DEADLINE_SECONDS + 30)


def test_the_grid_is_whole_after_every_fault(run: RunDir) -> None:
    st = icegrid.status(run)
    assert all(s["state"] == "Active" for s in st["servers"]), [s for s in st["servers"] if s["state"] != "Active"]
    assert redis_cluster.healthy(run) and not redis_cluster.lost_canaries(run)
