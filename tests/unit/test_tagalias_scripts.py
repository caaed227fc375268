"""TagAlias's Lua scripts as files, and the arguments the scripts with several callers take."""

from __future__ import annotations

from pathlib import Path

from services.common import platforms
from services.tagalias import keys, scripts
from tests.unit.fakes import APP


def test_every_lua_file_is_loaded_and_nothing_else() -> None:
    lua = Path(scripts.__file__).with_name("lua")
    assert sorted(scripts.SOURCES) == sorted(p.stem for p in lua.glob("*.lua"))
    assert all(src.strip() for src in scripts.SOURCES.values())


def test_add_devices_call_names_each_platform_by_its_place_among_the_platform_sets() -> None:
    b = keys.bucket("dev1")
    ks, args = scripts.add_devices_call(APP, b, [(p.name.lower(), p.value) for p in platforms.ALL])
    assert ks == [keys.all_devices(APP, b), *(keys.platform(APP, b, p.value) for p in platforms.ALL)]
    assert ks[1:] == keys.platform_sets(APP, b)
    positions = args[1::2]
    assert [ks[1 + pos] for pos in positions] == [keys.platform(APP, b, p.value) for p in platforms.ALL]
