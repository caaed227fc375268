"""Node hosts over SSH: three hosts in network namespaces, each with its own sshd (key login
only) on its own address and its own directory as its disk, checked all at once with Fabric."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from services.common import paths
from tests.integration.netns import Netns, Unavailable

pytestmark = pytest.mark.integration

SSHD = "/usr/sbin/sshd"
SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
"""


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


class SshHost:
    """A namespace host running its own sshd on its own address; stopped with its namespace."""

    def __init__(self, name: str, base: Path, client_key: Path) -> None:
        self.name, self.dir = name, base / name
        self.dir.mkdir()
        self.disk = self.dir / "disk"
        self.ns = Netns(name)
        self.client_key = client_key

    def __enter__(self) -> SshHost:
        try:
            self.ns.__enter__()
        except Unavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        config = self.dir / "sshd_config"
        config.write_text(
            SSHD_CONFIG.format(
                address=self.ns.address,
                host_key=keygen(self.dir / "host_key"),
                pid_file=self.dir / "sshd.pid",
                authorized_keys=authorized,
            )
        )
        os.makedirs("/run/sshd", exist_ok=True)
        started = self.ns.run([SSHD, "-f", str(config)])
        assert started.returncode == 0, started.stderr
        return self

    def stop_sshd(self) -> None:
        pid = int((self.dir / "sshd.pid").read_text())
        os.kill(pid, 15)

    def __exit__(self, *exc: object) -> None:
        self.ns.__exit__(*exc)


def pushgrid(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", str(run_dir), "hosts", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=paths.ROOT,
    )


@pytest.fixture
def three_hosts(tmp_path: Path) -> Iterator[list[SshHost]]:
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed (tools/bootstrap.sh installs it)")
    key = keygen(tmp_path / "client_key")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(SshHost(f"host{i}", tmp_path, key)) for i in (1, 2, 3)]


def test_hosts_are_recorded_and_checked_over_ssh_all_at_once(three_hosts: list[SshHost], tmp_path: Path) -> None:
    run = tmp_path / "run"
    for h in three_hosts:
        added = pushgrid(run, "add", h.name, h.ns.address, "--key", str(h.client_key), "--root", str(h.disk))
        assert added.returncode == 0, added.stderr
    listed = json.loads(pushgrid(run, "list", "--json").stdout)
    assert [(h["name"], h["address"]) for h in listed] == [(h.name, h.ns.address) for h in three_hosts]

    checked = pushgrid(run, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = dict(line.split(None, 1) for line in checked.stdout.splitlines())
    for h in three_hosts:
        assert lines[h.name].startswith("ok: ice 3.7"), lines
        assert f"root {h.disk}" in lines[h.name]
        assert h.disk.is_dir()  # made over SSH: the host's disk is ready for its node

    three_hosts[1].stop_sshd()  # one host goes dark: the others still answer, and the command says so
    checked = pushgrid(run, "check")
    assert checked.returncode == 1
    lines = dict(line.split(None, 1) for line in checked.stdout.splitlines())
    assert lines["host2"].startswith("FAILED") and "not reached over ssh" in lines["host2"]
    assert lines["host1"].startswith("ok") and lines["host3"].startswith("ok")

    assert pushgrid(run, "remove", "host2").returncode == 0
    assert [h["name"] for h in json.loads(pushgrid(run, "list", "--json").stdout)] == ["host1", "host3"]
    unknown = pushgrid(run, "check", "host2")
    assert unknown.returncode == 1 and "no host host2" in unknown.stderr


def test_sshd_on_a_host_takes_keys_only(three_hosts: list[SshHost]) -> None:
    host = three_hosts[0]
    with paramiko.Transport((host.ns.address, 22)) as transport:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("root", "a guess")
        assert refused.value.allowed_types == ["publickey"]


def test_the_namespaces_are_gone_afterwards(tmp_path: Path) -> None:
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed")
    key = keygen(tmp_path / "k")
    with SshHost("hostx", tmp_path, key) as h:
        name = h.ns.name
        assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
