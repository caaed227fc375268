"""Passwords in the settings come from the file a property names, or (a grid deployed before
password files) from the property itself."""

from __future__ import annotations

from pathlib import Path

import Ice

from services.common.config import MySQLSettings, RedisSettings


def test_passwords_are_read_from_the_files_the_properties_name(tmp_path: Path) -> None:
    (tmp_path / "mysql").write_text("s3cret-m\n")
    (tmp_path / "redis").write_text("s3cret-r")
    props = Ice.createProperties()
    props.setProperty("PushGrid.MySQL.PasswordFile", str(tmp_path / "mysql"))
    props.setProperty("PushGrid.Redis.PasswordFile", str(tmp_path / "redis"))
    props.setProperty("PushGrid.Redis.Password", "ignored when a file is named")
    assert MySQLSettings.from_properties(props).password == "s3cret-m"
    assert RedisSettings.from_properties(props).password == "s3cret-r"


def test_a_password_property_still_works() -> None:
    props = Ice.createProperties()
    props.setProperty("PushGrid.MySQL.Password", "old-style")
    assert MySQLSettings.from_properties(props).password == "old-style"
    assert RedisSettings.from_properties(Ice.createProperties()).password == ""
