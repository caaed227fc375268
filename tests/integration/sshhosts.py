"""Node hosts for tests: network namespaces with their own sshd (key login only) on their own
address and their own directory as their disk, and the `pushgrid` command run against a run
directory. The hosts tests and the fault suite's partition test use them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import paths
from tests.integration.netns import Bridge, Netns, Unavailable

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
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


class SshHost:
    """A namespace host running its own sshd on its own address; stopped with its namespace."""

    def __init__(self, name: str, base: Path, client_key: Path, bridge: Bridge) -> None:
        self.name, self.dir = name, base / name
        self.dir.mkdir()
        self.disk = self.dir / "disk"
        self.ns = Netns(name, bridge=bridge)
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

    def kill_everything(self) -> list[int]:
        """SIGKILL to every process of the host (its sshd, node and servers), as a lost host."""
        pids = self.ns.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def __exit__(self, *exc: object) -> None:
        self.ns.__exit__(*exc)


def pushgrid(run_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", str(run_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=paths.ROOT,
    )


def hosts_cmd(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return pushgrid(run_dir, "hosts", *args)
