"""The grid's passwords are on no command line and in no deployed descriptor: servers are given
the paths of files only the grid's user can read."""

from __future__ import annotations

import os
import stat

from tools.grid import icegrid
from tools.grid.rundir import REDIS_NODES


def _secrets(grid) -> list[str]:
    return [grid.secrets["mysql"], grid.secrets["redis"], grid.secrets["admin"]]


def test_no_password_in_the_deployed_descriptor_or_the_servers_configs(grid) -> None:
    described = icegrid.icegridadmin(grid, f"application describe {icegrid.APPLICATION}")
    assert "PushGrid.MySQL.PasswordFile" in described  # the property is there, as a path
    assert not any(secret in described for secret in _secrets(grid))
    configs = []
    for root, _dirs, files in os.walk(os.path.join(grid.path, "icegrid")):
        configs += [os.path.join(root, f) for f in files if f == "config"]
    assert configs
    for path in configs:
        with open(path, errors="replace") as f:
            text = f.read()
        assert not any(secret in text for secret in _secrets(grid)), path


def test_no_password_on_any_command_line(grid) -> None:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        assert not any(secret in cmdline for secret in _secrets(grid)), cmdline[:200]


def test_the_files_holding_passwords_are_the_grid_users_alone(grid) -> None:
    paths = [
        grid.secret_file("mysql"),
        grid.secret_file("redis"),
        *[os.path.join(grid.path, "redis", name, "redis.conf") for name in REDIS_NODES],
    ]
    for path in paths:
        mode = os.stat(path).st_mode
        assert stat.S_IMODE(mode) == 0o600, path
