"""Recording node hosts: what pushgrid hosts add accepts and refuses (no SSH here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.grid import hosts
from tools.grid.rundir import RunDir


def test_hosts_are_kept_in_the_run_directory_and_checked_as_added(tmp_path: Path) -> None:
    run = RunDir(str(tmp_path))
    key = tmp_path / "key"
    key.write_text("a key")
    hosts.add(run, hosts.Host("host1", "10.77.0.1", key=str(key), root="/srv/pg"))
    hosts.add(run, hosts.Host("host2", "10.77.0.2"))
    assert [h.name for h in hosts.all_hosts(RunDir(str(tmp_path)))] == ["host1", "host2"]  # read back
    assert (tmp_path / "hosts.json").stat().st_mode & 0o777 == 0o600
    for bad, why in [
        (hosts.Host("Host 1", "10.77.0.3"), "host name"),
        (hosts.Host("host3", "example.org"), "not an IP address"),
        (hosts.Host("host3", "10.77.0.3", port=0), "not a port"),
        (hosts.Host("host3", "10.77.0.3", key=str(tmp_path / "missing")), "not a file"),
        (hosts.Host("host3", "10.77.0.3", root="relative/dir"), "absolute path"),
        (hosts.Host("host3", "10.77.0.1"), "another host has address"),
    ]:
        with pytest.raises(hosts.HostError, match=why):
            hosts.add(run, bad)
    assert [h.name for h in hosts.find(run, ["host2"])] == ["host2"]
    with pytest.raises(hosts.HostError, match="no host nope"):
        hosts.find(run, ["nope"])
    hosts.remove(run, "host1")
    with pytest.raises(hosts.HostError, match="no host 'host1'"):
        hosts.remove(run, "host1")
    assert [h.name for h in hosts.all_hosts(run)] == ["host2"]
