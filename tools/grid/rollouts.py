"""The one way to get a Rollout (patch/rollout.py) wired to a run directory's grid: its admin
session, IcePatch2 distribution, health checks, release repository and MySQL migrations.

`pushgrid upgrade` and `pushgrid rollback` use it, and so does `pushgrid hosts deploy`: servers
newly placed on a host are rolled onto the published release with the same care (patch, start,
health check) as any upgrade. Each step is recorded in Redis for the operators' console
(services/common/upgrades.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from patch.distribution import IcePatch2Distribution
from patch.health import Checks
from patch.rollout import Confirm, Options, Progress, Rollout
from services.common import upgrades
from services.common.config import MySQLSettings, RedisSettings, load_properties
from services.common.ice import client_communicator
from services.common.mailbox import Mailbox
from services.common.redis_client import cluster
from tools.grid import icegrid
from tools.grid.rundir import RunDir


@contextlib.contextmanager
def open_rollout(
    run: RunDir,
    options: Options,
    progress: Progress = print,
    confirm: Confirm | None = None,
) -> Iterator[Rollout]:
    """A Rollout on run's grid, for the length of the block."""
    from services.dbagent.migrations import migrate

    props = load_properties(run.client_config)
    communicator = client_communicator(run.client_config)
    redis = cluster(RedisSettings.from_properties(props))
    try:
        with icegrid.admin_session(run) as admin:
            yield Rollout(
                admin=admin,
                distribution=IcePatch2Distribution(run.patch_data),
                checks=Checks(admin, communicator, Mailbox(redis), run.device_url),
                releases=run.releases,
                state_file=run.upgrade_state,
                options=options,
                progress=progress,
                confirm=confirm,
                migrate=functools.partial(migrate, MySQLSettings.from_properties(props)),
                recorder=upgrades.Recorder(lambda: redis),
            )
    finally:
        communicator.destroy()
