"""Rolling upgrades on the real grid while a partner pushes through the router and devices listen.

Every rollout here goes through `pushgrid upgrade` / `pushgrid rollback` as an operator runs
them. Throughout, a partner pushes to six connected devices at a steady rate; at the end every
accepted push must have reached every device (by msg id), no partner call may have failed, and
no device may be left disconnected.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from patch import release
from patch.distribution import IcePatch2Distribution
from services.common import paths, upgrades
from services.common.redis_client import cluster
from services.dbagent import migrations
from tests.integration.traffic import Traffic
from tools.grid import icegrid
from tools.grid.rundir import RunDir

pytestmark = pytest.mark.integration

FAST = ("--soak", "1", "--stage", "8")  # one canary, then two stages; a short soak


def pushgrid(run: RunDir, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", run.path, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=paths.ROOT,
    )


def releases_running(run: RunDir) -> set[str]:
    return {s["release"] for s in icegrid.status(run)["servers"] if s["release"]}


@pytest.fixture(scope="module")
def traffic(grid: RunDir, dbagent) -> Iterator[Traffic]:
    t = Traffic(grid, dbagent.createApp("upgrade-" + uuid.uuid4().hex[:8], 1_000_000))
    t.start()
    yield t
    t.close()


@pytest.fixture(scope="module")
def first(grid: RunDir) -> str:
    """The release up published when the grid came up."""
    return IcePatch2Distribution(grid.patch_data).published()


def variant(
    run: RunDir, version: str, edit: tuple[str, str, str] | None = None, add: dict[str, str] | None = None
) -> str:
    """A release of this checkout with one file's text replaced (path, old, new) or files added."""
    src = run.releases.parent / f"src-{version}"
    shutil.rmtree(src, ignore_errors=True)
    for top in release.CONTENTS:
        shutil.copytree(paths.ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        path, old, new = src / edit[0], edit[1], edit[2]
        source = path.read_text()
        assert old in source, edit
        path.write_text(source.replace(old, new, 1))
    for rel, text in (add or {}).items():
        (src / rel).write_text(text)
    release.build(run.releases, src, version=version, progress=lambda *_: None)
    return version


MIGRATIONS = "services/dbagent/migrations"
_SHIPPED = len(migrations.available())  # the checkout's own; the variants below add the next ones
PROBE_MIGRATION = f"{MIGRATIONS}/{_SHIPPED + 1:03d}_upgrade_probe.sql"
DROP_MIGRATION = f"{MIGRATIONS}/{_SHIPPED + 2:03d}_drop.sql"
PROBE_TABLE = (
    "-- rollout: expand\nCREATE TABLE IF NOT EXISTS upgrade_probe (x INT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
)
DROP_TABLE = "-- rollout: contract after 099\nDROP TABLE IF EXISTS apps;\n"


def table_exists(mysql_settings, name: str) -> bool:
    import pymysql

    s = mysql_settings
    conn = pymysql.connect(host=s.host, port=s.port, user=s.user, password=s.password, database=s.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES LIKE %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def test_a_full_rolling_upgrade_under_traffic_loses_nothing(
    grid: RunDir, traffic: Traffic, first: str, mysql_settings, redis_settings
) -> None:
    variant(grid, "up-2", add={PROBE_MIGRATION: PROBE_TABLE})  # an expand migration
    assert not table_exists(mysql_settings, "upgrade_probe")
    traffic.push_steadily()
    time.sleep(1)
    result = pushgrid(grid, "upgrade", "up-2", *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "every server runs up-2" in result.stdout and f"schema migrations applied: {_SHIPPED + 1:03d}" in result.stdout
    )
    assert table_exists(mysql_settings, "upgrade_probe")  # applied before the first server moved
    assert releases_running(grid) == {"up-2"}
    recorded = upgrades.read(cluster(redis_settings))  # what the console shows of it
    assert recorded is not None and (recorded.target, recorded.previous, recorded.phase) == ("up-2", first, "finished")
    assert set(recorded.servers.values()) == {upgrades.DONE} and "Console-1" in recorded.servers
    traffic.assert_clean(since=10)


LIST_APPS = "        return self._store.list_apps()"
BAD = [  # (why, file, text, replaced by)
    (
        "crashes at start",
        "services/dbagent/__main__.py",
        "def main() -> int:\n",
        "def main() -> int:\n    raise SystemExit(3)\n",
    ),
    (
        "starts but fails its health check",
        "services/dbagent/servant.py",
        LIST_APPS,
        "        __import__('time').sleep(30)",
    ),
    (
        "answers real calls with errors",
        "services/dbagent/servant.py",
        LIST_APPS,
        "        raise PushGrid.Unavailable(reason='a broken release', backend='mysql')",
    ),
]


@pytest.mark.parametrize("why,edit,old,new", BAD, ids=[b[0] for b in BAD])
def test_a_bad_release_is_stopped_at_the_canary_and_rolled_back(
    grid: RunDir, traffic: Traffic, why: str, edit: str, old: str, new: str
) -> None:
    version = variant(grid, "bad-" + uuid.uuid4().hex[:6], edit=(edit, old, new))
    before = releases_running(grid)
    since = len(traffic.accepted)
    traffic.push_steadily()
    result = pushgrid(grid, "upgrade", version, "--soak", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rolled back" in result.stderr and "DBAgent-1" in result.stdout
    assert "TagAlias-1: " not in result.stdout  # stopped at the canary: nothing past it was touched
    assert releases_running(grid) == before
    assert IcePatch2Distribution(grid.patch_data).published() in before
    traffic.assert_clean(since)


def test_a_release_whose_migration_breaks_the_running_one_is_refused(grid: RunDir, mysql_settings) -> None:
    before = releases_running(grid)
    version = variant(grid, "contract-" + uuid.uuid4().hex[:6], add={DROP_MIGRATION: DROP_TABLE})
    result = pushgrid(grid, "upgrade", version)
    assert result.returncode == 1 and "removes what" in result.stderr, result.stdout + result.stderr
    assert " -> " not in result.stdout and releases_running(grid) == before
    assert table_exists(mysql_settings, "apps")


def test_rollback_two_releases_back(grid: RunDir, traffic: Traffic, first: str) -> None:
    release.build(grid.releases, version="up-3", progress=lambda *_: None)
    result = pushgrid(grid, "upgrade", "up-3", "--canary", "0", "--soak", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    since = len(traffic.accepted)
    traffic.push_steadily()
    result = pushgrid(grid, "rollback", first, *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert releases_running(grid) == {first}
    traffic.assert_clean(since)


def test_an_upgrade_killed_midway_is_finished_by_running_it_again(grid: RunDir, traffic: Traffic) -> None:
    since = len(traffic.accepted)
    traffic.push_steadily()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "--run-dir", grid.path, "upgrade", "up-2", "--canary", "0", "--soak", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=paths.ROOT,
    )
    moved = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        moved += " -> up-2 " in line
        if moved == 5:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(30)
    assert len(releases_running(grid)) >= 1 and Path(grid.upgrade_state).exists()
    result = pushgrid(grid, "upgrade", "up-2", "--canary", "0", "--soak", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" -> up-2 ") <= 17 - 5
    assert releases_running(grid) == {"up-2"} and not Path(grid.upgrade_state).exists()
    traffic.assert_clean(since)
