"""STC's device registry over fakes of DBAgent and TagAlias: a registration is in both or in
neither, and Ice's errors become the engine's."""

from __future__ import annotations

import Ice
import pytest

from services.common.contract import PushGrid
from services.stc import protocol
from services.stc.directory import IceDirectory
from services.stc.engine import BackendUnavailable
from tests.unit.fakes import APP


class Registry:
    """DBAgent's registerDevices / unregisterDevice on a dict."""

    def __init__(self) -> None:
        self.devices: dict[str, str] = {}
        self.down_on_unregister = False

    def registerDevices(self, app: str, platform: PushGrid.Platform, count: int) -> list[PushGrid.DeviceCredentials]:
        if app != APP:
            raise PushGrid.UnknownApp(reason="unknown app")
        creds = [PushGrid.DeviceCredentials(f"r{len(self.devices) + i}", "t") for i in range(count)]
        self.devices.update({c.registrationId: app for c in creds})
        return creds

    def unregisterDevice(self, app: str, rid: str) -> None:
        if self.down_on_unregister:
            raise Ice.ConnectionRefusedException()
        self.devices.pop(rid)


class Index:
    """TagAlias's addDevices, or a TagAlias that cannot be reached."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.members: set[str] = set()

    def addDevices(self, app: str, rids: list[str], platform: PushGrid.Platform) -> None:
        if self.down:
            raise PushGrid.Unavailable(reason="redis did not answer", backend="redis")
        self.members.update(rids)


def test_registered_devices_are_in_dbagent_and_tagalias() -> None:
    db, tags = Registry(), Index()
    creds = IceDirectory(db, tags).register(APP, "android", 3)  # type: ignore[arg-type]
    assert [rid for rid, _ in creds] == sorted(db.devices) == sorted(tags.members)


def test_devices_tagalias_did_not_take_are_taken_back_from_dbagent() -> None:
    db, tags = Registry(), Index(down=True)
    with pytest.raises(BackendUnavailable):
        IceDirectory(db, tags).register(APP, "ios", 3)  # type: ignore[arg-type]
    assert db.devices == {}  # no orphan rows


def test_rows_that_cannot_be_taken_back_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    db, tags = Registry(), Index(down=True)
    db.down_on_unregister = True
    with pytest.raises(BackendUnavailable):
        IceDirectory(db, tags).register(APP, "ios", 2)  # type: ignore[arg-type]
    assert "registered in DBAgent but not TagAlias" in caplog.text and "r0" in caplog.text


def test_an_unknown_app_is_an_auth_failure() -> None:
    with pytest.raises(protocol.AuthFailed):
        IceDirectory(Registry(), Index()).register("f" * 24, "android", 1)  # type: ignore[arg-type]
