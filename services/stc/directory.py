"""The engine's device registry over Ice: DBAgent for credentials, TagAlias for the audience index.

This is where Ice ends for the engine: an unknown app or wrong credentials become
protocol.AuthFailed (close 4001), an unreachable DBAgent or TagAlias becomes
engine.BackendUnavailable (close 4011), so the engine never sees an Ice type.
"""

from __future__ import annotations

from collections.abc import Sequence

import Ice

from services.common import platforms, validation
from services.common.contract import PushGrid
from services.stc import protocol
from services.stc.engine import BackendUnavailable, Device


class IceDirectory:
    """Blocking calls; the engine runs them in its thread pool."""

    def __init__(self, dbagent: PushGrid.DBAgentPrx, tagalias: PushGrid.TagAliasPrx) -> None:
        self._db = dbagent
        self._tags = tagalias

    def register(self, app_key: str, platform: str) -> tuple[str, str]:
        """A new device, known to DBAgent and to TagAlias's index of the app's devices."""
        try:
            validation.app_key(app_key)
            creds = self._db.registerDevice(app_key, platforms.BY_NAME[platform])
            self._tags.addDevice(app_key, creds.registrationId, platforms.BY_NAME[platform])
        except (PushGrid.UnknownApp, PushGrid.InvalidArgument):
            raise protocol.AuthFailed("unknown app") from None
        except (PushGrid.Unavailable, Ice.LocalException) as exc:
            raise BackendUnavailable(f"registration failed: {type(exc).__name__}") from exc
        return creds.registrationId, creds.deviceToken

    def verify(self, app_key: str, registration_id: str, device_token: str) -> Device:
        try:
            info = self._db.verifyDevice(app_key, registration_id, device_token)
        except PushGrid.AuthenticationFailed:
            raise protocol.AuthFailed("authentication failed") from None
        except (PushGrid.Unavailable, Ice.LocalException) as exc:
            raise BackendUnavailable(f"authentication unavailable: {type(exc).__name__}") from exc
        return Device(info.appKey, info.registrationId, platforms.name(info.platform), info.createdAt)

    def touch(self, app_key: str, registration_ids: Sequence[str], seen_at: int) -> None:
        self._db.touchDevices(app_key, list(registration_ids), seen_at)
