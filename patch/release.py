"""Versioned releases: a copy of everything a grid server imports, with a manifest.

A release is a directory `<releases>/<version>/` holding `services/`, `glacier2/` and `slice/`
as they were at build time, and `MANIFEST.json`: the version, the source commit (and whether the
tree had uncommitted changes), the build time and a SHA-256 per file. Servers run from a copy of
a release that their node patched, never from the checkout; a server finds its own release by
the manifest at the root of the tree it runs from (`running()`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common import paths
from services.common.release import CHECKOUT, MANIFEST

# What a server imports or loads: the service code (with its SQL, Lua and web files), the
# partner gateway, and the Slice the contract compiles at import time.
CONTENTS = ("services", "glacier2", "slice")
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")

Progress = Callable[[str], None]


class ReleaseError(Exception):
    """A release cannot be built, found or trusted; the message says why."""


@dataclass(frozen=True)
class Release:
    """One release as its manifest describes it."""

    version: str
    commit: str
    dirty: bool
    built_at: str  # ISO 8601, UTC
    files: dict[str, str]  # relative path -> SHA-256 hex
    path: Path

    @property
    def manifest(self) -> dict[str, object]:
        return {
            "version": self.version,
            "commit": self.commit,
            "dirty": self.dirty,
            "builtAt": self.built_at,
            "files": self.files,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_files(root: Path) -> Iterator[Path]:
    """Every file of CONTENTS under root, relative to it, in a stable order."""
    for top in CONTENTS:
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                if not name.endswith(_SKIP_SUFFIXES):
                    yield (Path(dirpath) / name).relative_to(root)


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() if out.returncode == 0 else ""


def source_commit(root: Path) -> tuple[str, bool]:
    """The checkout's commit and whether the release contents differ from it."""
    commit = _git(root, "rev-parse", "HEAD") or "unknown"
    dirty = bool(_git(root, "status", "--porcelain", "--", *CONTENTS))
    return commit, dirty


def default_version(commit: str, dirty: bool, now: datetime.datetime | None = None) -> str:
    """A version that sorts by build time and names its commit: 20261201.031500-1a2b3c4[-dirty]."""
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%d.%H%M%S")
    return f"{when}-{commit[:7]}" + ("-dirty" if dirty else "")


def check_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version) or version == CHECKOUT:
        raise ReleaseError(f"release version {version!r} must be 1-64 of letters, digits and . _ + -")
    return version


def build(releases: Path, source: Path = paths.ROOT, version: str | None = None, progress: Progress = print) -> Release:
    """Copies source's CONTENTS into releases/<version> with a manifest; refuses an existing version."""
    commit, dirty = source_commit(source)
    version = check_version(default_version(commit, dirty) if version is None else version)
    target = releases / version
    if target.exists():
        raise ReleaseError(f"release {version} exists already in {releases}")
    staging = releases / f".{version}.building"
    shutil.rmtree(staging, ignore_errors=True)
    files: dict[str, str] = {}
    progress(
        f"  building release {version} from {source} (commit {commit[:12]}{', uncommitted changes' if dirty else ''})"
    )
    for rel in _source_files(source):
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest)
        files[str(rel)] = _sha256(dest)
    if not files:
        raise ReleaseError(f"nothing to release under {source}")
    built_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    release = Release(version, commit, dirty, built_at, files, target)
    (staging / MANIFEST).write_text(json.dumps(release.manifest, indent=1, sort_keys=True) + "\n")
    staging.rename(target)  # whole or not at all: a half-built release never appears
    progress(f"  release {version}: {len(files)} files")
    return release


def load(path: Path) -> Release:
    """The release whose root is path; ReleaseError if it has no readable manifest."""
    try:
        data = json.loads((path / MANIFEST).read_text())
        return Release(
            version=str(data["version"]),
            commit=str(data["commit"]),
            dirty=bool(data["dirty"]),
            built_at=str(data["builtAt"]),
            files={str(k): str(v) for k, v in data["files"].items()},
            path=path,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReleaseError(f"{path} holds no release manifest: {exc}") from None


def verify(release: Release) -> list[str]:
    """The files of release that are missing or differ from its manifest (empty: intact)."""
    bad = []
    for rel, digest in sorted(release.files.items()):
        path = release.path / rel
        if not path.is_file() or _sha256(path) != digest:
            bad.append(rel)
    return bad


def all_releases(releases: Path) -> list[Release]:
    """Every release kept in releases, oldest build first."""
    if not releases.is_dir():
        return []
    found = []
    for entry in releases.iterdir():
        if entry.is_dir() and not entry.name.startswith(".") and (entry / MANIFEST).is_file():
            found.append(load(entry))
    return sorted(found, key=lambda r: (r.built_at, r.version))


def find(releases: Path, version: str) -> Release:
    path = releases / check_version(version)
    if not (path / MANIFEST).is_file():
        known = ", ".join(r.version for r in all_releases(releases)) or "none"
        raise ReleaseError(f"no release {version} in {releases} (kept: {known})")
    return load(path)
