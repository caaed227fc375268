"""Session fixtures: real servers on loopback in a run directory of the test session's own.

`backends` starts MariaDB, the Redis Cluster and the Kafka-compatible broker; `grid` adds the
IceGrid registries, nodes and the deployed application. Everything is stopped at the end, also
when tests fail, and nothing outside the run directory is touched.
"""

from __future__ import annotations

import pytest

from services.common.config import KafkaSettings, MySQLSettings, RedisSettings, load_properties
from tools.grid import lifecycle
from tools.grid.rundir import RunDir


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> RunDir:
    return RunDir(str(tmp_path_factory.mktemp("grid")))


@pytest.fixture(scope="session")
def backends(run_dir: RunDir):
    try:
        lifecycle.start_backends(run_dir, progress=lambda *_: None)
        yield run_dir
    finally:
        lifecycle.down(run_dir, progress=lambda *_: None)


@pytest.fixture(scope="session")
def grid_properties(backends: RunDir):
    return load_properties(backends.client_config)


@pytest.fixture(scope="session")
def mysql_settings(grid_properties) -> MySQLSettings:
    return MySQLSettings.from_properties(grid_properties)


@pytest.fixture(scope="session")
def redis_settings(grid_properties) -> RedisSettings:
    return RedisSettings.from_properties(grid_properties)


@pytest.fixture(scope="session")
def kafka_settings(grid_properties) -> KafkaSettings:
    return KafkaSettings.from_properties(grid_properties)


@pytest.fixture(scope="session")
def grid(backends: RunDir) -> RunDir:
    """The whole local grid, application deployed and every server active."""
    lifecycle.start_icegrid(backends, progress=lambda *_: None)
    lifecycle.deploy(backends, progress=lambda *_: None)
    return backends


@pytest.fixture(scope="session")
def communicator(grid: RunDir):
    """An Ice client of the grid: well-known objects resolve through the replicated registry."""
    from services.common.ice import client_communicator

    comm = client_communicator(grid.client_config)
    yield comm
    comm.destroy()


@pytest.fixture(scope="session")
def dbagent(communicator):
    from services.common.ice import dbagent

    return dbagent(communicator)


@pytest.fixture(scope="session")
def tagalias(communicator):
    from services.common.ice import tagalias

    return tagalias(communicator)


@pytest.fixture(scope="session")
def mailbox(grid: RunDir, redis_settings):
    """The grid's delivery state in Redis (presence, queues, broadcast logs), as services see it."""
    from services.common.mailbox import Mailbox
    from services.common.redis_client import cluster

    return Mailbox(cluster(redis_settings))


@pytest.fixture
def app(dbagent) -> str:
    """A fresh app for one test, so tests sharing the grid never see each other's devices."""
    import uuid

    return dbagent.createApp("test-" + uuid.uuid4().hex[:8], 0).appKey


@pytest.fixture(scope="session")
def push(communicator):
    """The Push replica group's well-known proxy."""
    from services.common import ice

    return ice.push(communicator)
