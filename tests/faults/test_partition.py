"""A network partition of a node's host under steady mixed load, on a grid of this module's own
that spans one host in a network namespace (its own sshd and address, on a bridge): the host
runs an IceGrid node with an STC, DBAgent, TagAlias and Push. Listening devices are spread over
both local nodes' STCs and the host's, while a partner pushes through the router, tags change
and devices come and go (tests/integration/traffic.py). The host's link goes down for longer
than its node's session and STC's presence refresh, and comes back: every push the partner had
accepted reaches every device (the ones held by the host's STC stayed connected to it and get
what was queued meanwhile when it is in reach again), is shown once and counted once, and the
time to recover is printed.

The partner pushes every PUSH_INTERVAL here, so that fewer pushes go out during the cut-off
than a device's queue keeps (limits.OFFLINE_PER_DEVICE): a device cut off for longer gets the
newest of them, as any device that was away does."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common import limits
from services.common.ice import client_communicator, dbagent
from tests.integration.netns import Bridge, Unavailable
from tests.integration.sshhosts import SSHD, SshHost, hosts_cmd, keygen, pushgrid
from tests.integration.traffic import Traffic
from tools.grid import icegrid, lifecycle
from tools.grid import metrics as grid_metrics
from tools.grid.rundir import RunDir

pytestmark = pytest.mark.integration

HOST = "farhost"
PARTITION_SECONDS = 40.0
PUSH_INTERVAL = 5.0


@pytest.fixture(scope="module")
def spanning(tmp_path_factory) -> Iterator[tuple[RunDir, SshHost]]:
    import os

    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed (tools/bootstrap.sh installs it)")
    base = Path(tmp_path_factory.mktemp("partition"))
    run_dir = base / "run"
    with contextlib.ExitStack() as stack:
        try:
            bridge = stack.enter_context(Bridge())
        except Unavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        host = stack.enter_context(SshHost(HOST, base, keygen(base / "client_key"), bridge))
        try:
            up = pushgrid(run_dir, "up", "--internal-host", bridge.address, timeout=300)
            assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
            added = hosts_cmd(
                run_dir, "add", HOST, host.ns.address, "--key", str(host.client_key), "--root", str(host.disk)
            )
            assert added.returncode == 0, added.stderr
            deployed = pushgrid(run_dir, "hosts", "deploy", HOST, "--servers", "STC,DBAgent,TagAlias,Push", timeout=600)
            assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
            run = RunDir(str(run_dir))
            lifecycle.wait_dispatchers(run)
            yield run, host
        finally:
            pushgrid(run_dir, "down", timeout=300)


def test_a_partitioned_host_loses_no_accepted_push(spanning: tuple[RunDir, SshHost]) -> None:
    run, host = spanning
    on_host = {s["id"] for s in icegrid.status(run)["servers"] if s["node"] == HOST}
    urls = grid_metrics.urls(run)  # each serves its metrics on its host's own address
    assert len(on_host) == 4 and all(f"//{host.ns.address}:" in urls[sid] for sid in on_host), urls
    with client_communicator(run.client_config) as comm:
        creds = dbagent(comm).createApp("partition-" + uuid.uuid4().hex[:8], limits.PUSH_QUOTA_MAX)
    assert PARTITION_SECONDS / PUSH_INTERVAL < limits.OFFLINE_PER_DEVICE
    traffic = Traffic(
        run, creds, churn=True, urls=[*run.device_urls, run.device_url(HOST)], push_interval=PUSH_INTERVAL
    )
    traffic.start()
    try:
        held_there = [d for d in traffic.devices if d.urls[0] == run.device_url(HOST)]
        assert held_there, "some listening devices should start on the host's STC"

        def partition() -> None:
            host.ns.run(["ip", "link", "set", "veth0", "down"], check=True)
            try:
                time.sleep(PARTITION_SECONDS)
            finally:
                host.ns.run(["ip", "link", "set", "veth0", "up"], check=True)

        traffic.under_fault(partition, f"{HOST} cut off the network for {PARTITION_SECONDS:g} s", timeout=180)
    finally:
        traffic.close()
    servers = [s for s in icegrid.status(run)["servers"] if s["node"] == HOST]
    assert servers and all(s["state"] == "Active" for s in servers), servers
