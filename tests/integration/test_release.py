"""Servers run the release their node patched through IcePatch2, and say which through Ice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from patch.distribution import IcePatch2Distribution
from services.common import paths
from services.common.release import CHECKOUT
from tools.grid import icegrid
from tools.grid.rundir import RunDir

pytestmark = pytest.mark.integration

NOT_PATCHED = {"Glacier2Router", "pushgrid.IcePatch2"}  # Ice's own binaries, not pushgrid code


def _pushgrid(run: RunDir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", run.path, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=paths.ROOT,
    )


def test_every_server_runs_the_published_release_from_its_nodes_copy(grid: RunDir) -> None:
    published = IcePatch2Distribution(grid.patch_data).published()
    assert published != CHECKOUT
    st = icegrid.status(grid)
    ours = [s for s in st["servers"] if s["id"] not in NOT_PATCHED]
    assert len(ours) == 17
    for s in ours:
        assert s["release"] == published, s
        cwd = os.readlink(f"/proc/{s['pid']}/cwd")
        node_data = os.path.join(grid.path, "icegrid", s["node"], "data")
        assert cwd.startswith(node_data + os.sep), (s["id"], cwd)  # the node's patched copy ...
        assert not cwd.startswith(str(paths.ROOT) + os.sep)  # ... never the checkout
        with open(os.path.join(cwd, "MANIFEST.json")) as f:
            assert json.load(f)["version"] == published
    admin = icegrid.icegridadmin(grid, f"server property {ours[0]['id']} PushGrid.Release").strip()
    assert admin == published  # what an operator's icegridadmin reads


def test_release_build_and_list(grid: RunDir) -> None:
    published = IcePatch2Distribution(grid.patch_data).published()
    built = _pushgrid(grid, "release", "build", "--version", "test-next")
    assert built.returncode == 0, built.stderr
    again = _pushgrid(grid, "release", "build", "--version", "test-next")
    assert again.returncode == 1 and "exists already" in again.stderr
    listed = _pushgrid(grid, "release", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    releases = {r["version"]: r for r in json.loads(listed.stdout)["releases"]}
    assert releases[published]["published"] and len(releases[published]["servers"]) == 17
    assert releases["test-next"]["servers"] == [] and not releases["test-next"]["published"]
    assert releases["test-next"]["files"] == releases[published]["files"]  # the same checkout
    text = _pushgrid(grid, "release", "list").stdout
    assert f"{published} (published)" in text and "17 servers" in text
