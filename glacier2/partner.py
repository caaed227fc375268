"""The partner API of one session: every call acts for the session's app, never for an app the
partner names. PartnerPush hands requests to the Push service; PartnerDevices checks that a
registration id is one of the app's own devices (DBAgent) before touching its tags or alias
(TagAlias trusts its callers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import Ice

from services.common import validation
from services.common.contract import PushGrid
from services.common.ice import backend


@dataclass(frozen=True)
class Backends:
    """The internal services a session's objects call (well-known proxies)."""

    push: PushGrid.PushServicePrx
    tagalias: PushGrid.TagAliasPrx
    dbagent: PushGrid.DBAgentPrx


class PartnerPushI(PushGrid.PartnerPush):
    """Push, push batches, validate, schedule, cancel and report (counts, errors, curve) for one app."""

    def __init__(self, app_key: str, backends: Backends) -> None:
        self._app = app_key
        self._push = backends.push

    def push(self, request: PushGrid.PushRequest, current: Ice.Current = None) -> PushGrid.PushResult:
        with backend("push"):
            return self._push.push(self._app, request)

    def pushBatch(
        self, requests: list[PushGrid.PushRequest], current: Ice.Current = None
    ) -> list[PushGrid.BatchPushResult]:
        with backend("push"):
            return self._push.pushBatch(self._app, requests)

    def validate(self, request: PushGrid.PushRequest, current: Ice.Current = None) -> None:
        with backend("push"):
            self._push.validate(self._app, request)

    def schedule(self, request: PushGrid.PushRequest, sendAt: int, current: Ice.Current = None) -> PushGrid.PushResult:
        with backend("push"):
            return self._push.schedule(self._app, request, sendAt)

    def cancel(self, msgId: int, current: Ice.Current = None) -> None:
        with backend("push"):
            self._push.cancel(self._app, msgId)

    def report(self, msgIds: Sequence[int], current: Ice.Current = None) -> list[PushGrid.MessageStats]:
        with backend("push"):
            return self._push.report(self._app, list(msgIds or []))

    def reportErrors(self, msgIds: Sequence[int], current: Ice.Current = None) -> list[PushGrid.MessageError]:
        with backend("push"):
            return self._push.reportErrors(self._app, list(msgIds or []))

    def reportCurve(self, msgId: int, current: Ice.Current = None) -> list[PushGrid.CurvePoint]:
        with backend("push"):
            return self._push.reportCurve(self._app, msgId)


class PartnerDevicesI(PushGrid.PartnerDevices):
    """Tags, aliases and device count of one app's own devices."""

    def __init__(self, app_key: str, backends: Backends) -> None:
        self._app = app_key
        self._ta = backends.tagalias
        self._db = backends.dbagent

    def _own(self, registration_id: str) -> str:
        """The registration id, if it is a device of this session's app; UnknownDevice otherwise
        (a device of another app is not told apart from one that does not exist)."""
        rid = validation.registration_id(registration_id)
        with backend("dbagent"):
            self._db.getDevice(self._app, rid)
        return rid

    def addTags(self, registrationId: str, tags: Sequence[str], current: Ice.Current = None) -> None:
        rid = self._own(registrationId)
        with backend("tagalias"):
            self._ta.addTags(self._app, rid, list(tags or []))

    def removeTags(self, registrationId: str, tags: Sequence[str], current: Ice.Current = None) -> None:
        rid = self._own(registrationId)
        with backend("tagalias"):
            self._ta.removeTags(self._app, rid, list(tags or []))

    def getTags(self, registrationId: str, current: Ice.Current = None) -> list[str]:
        rid = self._own(registrationId)
        with backend("tagalias"):
            return self._ta.getTags(self._app, rid)

    def setAlias(self, registrationId: str, alias: str, current: Ice.Current = None) -> None:
        rid = self._own(registrationId)
        with backend("tagalias"):
            self._ta.setAlias(self._app, rid, alias)

    def getAlias(self, registrationId: str, current: Ice.Current = None) -> str:
        rid = self._own(registrationId)
        with backend("tagalias"):
            return self._ta.getAlias(self._app, rid)

    def aliasDevices(self, alias: str, current: Ice.Current = None) -> list[str]:
        with backend("tagalias"):
            return self._ta.aliasDevices(self._app, alias)

    def deleteAlias(self, alias: str, current: Ice.Current = None) -> None:
        with backend("tagalias"):
            self._ta.deleteAlias(self._app, alias)

    def listTags(self, current: Ice.Current = None) -> list[str]:
        with backend("tagalias"):
            return self._ta.listTags(self._app)

    def isMember(self, tag: str, registrationId: str, current: Ice.Current = None) -> bool:
        with backend("tagalias"):
            return self._ta.isMember(self._app, tag, registrationId)

    def deleteTag(self, tag: str, current: Ice.Current = None) -> None:
        with backend("tagalias"):
            self._ta.deleteTag(self._app, tag)

    def deviceCount(self, current: Ice.Current = None) -> int:
        with backend("dbagent"):
            return self._db.deviceCount(self._app)
