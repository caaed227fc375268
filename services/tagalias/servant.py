"""The TagAlias servant: checks every input with services.common.validation, then asks the store.

Nothing reaches Redis before its inputs passed, so bad input fails with a named Slice error and
changes nothing. Ice for Python may hand None for an empty string or sequence; validation treats
None as empty (and refuses it where a value is required).
"""

from __future__ import annotations

from typing import Any, Protocol

from services.common import limits, validation
from services.common.contract import PushGrid


class Store(Protocol):
    """What the servant needs of its store (TagAliasStore; a fake in unit tests)."""

    def add_devices(self, app: str, devices: list[tuple[str, int]]) -> None: ...
    def remove_device(self, app: str, registration_id: str) -> None: ...
    def add_tags(self, app: str, registration_id: str, tags: list[str]) -> None: ...
    def remove_tags(self, app: str, registration_id: str, tags: list[str]) -> None: ...
    def clear_tags(self, app: str, registration_id: str) -> None: ...
    def get_tags(self, app: str, registration_id: str) -> list[str]: ...
    def set_alias(self, app: str, registration_id: str, alias: str) -> None: ...
    def get_alias(self, app: str, registration_id: str) -> str: ...
    def clear_alias(self, app: str, registration_id: str) -> None: ...
    def alias_devices(self, app: str, alias: str) -> list[str]: ...
    def delete_alias(self, app: str, alias: str) -> None: ...
    def list_tags(self, app: str) -> list[str]: ...
    def tag_size(self, app: str, tag: str) -> int: ...
    def is_member(self, app: str, tag: str, registration_id: str) -> bool: ...
    def tag_members(self, app: str, tag: str, cursor: str, limit: int) -> PushGrid.AudiencePage: ...
    def delete_tag(self, app: str, tag: str) -> None: ...
    def resolve(
        self, app: str, audience: PushGrid.Audience, platforms: list[PushGrid.Platform], cursor: str, limit: int
    ) -> PushGrid.AudiencePage: ...


def _platform(value: Any) -> PushGrid.Platform:
    plats = validation.platforms([value])
    return plats[0]


def _cursor(value: str | None) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise validation.invalid("cursor", "cursor must be a string")
    return value


class TagAliasI(PushGrid.TagAlias):
    """PushGrid::TagAlias over a store; stateless, so any replica answers any call."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # ---- devices known to the audience index

    def addDevice(self, appKey: str, registrationId: str, platform: PushGrid.Platform, current: Any = None) -> None:
        app, rid = validation.app_key(appKey), validation.registration_id(registrationId)
        self._store.add_devices(app, [(rid, _platform(platform).value)])

    def addDevices(
        self, appKey: str, registrationIds: list[str], platform: PushGrid.Platform, current: Any = None
    ) -> None:
        app, plat = validation.app_key(appKey), _platform(platform).value
        rids = list(registrationIds or [])
        if len(rids) > limits.DEVICE_BATCH:
            raise validation.invalid("registrationIds", f"at most {limits.DEVICE_BATCH} registration ids per call")
        devices = [(validation.registration_id(r, "registrationIds"), plat) for r in dict.fromkeys(rids)]
        if devices:
            self._store.add_devices(app, devices)

    def removeDevice(self, appKey: str, registrationId: str, current: Any = None) -> None:
        self._store.remove_device(validation.app_key(appKey), validation.registration_id(registrationId))

    # ---- tags of a device

    def addTags(self, appKey: str, registrationId: str, tags: list[str], current: Any = None) -> None:
        app, rid = validation.app_key(appKey), validation.registration_id(registrationId)
        self._store.add_tags(app, rid, validation.tags(tags))

    def removeTags(self, appKey: str, registrationId: str, tags: list[str], current: Any = None) -> None:
        app, rid = validation.app_key(appKey), validation.registration_id(registrationId)
        self._store.remove_tags(app, rid, validation.tags(tags))

    def clearTags(self, appKey: str, registrationId: str, current: Any = None) -> None:
        self._store.clear_tags(validation.app_key(appKey), validation.registration_id(registrationId))

    def getTags(self, appKey: str, registrationId: str, current: Any = None) -> list[str]:
        return self._store.get_tags(validation.app_key(appKey), validation.registration_id(registrationId))

    # ---- alias of a device

    def setAlias(self, appKey: str, registrationId: str, alias: str, current: Any = None) -> None:
        app, rid = validation.app_key(appKey), validation.registration_id(registrationId)
        self._store.set_alias(app, rid, validation.alias(alias))

    def getAlias(self, appKey: str, registrationId: str, current: Any = None) -> str:
        return self._store.get_alias(validation.app_key(appKey), validation.registration_id(registrationId))

    def clearAlias(self, appKey: str, registrationId: str, current: Any = None) -> None:
        self._store.clear_alias(validation.app_key(appKey), validation.registration_id(registrationId))

    def aliasDevices(self, appKey: str, alias: str, current: Any = None) -> list[str]:
        return self._store.alias_devices(validation.app_key(appKey), validation.alias(alias))

    def deleteAlias(self, appKey: str, alias: str, current: Any = None) -> None:
        self._store.delete_alias(validation.app_key(appKey), validation.alias(alias))

    # ---- tags of an app

    def listTags(self, appKey: str, current: Any = None) -> list[str]:
        return self._store.list_tags(validation.app_key(appKey))

    def tagSize(self, appKey: str, tag: str, current: Any = None) -> int:
        return self._store.tag_size(validation.app_key(appKey), validation.tag(tag))

    def isMember(self, appKey: str, tag: str, registrationId: str, current: Any = None) -> bool:
        app, name = validation.app_key(appKey), validation.tag(tag)
        return self._store.is_member(app, name, validation.registration_id(registrationId))

    def tagMembers(self, appKey: str, tag: str, cursor: str, limit: int, current: Any = None) -> PushGrid.AudiencePage:
        app, name = validation.app_key(appKey), validation.tag(tag)
        return self._store.tag_members(app, name, _cursor(cursor), validation.page_limit(limit))

    def deleteTag(self, appKey: str, tag: str, current: Any = None) -> None:
        self._store.delete_tag(validation.app_key(appKey), validation.tag(tag))

    # ---- audiences

    def checkAudience(self, audience: PushGrid.Audience, current: Any = None) -> None:
        validation.audience(audience)

    def resolve(
        self,
        appKey: str,
        audience: PushGrid.Audience,
        platforms: list[PushGrid.Platform],
        cursor: str,
        limit: int,
        current: Any = None,
    ) -> PushGrid.AudiencePage:
        app = validation.app_key(appKey)
        clean = validation.audience(audience)
        plats = validation.platforms(platforms)
        return self._store.resolve(app, clean, plats, _cursor(cursor), validation.page_limit(limit))
