"""Whether a release's schema migrations let it run beside the release running now.

During a rolling upgrade the old and the new release share one database, so the migrations a
release brings must be of the kinds services/dbagent/migrations.py describes: an expand (the old
release runs on unharmed) or a contract whose expand the running release already has. Going back
past a migration is allowed only over expands. Anything else is refused before a server moves.
"""

from __future__ import annotations

from pathlib import Path

from patch.release import Release
from services.dbagent.migrations import available, rollout_kind

MIGRATIONS = Path("services") / "dbagent" / "migrations"  # inside a release


class IncompatibleRelease(Exception):
    """The target's migrations cannot run beside (or after) the running release; says which."""


def _migrations(rel: Release) -> dict[str, Path]:
    folder = rel.path / MIGRATIONS
    return dict(available(folder)) if folder.is_dir() else {}


def plan(running: Release, target: Release) -> list[str]:
    """The migrations target brings (to apply before its first server starts); raises
    IncompatibleRelease when they, or the ones target lacks, rule out a rolling change."""
    have, want = _migrations(running), _migrations(target)
    for version in sorted(set(have) & set(want)):
        if have[version].read_bytes() != want[version].read_bytes():
            raise IncompatibleRelease(
                f"migration {version} differs between {running.version} ({have[version].name}) and "
                f"{target.version} ({want[version].name}): an applied migration is never changed"
            )
    new = sorted(set(want) - set(have))
    for version in new:
        kind = rollout_kind(want[version].read_text(encoding="utf-8"))
        name = want[version].name
        if kind is None:
            raise IncompatibleRelease(
                f"{target.version} brings migration {name} without a `-- rollout:` line, so nothing says "
                f"{running.version} can run beside it"
            )
        if kind[0] == "contract" and kind[1] not in have:
            raise IncompatibleRelease(
                f"{target.version}'s migration {name} removes what {running.version} still uses: it needs "
                f"migration {kind[1]} running first (upgrade to a release with it, then to {target.version})"
            )
    for version in sorted(set(have) - set(want)):
        kind = rollout_kind(have[version].read_text(encoding="utf-8"))
        if kind is None or kind[0] != "expand":
            raise IncompatibleRelease(
                f"the database has {running.version}'s migration {have[version].name}, which {target.version} "
                "does not know and which is not an expand: it cannot run on that schema"
            )
    return new
