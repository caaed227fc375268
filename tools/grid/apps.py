"""Operators' app administration: the calls `pushgrid app ...` makes to DBAgent, and how it shows
their answers. DBAgent is reached through the grid (its well-known object) with the run
directory's client config, as every tool does; it does every check, so a bad key or quota comes
back as the named Slice error the CLI prints.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from typing import Any

from services.common import ice
from services.common.contract import PushGrid
from tools.grid.rundir import client_config_path


class NoGrid(RuntimeError):
    """The run directory holds no grid config (`pushgrid up` was never run there)."""


@contextlib.contextmanager
def dbagent(run_dir: str) -> Iterator[PushGrid.DBAgentPrx]:
    """DBAgent's well-known proxy through the grid of run_dir, for the length of a command."""
    config = client_config_path(run_dir)
    if not os.path.exists(config):
        raise NoGrid(f"no grid in {os.path.abspath(run_dir)} ({config} is missing): run `pushgrid up` first")
    communicator = ice.client_communicator(config)
    try:
        yield ice.dbagent(communicator)
    finally:
        communicator.destroy()


def when(ms: int) -> str:
    """A DBAgent timestamp (ms since the epoch) as operators read it: UTC to the second."""
    if not ms:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def as_dict(info: PushGrid.AppInfo) -> dict[str, Any]:
    """An app as JSON shows it (the master secret is never part of it)."""
    return {
        "appKey": info.appKey,
        "name": info.name,
        "pushQuotaPerMinute": info.pushQuotaPerMinute,
        "enabled": info.enabled,
        "createdAt": info.createdAt,
        "secretRotatedAt": info.secretRotatedAt,
    }


def details(info: PushGrid.AppInfo, devices: int | None = None) -> list[str]:
    """One app, a field a line."""
    lines = [
        f"app key:          {info.appKey}",
        f"name:             {info.name}",
        f"enabled:          {'yes' if info.enabled else 'no (logins, pushes and new devices refused)'}",
        f"push quota:       {info.pushQuotaPerMinute} per minute",
        f"created:          {when(info.createdAt)}",
        f"secret rotated:   {when(info.secretRotatedAt)}",
    ]
    if devices is not None:
        lines.append(f"devices:          {devices}")
    return lines


def table(apps: list[PushGrid.AppInfo]) -> list[str]:
    """Apps as a table, oldest first (DBAgent's order)."""
    name_width = max([len("name"), *(len(a.name) for a in apps)])
    lines = [f"{'app key':<24}  {'name':<{name_width}}  {'quota/min':>9}  {'enabled':<7}  created"]
    for a in apps:
        lines.append(
            f"{a.appKey:<24}  {a.name:<{name_width}}  {a.pushQuotaPerMinute:>9}  "
            f"{'yes' if a.enabled else 'no':<7}  {when(a.createdAt)}"
        )
    return lines


def credentials_lines(creds: PushGrid.AppCredentials) -> list[str]:
    return [f"app key:          {creds.appKey}", f"master secret:    {creds.masterSecret}"]


SECRET_NOTE = (
    "The master secret is shown this once: pushgrid keeps only a hash of it. Store it now; "
    "`pushgrid app rotate-secret KEY` issues a new one and the old one stops working."
)
