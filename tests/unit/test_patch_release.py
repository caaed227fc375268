"""Releases: what a build copies, its manifest and checksums, and how a server finds its own."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import pytest

from patch import release
from patch.distribution import DIRECTORY, IcePatch2Distribution
from services.common import release as running_release
from services.common.release import CHECKOUT, MANIFEST

QUIET = lambda *_: None  # noqa: E731 - a progress callback that prints nothing


def source_tree(root: Path) -> Path:
    """A small tree shaped like the checkout, a git repository with one commit."""
    files = {
        "services/__init__.py": "",
        "services/common/paths.py": "ROOT = 1\n",
        "services/stc/web/index.html": "<html></html>\n",
        "glacier2/__main__.py": "print('gateway')\n",
        "slice/Types.ice": "module PushGrid {}\n",
        "tools/cli.py": "not a server's\n",
        "tests/test_x.py": "nor this\n",
        "README.md": "nor this\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "services/__pycache__").mkdir()
    (root / "services/__pycache__/x.cpython-311.pyc").write_bytes(b"\0")
    for cmd in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(root), *cmd], check=True)
    return root


def test_a_release_holds_exactly_what_servers_run_with_checksums(tmp_path: Path) -> None:
    src = source_tree(tmp_path / "src")
    rel = release.build(tmp_path / "releases", src, version="1.0.0", progress=QUIET)
    assert rel.path == tmp_path / "releases" / "1.0.0"
    assert sorted(rel.files) == [
        "glacier2/__main__.py",
        "services/__init__.py",
        "services/common/paths.py",
        "services/stc/web/index.html",
        "slice/Types.ice",
    ]
    manifest = json.loads((rel.path / MANIFEST).read_text())
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert manifest["version"] == "1.0.0" and manifest["commit"] == commit.strip() and manifest["dirty"] is False
    assert datetime.datetime.fromisoformat(manifest["builtAt"]).tzinfo is not None
    assert release.verify(rel) == []
    assert release.load(rel.path) == rel


def test_verify_names_files_changed_or_missing_since_the_build(tmp_path: Path) -> None:
    rel = release.build(tmp_path / "r", source_tree(tmp_path / "src"), version="1", progress=QUIET)
    (rel.path / "slice/Types.ice").write_text("module Changed {}\n")
    (rel.path / "glacier2/__main__.py").unlink()
    assert release.verify(rel) == ["glacier2/__main__.py", "slice/Types.ice"]


def test_uncommitted_changes_are_named_in_the_version_and_manifest(tmp_path: Path) -> None:
    src = source_tree(tmp_path / "src")
    (src / "services/common/paths.py").write_text("ROOT = 2\n")
    rel = release.build(tmp_path / "r", src, progress=QUIET)
    assert rel.dirty and rel.version.endswith(f"-{rel.commit[:7]}-dirty")
    (src / "README.md").write_text("outside the release: still clean\n")
    subprocess.run(["git", "-C", str(src), "checkout", "-q", "services"], check=True)
    assert release.source_commit(src)[1] is False


def test_versions_are_unique_and_plain(tmp_path: Path) -> None:
    src = source_tree(tmp_path / "src")
    release.build(tmp_path / "r", src, version="2", progress=QUIET)
    with pytest.raises(release.ReleaseError, match="exists already"):
        release.build(tmp_path / "r", src, version="2", progress=QUIET)
    for bad in ("", "../x", "a b", CHECKOUT, "x" * 65, ".hidden"):
        with pytest.raises(release.ReleaseError):
            release.build(tmp_path / "r", src, version=bad, progress=QUIET)
    assert [r.version for r in release.all_releases(tmp_path / "r")] == ["2"]


def test_kept_releases_are_listed_oldest_first_and_found_by_version(tmp_path: Path) -> None:
    src, repo = source_tree(tmp_path / "src"), tmp_path / "r"
    for v in ("b", "a", "c"):
        release.build(repo, src, version=v, progress=QUIET)
    (repo / ".d.building").mkdir()  # an interrupted build is not a release
    assert [r.version for r in release.all_releases(repo)] == ["b", "a", "c"]
    assert release.find(repo, "a").version == "a"
    with pytest.raises(release.ReleaseError, match="kept: b, a, c"):
        release.find(repo, "zz")


def test_a_server_knows_its_release_from_the_tree_it_runs_from(tmp_path: Path) -> None:
    rel = release.build(tmp_path / "r", source_tree(tmp_path / "src"), version="7.1", progress=QUIET)
    assert running_release.running(rel.path) == "7.1"
    assert running_release.running(tmp_path / "src") == CHECKOUT
    (rel.path / MANIFEST).write_text("{not json")
    assert running_release.running(rel.path) == CHECKOUT


def test_publishing_swaps_the_icepatch2_tree_and_its_checksums(tmp_path: Path) -> None:
    src, repo, data = source_tree(tmp_path / "src"), tmp_path / "r", tmp_path / "data"
    dist = IcePatch2Distribution(data)
    assert dist.published() == CHECKOUT
    one = release.build(repo, src, version="1", progress=QUIET)
    dist.publish(one, admin=None)
    assert dist.published() == "1"
    sums = (data / "IcePatch2.sum").read_text()
    assert f"{DIRECTORY}/services/common/paths.py\t" in sums
    (src / "services/common/paths.py").write_text("ROOT = 3\n")
    (src / "glacier2/__main__.py").unlink()
    two = release.build(repo, src, version="2", progress=QUIET)
    dist.publish(two, admin=None)
    assert dist.published() == "2"
    assert not (data / DIRECTORY / "glacier2/__main__.py").exists()
    assert (data / "IcePatch2.sum").read_text() != sums
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(".")) == []
