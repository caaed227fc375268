"""The engine's device registry over Ice: DBAgent for credentials, TagAlias for the audience index.

This is where Ice ends for the engine: an unknown app or wrong credentials become
protocol.AuthFailed (close 4001), an app at its device limit protocol.RegistrationRefused (close 4029),
an unreachable DBAgent or TagAlias becomes
engine.BackendUnavailable (close 4011), so the engine never sees an Ice type.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import Ice

from services.common import platforms, validation
from services.common.contract import PushGrid
from services.stc import protocol
from services.stc.engine import BackendUnavailable, Device

log = logging.getLogger(__name__)


class IceDirectory:
    """Blocking calls; the engine runs them in its thread pool."""

    def __init__(self, dbagent: PushGrid.DBAgentPrx, tagalias: PushGrid.TagAliasPrx) -> None:
        self._db = dbagent
        self._tags = tagalias

    def register(self, app_key: str, platform: str, count: int) -> list[tuple[str, str]]:
        """count new devices, known to DBAgent and to TagAlias's index of the app's devices: both
        or neither (devices TagAlias did not take are unregistered from DBAgent again)."""
        try:
            validation.app_key(app_key)
            kind = platforms.BY_NAME[platform]
            creds = self._db.registerDevices(app_key, kind, count)
        except (PushGrid.UnknownApp, PushGrid.InvalidArgument):
            raise protocol.AuthFailed("unknown app") from None
        except PushGrid.LimitExceeded as exc:
            raise protocol.RegistrationRefused(exc.reason) from None
        except (PushGrid.Unavailable, Ice.LocalException) as exc:
            raise BackendUnavailable(f"registration failed: {type(exc).__name__}") from exc
        rids = [c.registrationId for c in creds]
        try:
            self._tags.addDevices(app_key, rids, kind)
        except (PushGrid.PushGridError, Ice.LocalException) as exc:
            self._unregister(app_key, rids)
            raise BackendUnavailable(f"registration failed: {type(exc).__name__}") from exc
        return [(c.registrationId, c.deviceToken) for c in creds]

    def _unregister(self, app_key: str, rids: Sequence[str]) -> None:
        """Takes back devices half registered; the ones it cannot are logged for the operator."""
        left = []
        for rid in rids:
            try:
                self._db.unregisterDevice(app_key, rid)
            except PushGrid.UnknownDevice:
                pass
            except (PushGrid.PushGridError, Ice.LocalException):
                left.append(rid)
        if left:
            log.error("%d devices of %s registered in DBAgent but not TagAlias, left: %s", len(left), app_key, left)

    def verify(self, hellos: Sequence[protocol.Hello]) -> list[Device | None]:
        """The devices of hellos, in order; None where the credentials are wrong."""
        checks = [PushGrid.DeviceCheck(h.app_key, h.registration_id, h.device_token) for h in hellos]
        try:
            found = self._db.verifyDevices(checks)
        except (PushGrid.Unavailable, PushGrid.InvalidArgument, Ice.LocalException) as exc:
            raise BackendUnavailable(f"authentication unavailable: {type(exc).__name__}") from exc
        return [
            Device(i.appKey, i.registrationId, platforms.name(i.platform), i.createdAt) if i.registrationId else None
            for i in found
        ]

    def touch(self, app_key: str, registration_ids: Sequence[str], seen_at: int) -> None:
        self._db.touchDevices(app_key, list(registration_ids), seen_at)
