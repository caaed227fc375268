"""Lua scripts kept as files: each service's lua/ directory, read once when its module is imported.

A script in its own .lua file reads as Lua (and diffs as Lua); a missing file fails the import,
not the first call that needs it. The files say which KEYS and ARGV they take.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files


def load_scripts(package: str, names: Iterable[str]) -> dict[str, str]:
    """name -> the source of <package>/lua/<name>.lua."""
    folder = files(package).joinpath("lua")
    return {name: folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names}
