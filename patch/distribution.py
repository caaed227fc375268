"""How a release reaches the nodes: the one seam between releases and the transport that ships them.

Today that is IcePatch2 under IceGrid: the application deploys an IcePatch2 server over a data
directory, every server has a server-level <distrib> of the directory DIRECTORY, and a node
patches a server by fetching that directory into the server's own distribution directory,
from which the server runs. IcePatch2 and IceGrid's distribution are deprecated in Ice 3.7 and
gone in 3.8; replacing them means another `Distribution` here, nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Protocol

import IceGrid

from patch.release import Release
from services.common.release import running

DIRECTORY = "pushgrid"  # the <distrib> directory every server patches (icegrid/pushgrid.xml)
SERVER_ID = "pushgrid.IcePatch2"  # the IcePatch2 server's id: ${application}.IcePatch2


class DistributionError(Exception):
    """Publishing or patching failed; the message says where."""


class Distribution(Protocol):
    def published(self) -> str:
        """The version nodes get when they patch now (CHECKOUT if nothing is published)."""
        ...

    def publish(self, release: Release, admin: IceGrid.AdminPrx | None) -> None:
        """Makes release the one nodes patch from now on (admin None: the grid is not up yet)."""
        ...

    def patch(self, admin: IceGrid.AdminPrx, server_id: str) -> None:
        """Brings the stopped server's copy to the published release."""
        ...


class IcePatch2Distribution:
    """Publishes into an IcePatch2 data directory and patches servers through IceGrid's admin."""

    def __init__(self, data_dir: Path) -> None:
        self._data = data_dir

    def published(self) -> str:
        return running(self._data / DIRECTORY)

    def publish(self, release: Release, admin: IceGrid.AdminPrx | None) -> None:
        """Swaps the data directory's tree for release's, recomputes IcePatch2's checksums and
        restarts the IcePatch2 server: it reads its checksums only when it starts, and would
        otherwise tell nodes there is nothing new."""
        self._data.mkdir(parents=True, exist_ok=True)
        target = self._data / DIRECTORY
        staging, old = self._data / f".{DIRECTORY}.new", self._data / f".{DIRECTORY}.old"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        shutil.copytree(release.path, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        calc = subprocess.run(["icepatch2calc", str(self._data)], capture_output=True, text=True, timeout=300)
        if calc.returncode != 0:
            raise DistributionError(f"icepatch2calc {self._data} failed: {calc.stderr.strip()}")
        if admin is not None:
            self._restart_server(admin)

    def patch(self, admin: IceGrid.AdminPrx, server_id: str) -> None:
        try:
            admin.patchServer(server_id, False)
        except IceGrid.PatchException as exc:
            raise DistributionError(f"patching {server_id} failed: {'; '.join(exc.reasons)}") from None

    @staticmethod
    def _restart_server(admin: IceGrid.AdminPrx) -> None:
        """Stops the IcePatch2 server if it runs and starts it again, so it reads the checksums."""
        try:
            if admin.getServerState(SERVER_ID) != IceGrid.ServerState.Inactive:
                admin.stopServer(SERVER_ID)
            admin.startServer(SERVER_ID)
        except IceGrid.ServerNotExistException:
            pass  # not deployed yet: it starts with the application and reads the new checksums
        except (IceGrid.ServerStopException, IceGrid.ServerStartException) as exc:
            raise DistributionError(f"could not restart {SERVER_ID}: {exc.reason}") from None
