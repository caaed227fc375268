"""The rollout's plan and its reaction to failures, over a fake grid (no servers run here)."""

from __future__ import annotations

from pathlib import Path

import IceGrid
import pytest

from patch import release
from patch.health import Unhealthy
from patch.rollout import Options, Rollout, RolloutFailed, State, order, stages
from tests.unit.test_patch_release import QUIET, source_tree

SERVERS = [
    "STC-node1-1",
    "Glacier2Router",
    "Push-2",
    "Dispatcher-1",
    "DBAgent-2",
    "pushgrid.IcePatch2",
    "TagAlias-1",
    "PartnerGateway-1",
    "DBAgent-1",
    "Push-1",
]


def test_back_ends_go_first_and_foreign_servers_never() -> None:
    assert order(SERVERS) == [
        "DBAgent-1",
        "DBAgent-2",
        "TagAlias-1",
        "Push-1",
        "Push-2",
        "PartnerGateway-1",
        "Dispatcher-1",
        "STC-node1-1",
    ]


def test_stages_start_with_the_canary_and_repeat_the_last_size() -> None:
    assert stages(list("abcdefg"), 1, [2, 3]) == [["a"], ["b", "c"], ["d", "e", "f"], ["g"]]
    assert stages(list("abc"), 0, []) == [["a", "b", "c"]]
    assert stages(list("abc"), 5, [1]) == [["a", "b", "c"]]
    assert stages([], 1, [2]) == []


class FakeAdmin:
    """IceGrid's admin over a dict of servers: state, pid and the release each would report."""

    def __init__(self, ids: list[str], version: str) -> None:
        self.ids = ids
        self.running = dict.fromkeys(ids, version)
        self.pids = {s: 100 + i for i, s in enumerate(ids)}
        self.enabled = dict.fromkeys(ids, True)
        self.log: list[str] = []
        self.patched: dict[str, str] = {}

    def getAllServerIds(self) -> list[str]:
        return list(self.ids)

    def getServerState(self, sid: str) -> IceGrid.ServerState:
        return IceGrid.ServerState.Active if self.running[sid] else IceGrid.ServerState.Inactive

    def getServerPid(self, sid: str) -> int:
        return self.pids[sid] if self.running[sid] else 0

    def enableServer(self, sid: str, on: bool) -> None:
        self.enabled[sid] = on

    def stopServer(self, sid: str) -> None:
        assert not self.enabled[sid], "stopped while the registry still hands it out"
        self.running[sid] = ""
        self.log.append(f"stop {sid}")

    def startServer(self, sid: str) -> None:
        self.running[sid] = self.patched[sid]
        self.pids[sid] += 1000
        self.log.append(f"start {sid}")


class FakeDistribution:
    def __init__(self, admin: FakeAdmin, version: str) -> None:
        self.admin = admin
        self.version = version

    def published(self) -> str:
        return self.version

    def publish(self, rel: release.Release, admin: object) -> None:
        self.version = rel.version

    def patch(self, admin: object, sid: str) -> None:
        self.admin.patched[sid] = self.version


class FakeChecks:
    """Healthy unless the server runs a version listed in bad."""

    def __init__(self, admin: FakeAdmin, bad: set[str]) -> None:
        self.admin = admin
        self.bad = bad

    def release_of(self, sid: str) -> str:
        return self.admin.running[sid]

    def check(self, sid: str, version: str) -> None:
        if self.release_of(sid) != version:
            raise Unhealthy(f"{sid} runs {self.release_of(sid)}")
        self.probe(sid)

    def probe(self, sid: str) -> None:
        if self.admin.running[sid] in self.bad:
            raise Unhealthy(f"{sid} answers with errors")


@pytest.fixture
def grid(tmp_path: Path) -> tuple[Rollout, FakeAdmin, Path]:
    src, repo = source_tree(tmp_path / "src"), tmp_path / "releases"
    for v in ("v1", "v2", "v3"):
        release.build(repo, src, version=v, progress=QUIET)
    admin = FakeAdmin(order(SERVERS) + ["Glacier2Router"], "v1")
    admin.running["Glacier2Router"] = "v1"
    rollout = Rollout(
        admin=admin,  # type: ignore[arg-type]  # the fake has the admin calls a rollout makes
        distribution=FakeDistribution(admin, "v1"),
        checks=FakeChecks(admin, set()),  # type: ignore[arg-type]  # likewise for the checks
        releases=repo,
        state_file=tmp_path / "upgrade.json",
        options=Options(canary=1, stages=[3], soak_seconds=0.05, probe_interval=0.01, drain_seconds=0),
        progress=QUIET,
    )
    return rollout, admin, tmp_path / "upgrade.json"


def test_an_upgrade_moves_every_server_and_forgets_its_state(grid) -> None:
    rollout, admin, state = grid
    rollout.upgrade("v2")
    assert {s: v for s, v in admin.running.items() if s != "Glacier2Router"} == dict.fromkeys(order(SERVERS), "v2")
    assert admin.log[:2] == ["stop DBAgent-1", "start DBAgent-1"] and all(admin.enabled.values())
    assert not state.exists()


def test_a_canary_that_fails_is_rolled_back_and_nothing_else_is_touched(grid) -> None:
    rollout, admin, state = grid
    rollout.checks.bad = {"v2"}
    with pytest.raises(RolloutFailed, match="rolled back to v1"):
        rollout.upgrade("v2")
    assert set(admin.running.values()) == {"v1"}
    assert admin.log == ["stop DBAgent-1", "start DBAgent-1", "stop DBAgent-1", "start DBAgent-1"]
    assert rollout.distribution.published() == "v1" and not state.exists()


def test_a_failure_in_a_later_stage_rolls_back_every_upgraded_server(grid) -> None:
    rollout, admin, _ = grid
    admin.startServer_real = admin.startServer

    def start(sid: str) -> None:  # Push-1 never starts on v2
        admin.startServer_real(sid)
        if sid == "Push-1" and admin.running[sid] == "v2":
            admin.running[sid] = ""

    admin.startServer = start  # type: ignore[method-assign]  # the fake, made to fail once
    with pytest.raises(RolloutFailed, match="Push-1"):
        rollout.upgrade("v2")
    assert set(admin.running.values()) == {"v1"}


def test_an_interrupted_upgrade_is_finished_by_running_it_again(grid) -> None:
    rollout, admin, state = grid
    State("v2", "v1").save(state)  # as a killed run leaves it: some servers moved, one stopped
    admin.running.update({"DBAgent-1": "v2", "DBAgent-2": "", "TagAlias-1": "v1"})
    admin.patched["DBAgent-2"] = "v2"
    admin.enabled["DBAgent-2"] = False
    rollout.distribution.version = "v2"
    rollout.upgrade("v2")
    assert {v for s, v in admin.running.items() if s != "Glacier2Router"} == {"v2"}
    assert "stop DBAgent-1" not in admin.log  # already on v2: left alone


def test_an_interrupted_rollback_is_finished_before_anything_else(grid) -> None:
    rollout, admin, state = grid
    State("v2", "v1", rolling_back=True).save(state)
    admin.running.update({"DBAgent-1": "v2", "DBAgent-2": "v2"})
    with pytest.raises(RolloutFailed, match="finished the interrupted rollback to v1"):
        rollout.upgrade("v3")
    assert set(admin.running.values()) == {"v1"} and not state.exists()


def test_rollback_defaults_to_the_release_before_the_published_one(grid) -> None:
    rollout, admin, _ = grid
    rollout.upgrade("v3")
    rollout.rollback(None)
    assert {v for s, v in admin.running.items() if s != "Glacier2Router"} == {"v2"}
    rollout.rollback("v1")
    assert {v for s, v in admin.running.items() if s != "Glacier2Router"} == {"v1"}


def test_a_tampered_or_unknown_release_is_refused(grid, tmp_path: Path) -> None:
    rollout, admin, _ = grid
    (tmp_path / "releases/v2/slice/Types.ice").write_text("changed")
    with pytest.raises(RolloutFailed, match="does not match its manifest"):
        rollout.upgrade("v2")
    with pytest.raises(release.ReleaseError, match="no release v9"):
        rollout.upgrade("v9")
    assert set(admin.running.values()) == {"v1"} and admin.log == []


def test_confirm_pauses_before_each_stage_after_the_canary(grid) -> None:
    rollout, admin, state = grid
    asked: list[str] = []
    rollout.confirm = lambda question: asked.append(question) or False
    with pytest.raises(RolloutFailed, match="stopped before stage 1 at the operator's word"):
        rollout.upgrade("v2")
    assert admin.running["DBAgent-1"] == "v2" and admin.running["DBAgent-2"] == "v1"  # the canary only
    assert len(asked) == 1 and "DBAgent-2" in asked[0] and state.exists()
    rollout.confirm = lambda question: True
    rollout.upgrade("v2")  # run again: goes on from where the grid is
    assert {v for s, v in admin.running.items() if s != "Glacier2Router"} == {"v2"} and not state.exists()


def test_each_servers_step_is_recorded_for_the_console(grid) -> None:
    from services.common import upgrades
    from tests.unit.test_console_views import FakeRedis

    rollout, admin, _ = grid
    redis = FakeRedis()
    rollout.recorder = upgrades.Recorder(lambda: redis)
    rollout.upgrade("v2")
    seen = [upgrades.Progress.from_json(v) for v in redis.written]
    assert [p.servers["DBAgent-1"] for p in seen if p][:5] == ["pending", "stopping", "patching", "starting", "done"]
    last = upgrades.read(redis)
    assert last is not None and (last.target, last.previous, last.phase) == ("v2", "v1", upgrades.FINISHED)
    assert list(last.servers) == order(SERVERS) and set(last.servers.values()) == {"done"}


def test_a_failed_upgrade_records_the_failure_and_the_rollback(grid) -> None:
    from services.common import upgrades
    from tests.unit.test_console_views import FakeRedis

    rollout, admin, _ = grid
    redis = FakeRedis()
    rollout.recorder = upgrades.Recorder(lambda: redis)
    rollout.checks.bad = {"v2"}
    with pytest.raises(RolloutFailed):
        rollout.upgrade("v2")
    seen = [p for p in map(upgrades.Progress.from_json, redis.written) if p]
    assert any(p.phase == upgrades.UPGRADING and p.servers["DBAgent-1"] == "failed" for p in seen)
    assert any(p.phase == upgrades.ROLLING_BACK and p.target == "v1" for p in seen)
    last = upgrades.read(redis)
    assert last is not None and last.phase == upgrades.STOPPED and "rolled back to v1" in last.note
