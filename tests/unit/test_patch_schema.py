"""Which schema changes a rolling upgrade may carry: expand first, contract in a later release."""

from __future__ import annotations

from pathlib import Path

import pytest

from patch import release, schema
from patch.rollout import Rollout, RolloutFailed
from tests.unit.test_patch_release import QUIET, source_tree
from tests.unit.test_patch_rollout import FakeAdmin, FakeChecks, FakeDistribution, order

INITIAL = "CREATE TABLE IF NOT EXISTS a (x INT);\n"
EXPAND = "-- rollout: expand\nALTER TABLE a ADD COLUMN IF NOT EXISTS y INT;\n"
CONTRACT = "-- rollout: contract after 002\nALTER TABLE a DROP COLUMN IF EXISTS x;\n"


def build(tmp: Path, version: str, files: dict[str, str]) -> release.Release:
    src = tmp / f"src-{version}"
    if not src.exists():
        source_tree(src)
    folder = src / schema.MIGRATIONS
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return release.build(tmp / "releases", src, version=version, progress=QUIET)


def test_expands_are_applied_and_contracts_wait_for_their_expand(tmp_path: Path) -> None:
    v1 = build(tmp_path, "v1", {"001_initial.sql": INITIAL})
    v2 = build(tmp_path, "v2", {"001_initial.sql": INITIAL, "002_add_y.sql": EXPAND})
    v3 = build(tmp_path, "v3", {"001_initial.sql": INITIAL, "002_add_y.sql": EXPAND, "003_drop_x.sql": CONTRACT})
    assert schema.plan(v1, v2) == ["002"]
    assert schema.plan(v2, v3) == ["003"]
    with pytest.raises(schema.IncompatibleRelease, match="needs migration 002 running first"):
        schema.plan(v1, v3)
    assert schema.plan(v2, v1) == []  # back over an expand: the old release ignores column y
    with pytest.raises(schema.IncompatibleRelease, match="cannot run on that schema"):
        schema.plan(v3, v2)  # back over a contract: v2 still reads column x


def test_a_migration_changed_under_the_same_number_is_refused(tmp_path: Path) -> None:
    v1 = build(tmp_path, "v1", {"001_initial.sql": INITIAL, "002_add_y.sql": EXPAND})
    v2 = build(tmp_path, "v2", {"001_initial.sql": INITIAL, "002_add_z.sql": EXPAND.replace(" y ", " z ")})
    with pytest.raises(schema.IncompatibleRelease, match="migration 002 differs"):
        schema.plan(v1, v2)


def test_a_migration_that_does_not_say_its_kind_is_refused(tmp_path: Path) -> None:
    v1 = build(tmp_path, "v1", {"001_initial.sql": INITIAL})
    v2 = build(tmp_path, "v2", {"001_initial.sql": INITIAL, "002_mystery.sql": "ALTER TABLE a DROP COLUMN x;\n"})
    with pytest.raises(schema.IncompatibleRelease, match="without a `-- rollout:` line"):
        schema.plan(v1, v2)


def test_the_rollout_applies_migrations_before_any_server_moves_and_refuses_a_bad_release(tmp_path: Path) -> None:
    build(tmp_path, "v1", {"001_initial.sql": INITIAL})
    build(tmp_path, "v2", {"001_initial.sql": INITIAL, "002_add_y.sql": EXPAND})
    build(tmp_path, "v3", {"001_initial.sql": INITIAL, "002_add_y.sql": EXPAND, "003_drop_x.sql": CONTRACT})
    admin = FakeAdmin(["DBAgent-1", "Push-1"], "v1")
    applied: list[tuple[str, list[str]]] = []

    def migrate(folder: Path) -> list[str]:
        applied.append((folder.parts[-4], list(admin.log)))
        return ["002"]

    rollout = Rollout(
        admin=admin,  # type: ignore[arg-type]  # the fake has the admin calls a rollout makes
        distribution=FakeDistribution(admin, "v1"),
        checks=FakeChecks(admin, set()),  # type: ignore[arg-type]  # likewise for the checks
        releases=tmp_path / "releases",
        state_file=tmp_path / "upgrade.json",
        progress=QUIET,
        migrate=migrate,
    )
    rollout.options = type(rollout.options)(soak_seconds=0, drain_seconds=0)
    rollout.upgrade("v2")
    assert applied == [("v2", [])]  # before the first server stopped
    rollout.rollback("v1")
    with pytest.raises(RolloutFailed, match="needs migration 002 running first"):
        rollout.upgrade("v3")
    assert {admin.running[s] for s in order(admin.ids)} == {"v1"} and len(applied) == 1
