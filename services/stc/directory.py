"""The engine's device registry over Ice: DBAgent for credentials, TagAlias for the audience index.

Slice errors become the close codes of PROTOCOL.md here, so the engine never sees an Ice type:
an unknown app or wrong credentials close with 4001, an unavailable backend with 4011.
"""

from __future__ import annotations

from collections.abc import Sequence

import Ice

from services.common import validation
from services.common.contract import PushGrid
from services.stc import protocol
from services.stc.engine import Device

_PLATFORMS = {p.name.lower(): p for p in PushGrid.Platform._enumerators.values()}


class IceDirectory:
    """Blocking calls; the engine runs them in its thread pool."""

    def __init__(self, dbagent: PushGrid.DBAgentPrx, tagalias: PushGrid.TagAliasPrx) -> None:
        self._db = dbagent
        self._tags = tagalias

    def register(self, app_key: str, platform: str) -> tuple[str, str]:
        """A new device, known to DBAgent and to TagAlias's index of the app's devices."""
        try:
            validation.app_key(app_key)
            creds = self._db.registerDevice(app_key, _PLATFORMS[platform])
            self._tags.addDevice(app_key, creds.registrationId, _PLATFORMS[platform])
        except (PushGrid.UnknownApp, PushGrid.InvalidArgument):
            raise protocol.AuthFailed("unknown app") from None
        except (PushGrid.Unavailable, Ice.LocalException) as exc:
            raise protocol.InternalError(f"registration failed: {type(exc).__name__}") from exc
        return creds.registrationId, creds.deviceToken

    def verify(self, app_key: str, registration_id: str, device_token: str) -> Device:
        try:
            info = self._db.verifyDevice(app_key, registration_id, device_token)
        except PushGrid.AuthenticationFailed:
            raise protocol.AuthFailed("authentication failed") from None
        except (PushGrid.Unavailable, Ice.LocalException) as exc:
            raise protocol.InternalError(f"authentication unavailable: {type(exc).__name__}") from exc
        return Device(info.appKey, info.registrationId, info.platform.name.lower(), info.createdAt)

    def touch(self, app_key: str, registration_ids: Sequence[str], seen_at: int) -> None:
        self._db.touchDevices(app_key, list(registration_ids), seen_at)
