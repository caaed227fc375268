"""Bring-up and tear-down of a whole local grid, in order, showing progress.

up: backends (MariaDB + schema, Redis Cluster, Kafka broker), IceGrid registries and nodes, the
router's certificate and the partners' config, the application, then waits until every server
is active and the Glacier2 router answers partners on its SSL and TCP endpoints. Each step is idempotent, so `up` on a
running grid checks it and changes nothing. down stops everything in reverse order and then
makes sure no process of the run directory is left.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import IceGrid

from patch import release
from patch.distribution import IcePatch2Distribution
from services.common.config import MySQLSettings, check_internal_host, load_properties
from services.common.release import CHECKOUT
from tools.grid import icegrid, kafka, mariadb, procs, redis_cluster, router
from tools.grid.rundir import NODES, RunDir

Progress = Callable[[str], None]
# The dispatchers' receipts group (services/dispatcher/receipts.py) reports no partitions: after a
# member left, the others rejoin it on their next heartbeat (3 s); one session timeout (10 s,
# services/common/kafka_client.py) covers that rebalance.
RECEIPTS_SETTLE_SECONDS = 10.0


def step(progress: Progress, what: str, fn: Callable[[], object]) -> None:
    """Runs one step of a bring-up, saying what it starts and how it ended (a str result says how)."""
    started = time.monotonic()
    progress(f"  {what} ...")
    result = fn()
    progress(f"  {what}: {result if isinstance(result, str) else 'ok'} ({time.monotonic() - started:.1f}s)")


def _migrate(run: RunDir) -> None:
    from services.dbagent.migrations import migrate

    migrate(MySQLSettings.from_properties(load_properties(run.client_config)))


def start_backends(run: RunDir, progress: Progress = print) -> None:
    run.write_client_config()
    ports, host = run.ports, run.internal_host
    step(progress, f"MariaDB on {host}:{ports['mysql']}", lambda: mariadb.start(run))
    step(progress, "schema migrations", lambda: _migrate(run))
    step(
        progress,
        f"Redis Cluster, 3 masters and 3 replicas on {host}:{ports['redis1']}..{ports['redis6']}",
        lambda: redis_cluster.start(run),
    )
    step(progress, f"Kafka-compatible broker on {host}:{ports['kafka']}", lambda: kafka.start(run))


def start_icegrid(run: RunDir, progress: Progress = print) -> None:
    ports = run.ports
    step(
        progress,
        f"IceGrid registry master :{ports['registry-master']} and replica :{ports['registry-replica']}",
        lambda: icegrid.start_registries(run),
    )
    for node in NODES:
        step(progress, f"IceGrid {node}", functools.partial(icegrid.start_node, run, node))
    step(progress, "nodes registered", lambda: icegrid.wait_nodes(run))


def deploy(run: RunDir, progress: Progress = print, timeout: float = 90) -> None:
    step(progress, f"partner door certificate and config for {run.partner_host}", lambda: router.prepare(run))
    step(progress, "release published for the nodes", lambda: publish_first_release(run, progress))
    dispatchers = [s for s in icegrid.restarted_by_deploy(run) if s.startswith("Dispatcher-")]
    one_at_a_time = len(dispatchers) > 1
    try:
        if one_at_a_time:
            step(
                progress,
                f"{', '.join(dispatchers)} leave the consumer group one at a time",
                lambda: stop_one_at_a_time(run, dispatchers, timeout),
            )
        step(progress, "application pushgrid", lambda: icegrid.deploy(run))
    finally:  # whatever failed, no dispatcher is left disabled
        if one_at_a_time:
            step(progress, f"{', '.join(dispatchers)} started again", lambda: start_again(run, dispatchers))
    step(progress, "every server active", lambda: wait_servers_active(run, timeout, progress))
    step(progress, "Glacier2 router answers partners", lambda: router.wait_answering(run, timeout))
    step(progress, "dispatchers own every task partition", lambda: wait_dispatchers(run, timeout))


def stop_one_at_a_time(run: RunDir, server_ids: list[str], timeout: float = 90) -> None:
    """Disables and stops dispatchers one by one, each after the group settled on the others.

    An update that restarts every dispatcher at once (a new value of metrics) would close one
    consumer while the group rebalances for another, and the local broker never finishes such a
    rebalance (services/common/kafka_client.py leave()): no task or receipt would be read again.
    One at a time each leaves holding its partitions (of both groups, tasks and receipts), and the
    last leaves them empty; start_again brings them back once the update is deployed."""
    with icegrid.admin_session(run) as admin:
        for i, sid in enumerate(server_ids):
            admin.enableServer(sid, False)  # the node neither restarts it nor starts it on update
            if admin.getServerState(sid) != IceGrid.ServerState.Inactive:
                admin.stopServer(sid)
            if i < len(server_ids) - 1:
                wait_dispatchers(run, timeout)  # the others took its partitions
                time.sleep(RECEIPTS_SETTLE_SECONDS)


def start_again(run: RunDir, server_ids: list[str]) -> None:
    """Enables and starts the dispatchers stop_one_at_a_time stopped."""
    with icegrid.admin_session(run) as admin:
        for sid in server_ids:
            admin.enableServer(sid, True)
            if admin.getServerState(sid) == IceGrid.ServerState.Inactive:
                admin.startServerAsync(sid)  # wait_servers_active watches it come up


def publish_first_release(run: RunDir, progress: Progress = print) -> str:
    """A new grid runs a release of this checkout: built and published unless one is published
    already (a grid that is up keeps what it runs; `pushgrid upgrade` changes it)."""
    dist = IcePatch2Distribution(run.patch_data)
    current = dist.published()
    if current != CHECKOUT:
        return f"{current} (kept)"
    built = release.build(run.releases, progress=progress)
    dist.publish(built, admin=None)
    return built.version


def set_partner_host(run: RunDir, host: str, progress: Progress = print, timeout: float = 60) -> bool:
    """Moves the router's client endpoints to host on a running grid, and back the same way.

    Keeps the host in the run directory, re-issues the router's certificate for it from the same
    CA (partners keep trusting it), rewrites partner.cfg, updates the application (the node
    restarts only the router, whose endpoints changed) and returns once the router answers on
    host over SSL and TCP. Returns False, changing nothing, if host is the partner host already.
    Raises certs.InvalidHost for an address a partner could not dial.
    """
    if not run.set_partner_host(host):
        return False
    with icegrid.admin_session(run) as admin:
        old_pid = admin.getServerPid(router.SERVER_ID)
    step(progress, f"partner door certificate and config for {run.partner_host}", lambda: router.prepare(run))
    step(progress, "application pushgrid", lambda: icegrid.deploy(run))
    # the old router may still answer where the new host resolves to the same address
    step(progress, "Glacier2 router restarted", lambda: wait_restarted(run, router.SERVER_ID, old_pid, timeout))
    step(
        progress, f"Glacier2 router answers partners on {run.partner_host}", lambda: router.wait_answering(run, timeout)
    )
    return True


def wait_restarted(run: RunDir, server_id: str, old_pid: int, timeout: float = 60) -> str:
    """Waits until server_id is active again with a process other than old_pid."""
    with icegrid.admin_session(run) as admin:

        def restarted() -> bool:
            return admin.getServerState(server_id) == IceGrid.ServerState.Active and admin.getServerPid(
                server_id
            ) not in (0, old_pid)

        procs.wait_for(restarted, f"{server_id} restarted", timeout)
        return f"pid {admin.getServerPid(server_id)}"


def wait_dispatchers(run: RunDir, timeout: float = 90) -> str:
    """Waits until the dispatchers' consumer group has handed out every task partition, so the
    first push is dispatched at once rather than after the group's first rebalance."""
    from services.common.config import RedisSettings
    from services.common.mailbox import Mailbox
    from services.common.redis_client import cluster

    mailbox = Mailbox(cluster(RedisSettings.from_properties(load_properties(run.client_config))))
    wanted = sorted(range(kafka.TOPICS["pushgrid.tasks"]))

    def settled() -> bool:  # every partition owned by exactly one dispatcher (a dead one's stale
        owned = sorted(p for ps in mailbox.partitions().values() for p in ps)  # report overlaps)
        return owned == wanted

    procs.wait_for(settled, "the dispatchers' consumer group", timeout)
    return ", ".join(f"{owner}: {len(ps)}" for owner, ps in sorted(mailbox.partitions().items()))


def wait_servers_active(run: RunDir, timeout: float = 90, progress: Progress = print) -> None:
    """Waits until the node has started every server (activation="always" starts them itself;
    an on-demand one, IcePatch2, is started here if an update of its properties stopped it)."""
    deadline = time.monotonic() + timeout
    last = None
    with icegrid.admin_session(run) as admin:
        while True:
            states = icegrid.server_states(admin)
            waiting = sorted(s for s, st in states.items() if st != IceGrid.ServerState.Active)
            if not waiting:
                return
            for sid in waiting:
                if states[sid] == IceGrid.ServerState.Inactive and icegrid.on_demand(admin, sid):
                    admin.startServerAsync(sid)  # its answer is the state this loop watches
            if waiting != last:
                progress(f"    waiting for {', '.join(waiting)}")
                last = waiting
            if time.monotonic() > deadline:
                raise procs.StartError(
                    f"servers not active after {timeout:.0f}s: {', '.join(waiting)} "
                    f"(logs under {run.path}/icegrid/<node>/logs)"
                )
            time.sleep(0.3)


def up(
    run: RunDir,
    progress: Progress = print,
    partner_host: str | None = None,
    internal_host: str | None = None,
    metrics: str | None = None,
) -> None:
    """Brings the whole grid up; partner_host, if given, is kept as the router's public address,
    internal_host as the address everything else listens on (only while the grid is down),
    metrics ("on" or "off") as whether servers keep metrics: on a running grid a new value is
    deployed and IceGrid restarts every server with it."""
    started = time.monotonic()
    progress(f"pushgrid up: run directory {run.path}")
    if internal_host is not None and check_internal_host(internal_host) != run.internal_host:
        if procs.processes_under(run.path):
            raise procs.StartError(
                f"the grid listens on {run.internal_host}; take it down (pushgrid down) before moving it"
            )
        run.set_internal_host(internal_host)
        progress(f"  internal host is now {run.internal_host}")
    if partner_host is not None and run.set_partner_host(partner_host):
        progress(f"  partner host is now {run.partner_host}")
    if metrics is not None and run.set_metrics(metrics):
        progress(f"  metrics are now {run.metrics}")
    progress("[1/3] backends")
    start_backends(run, progress)
    progress("[2/3] IceGrid")
    start_icegrid(run, progress)
    progress("[3/3] application")
    deploy(run, progress)
    progress(
        f"grid up in {time.monotonic() - started:.1f}s; "
        f"icegridadmin --Ice.Config={run.client_config}; partners use {run.partner_config}"
    )


def down(run: RunDir, progress: Progress = print) -> None:
    """Stops nodes (they stop their servers; the hosts' over SSH), registries, broker, Redis,
    MariaDB; then sweeps."""
    from tools.grid import hostnode

    hostnode.stop_all(run, progress)
    for node in reversed(NODES):
        if icegrid.stop_node(run, node):
            progress(f"  stopped IceGrid {node} and its servers")
    if icegrid.stop_registries(run):
        progress("  stopped IceGrid registries")
    for name, mod in (("Kafka broker", kafka), ("Redis Cluster", redis_cluster), ("MariaDB", mariadb)):
        if mod.stop(run):
            progress(f"  stopped {name}")
    left = procs.processes_under(run.path)
    for pid in left:
        procs.terminate(pid, timeout=5)
    if left:
        progress(f"  stopped {len(left)} leftover process(es)")
    progress("grid down")
