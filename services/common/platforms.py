"""Device platforms by name: the one map between `PushGrid.Platform` and its lowercase names.

Devices say "android", "ios" or "web" in the device protocol, requests carry the same names as
JSON, and presence, stored messages and MySQL rows keep them; everything converts here.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.common.contract import PushGrid

# Every platform, in enumerator order (the order TagAlias numbers its platform sets by).
ALL: tuple[PushGrid.Platform, ...] = tuple(
    PushGrid.Platform._enumerators[v] for v in sorted(PushGrid.Platform._enumerators)
)
BY_NAME: dict[str, PushGrid.Platform] = {p.name.lower(): p for p in ALL}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def name(platform: PushGrid.Platform) -> str:
    """ "android", "ios" or "web"."""
    return str(platform.name.lower())


def names(platforms: Iterable[PushGrid.Platform] | None) -> tuple[str, ...]:
    """The names of platforms, in their order; empty (every platform) stays empty."""
    return tuple(name(p) for p in platforms or ())


def parse(value: str) -> PushGrid.Platform:
    """The platform named value, any case; ValueError for anything else."""
    found = BY_NAME.get(value.lower()) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"platform {value!r} is not one of {sorted(BY_NAME)}")
    return found
