"""The DBAgent Ice servant: checks every argument, then calls the store.

Where an operation declares InvalidArgument a bad argument is reported as such; where it does not,
a malformed key is reported as what it certainly is not: an unknown app or message, or failed
authentication. A state move that services.common.lifecycle does not allow is InvalidState. Either
way bad input never reaches MySQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import Ice

from services.common import codec, lifecycle, limits, validation
from services.common.contract import PushGrid
from services.dbagent import credentials
from services.dbagent.checks import LoginChecks
from services.dbagent.store import Store

# Limits of DBAgent's own columns and calls (the shared ones are in services.common.limits).
BATCH_KEY_MAX_BYTES = 128  # stat_batches.batch_key
REQUEST_MAX_BYTES = 256 * 1024  # a stored request as JSON: payload plus 1000-id audiences
TOUCH_PER_CALL = limits.RECEIPTS_PER_CALL  # STC batches touches as it batches receipts
CREDENTIAL_MAX_BYTES = 256  # longer secrets and tokens are wrong without hashing

_BATCH_KEY_RE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


def _invalid(field: str, reason: str) -> PushGrid.InvalidArgument:
    return validation.invalid(field, reason)


def _app_name(name: str | None) -> str:
    name = name or ""
    if not name:
        raise _invalid("name", "app name must not be empty")
    if len(name.encode("utf-8")) > limits.APP_NAME_MAX_BYTES:
        raise _invalid("name", f"app name is longer than {limits.APP_NAME_MAX_BYTES} bytes")
    if name != name.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise _invalid("name", "app name may not start or end with spaces or hold control characters")
    return name


def _quota(value: int) -> int:
    if not 1 <= value <= limits.PUSH_QUOTA_MAX:
        raise _invalid("pushQuotaPerMinute", f"push quota must be 1-{limits.PUSH_QUOTA_MAX} per minute")
    return value


def _positive(value: int, field: str) -> int:
    if value is None or value <= 0:
        raise _invalid(field, f"{field} must be positive")
    return value


def _count(values: Sequence[Any] | None, field: str, max_count: int) -> list[Any]:
    values = list(values or [])
    if len(values) > max_count:
        raise _invalid(field, f"at most {max_count} {field} in one call")
    return values


def _well_formed_app_key(value: str | None) -> str | None:
    """value if it is a well-formed app key, else None."""
    try:
        return validation.app_key(value or "")
    except PushGrid.InvalidArgument:
        return None


def _known_app_key(value: str | None) -> str:
    """For operations that do not declare InvalidArgument: a malformed key names no app."""
    key = _well_formed_app_key(value)
    if key is None:
        raise PushGrid.UnknownApp(reason="app key must be 24 lowercase hex characters", appKey=value or "")
    return key


def _message_key(app_key: str | None, msg_id: int | None) -> tuple[str, int]:
    """For operations that do not declare InvalidArgument: malformed keys name no message."""
    key = _well_formed_app_key(app_key)
    if key is None or msg_id is None or msg_id <= 0:
        raise PushGrid.UnknownMessage(reason=f"the app has no message {msg_id}", msgId=msg_id or 0)
    return key, msg_id


def _enum(value: Any, kind: type, field: str) -> Any:
    # Ice rejects unknown enumerators while unmarshalling; this guards in-process callers.
    if not isinstance(value, kind):
        raise _invalid(field, f"{field} must be a {kind.__name__}")
    return value


def _short(value: str | None) -> bool:
    return len((value or "").encode("utf-8")) <= CREDENTIAL_MAX_BYTES


def _checkable(check: PushGrid.DeviceCheck) -> bool:
    """A hello's app key and registration id are well formed and its token not too long: only
    then is it looked up (a malformed one fails like a wrong token)."""
    try:
        validation.app_key(check.appKey)
        validation.registration_id(check.registrationId)
    except PushGrid.InvalidArgument:
        return False
    return _short(check.deviceToken)


def _stats_row(msg_id: int, batch_key: str | None, delta: PushGrid.StatsDelta | None) -> tuple[int, str, Any]:
    """recordStats' arguments, checked."""
    msg_id = _positive(msg_id, "msgId")
    batch_key = batch_key or ""
    if not batch_key or len(batch_key) > BATCH_KEY_MAX_BYTES or not _BATCH_KEY_RE.fullmatch(batch_key):
        raise _invalid("batchKey", f"batch key must be 1-{BATCH_KEY_MAX_BYTES} printable ASCII characters")
    if delta is None:
        raise _invalid("delta", "delta is required")
    for field in ("targets", "sentOnline", "storedOffline"):
        if getattr(delta, field) < 0:
            raise _invalid(f"delta.{field}", f"delta.{field} must not be negative")
    return msg_id, batch_key, delta


# getMessages' answer for a message that does not exist (PushGrid::DBAgent::getMessages)
_NO_MESSAGE = PushGrid.MessageRecord(msgId=0, appKey="")

# verifyDevices' answer for a check that failed (PushGrid::DBAgent::verifyDevices)
_NOT_VERIFIED = PushGrid.DeviceInfo(appKey="", registrationId="", platform=PushGrid.Platform.Android)


def _page(limit: int) -> int:
    """limit 0 or less means limits.PAGE_DEFAULT; more than limits.PAGE_MAX means PAGE_MAX."""
    return limits.PAGE_DEFAULT if limit <= 0 else min(limit, limits.PAGE_MAX)


class DBAgentI(PushGrid.DBAgent):
    """Named storage operations over Ice; no SQL crosses the wire."""

    def __init__(self, store: Store, logins: LoginChecks | None = None):
        """store is a services.dbagent.store.Store (unit tests pass a fake with the same methods)."""
        self._store = store
        self._logins = logins or LoginChecks()

    # ------------------------------------------------------------ apps

    def createApp(self, name: str, pushQuotaPerMinute: int, current: Ice.Current = None) -> PushGrid.AppCredentials:
        """A quota of 0 means limits.PUSH_QUOTA_DEFAULT, as Ice's default int reads."""
        quota = limits.PUSH_QUOTA_DEFAULT if pushQuotaPerMinute == 0 else _quota(pushQuotaPerMinute)
        return self._store.create_app(_app_name(name), quota)

    def getApp(self, appKey: str, current: Ice.Current = None) -> PushGrid.AppInfo:
        return self._store.get_app(_known_app_key(appKey))

    def listApps(self, current: Ice.Current = None) -> list[PushGrid.AppInfo]:
        return self._store.list_apps()

    def verifyApp(self, appKey: str, masterSecret: str, current: Ice.Current = None) -> Future[PushGrid.AppInfo]:
        """Answered from the login checks' own threads (services/dbagent/checks.py)."""
        return self._logins.submit(self._verify_app, appKey, masterSecret)

    def _verify_app(self, app_key: str, master_secret: str) -> PushGrid.AppInfo:
        if not _well_formed_app_key(app_key) or not _short(master_secret):
            credentials.verify_secret("", None)  # the same scrypt an unknown app costs
            raise PushGrid.AuthenticationFailed(reason="app key or master secret is wrong")
        return self._store.verify_app(app_key, master_secret or "")

    def rotateSecret(self, appKey: str, current: Ice.Current = None) -> PushGrid.AppCredentials:
        return self._store.rotate_secret(_known_app_key(appKey))

    def setQuota(self, appKey: str, pushQuotaPerMinute: int, current: Ice.Current = None) -> None:
        self._store.set_quota(validation.app_key(appKey), _quota(pushQuotaPerMinute))

    def setDeviceLimit(self, appKey: str, maxDevices: int, current: Ice.Current = None) -> None:
        if maxDevices < 0:
            raise _invalid("maxDevices", "a device limit is 0 (none) or more")
        self._store.set_device_limit(validation.app_key(appKey), maxDevices)

    def setAppEnabled(self, appKey: str, enabled: bool, current: Ice.Current = None) -> None:
        self._store.set_app_enabled(_known_app_key(appKey), bool(enabled))

    # ------------------------------------------------------------ devices

    def registerDevice(
        self, appKey: str, platform: PushGrid.Platform, current: Ice.Current = None
    ) -> PushGrid.DeviceCredentials:
        return self._store.register_device(_known_app_key(appKey), _enum(platform, PushGrid.Platform, "platform"))

    def registerDevices(
        self, appKey: str, platform: PushGrid.Platform, count: int, current: Ice.Current = None
    ) -> list[PushGrid.DeviceCredentials]:
        if count is None or not 0 < count <= limits.DEVICE_BATCH:
            raise _invalid("count", f"count must be 1-{limits.DEVICE_BATCH}")
        app_key = _known_app_key(appKey)
        return self._store.register_devices(app_key, _enum(platform, PushGrid.Platform, "platform"), count)

    def verifyDevice(
        self, appKey: str, registrationId: str, deviceToken: str, current: Ice.Current = None
    ) -> PushGrid.DeviceInfo:
        if not _checkable(PushGrid.DeviceCheck(appKey, registrationId, deviceToken)):
            raise PushGrid.AuthenticationFailed(reason="registration id or device token is wrong")
        return self._store.verify_device(appKey, registrationId, deviceToken or "")

    def verifyDevices(self, checks: Sequence[PushGrid.DeviceCheck], current: Ice.Current = None) -> list[Any]:
        wanted = _count(checks, "checks", limits.DEVICE_BATCH)
        well_formed = [(i, c) for i, c in enumerate(wanted) if c is not None and _checkable(c)]
        found = self._store.verify_devices([(c.appKey, c.registrationId, c.deviceToken or "") for _, c in well_formed])
        out = [_NOT_VERIFIED] * len(wanted)
        for (i, _), info in zip(well_formed, found, strict=True):
            if info is not None:
                out[i] = info
        return out

    def getDevice(self, appKey: str, registrationId: str, current: Ice.Current = None) -> PushGrid.DeviceInfo:
        return self._store.get_device(validation.app_key(appKey), validation.registration_id(registrationId))

    def touchDevices(
        self, appKey: str, registrationIds: Sequence[str], seenAt: int, current: Ice.Current = None
    ) -> None:
        app_key = validation.app_key(appKey)
        ids = _count(registrationIds, "registrationIds", TOUCH_PER_CALL)
        ids = list(dict.fromkeys(validation.registration_id(r, "registrationIds") for r in ids))
        seen_at = _positive(seenAt, "seenAt")
        if ids:
            self._store.touch_devices(app_key, ids, seen_at)

    def unregisterDevice(self, appKey: str, registrationId: str, current: Ice.Current = None) -> None:
        self._store.unregister_device(validation.app_key(appKey), validation.registration_id(registrationId))

    def deviceCount(self, appKey: str, current: Ice.Current = None) -> int:
        return self._store.device_count(_known_app_key(appKey))

    # ------------------------------------------------------------ messages

    def recordMessage(self, record: PushGrid.MessageRecord, current: Ice.Current = None) -> None:
        self._store.record_message(_message_record(record))

    def recordMessages(
        self, appKey: str, records: Sequence[PushGrid.MessageRecord], current: Ice.Current = None
    ) -> list[bool]:
        app_key = _known_app_key(appKey)
        wanted = [_message_record(r) for r in _count(records, "records", limits.PUSH_BATCH_MAX)]
        if any(r.appKey != app_key for r in wanted):
            raise _invalid("records", "every record must be of appKey")
        return self._store.record_messages(app_key, wanted) if wanted else []

    def getMessages(self, keys: Sequence[PushGrid.MessageKey], current: Ice.Current = None) -> list[Any]:
        wanted = _count(keys, "keys", limits.MESSAGES_PER_CALL)
        named = [(_well_formed_app_key(k.appKey), k.msgId) if k is not None else (None, 0) for k in wanted]
        found = self._store.get_messages([(app, m) for app, m in named if app is not None and m and m > 0])
        return [found.get((app, m), _NO_MESSAGE) if app is not None else _NO_MESSAGE for app, m in named]

    def getMessage(self, appKey: str, msgId: int, current: Ice.Current = None) -> PushGrid.MessageRecord:
        return self._store.get_message(*_message_key(appKey, msgId))

    def findMessage(self, msgId: int, current: Ice.Current = None) -> PushGrid.MessageRecord:
        """An operator's lookup by msg id alone (the console); partners' calls always name the app."""
        return self._store.find_message(_positive(msgId, "msgId"))

    def transitionMessage(
        self,
        appKey: str,
        msgId: int,
        _from: PushGrid.MessageState,
        to: PushGrid.MessageState,
        current: Ice.Current = None,
    ) -> bool:
        """Only a move of lifecycle.TRANSITIONS reaches the store; any other is InvalidState."""
        app_key, msg_id = _message_key(appKey, msgId)
        from_state = _enum(_from, PushGrid.MessageState, "from")
        to_state = _enum(to, PushGrid.MessageState, "to")
        if not lifecycle.allowed(from_state, to_state):
            raise lifecycle.forbidden(msg_id, from_state, to_state)
        return self._store.transition_message(app_key, msg_id, from_state, to_state)

    def transitionMessages(self, moves: Sequence[PushGrid.Transition], current: Ice.Current = None) -> list[bool]:
        wanted = _count(moves, "moves", limits.MESSAGES_PER_CALL)
        for m in wanted:
            if m is None or not lifecycle.allowed(m._from, m.to):
                raise _invalid(
                    "moves", f"{m._from} to {m.to} is not a move a message can make" if m else "a move is required"
                )
        out = []
        for m in wanted:
            key = _well_formed_app_key(m.appKey)
            moved = False
            if key is not None and m.msgId and m.msgId > 0:
                try:
                    moved = self._store.transition_message(key, m.msgId, m._from, m.to)
                except PushGrid.UnknownMessage:
                    moved = False
            out.append(moved)
        return out

    def applyOverride(self, appKey: str, msgId: int, current: Ice.Current = None) -> bool:
        return self._store.apply_override(*_message_key(appKey, msgId))

    def dueMessages(self, until: int, limit: int, current: Ice.Current = None) -> list[PushGrid.MessageRecord]:
        """limit 0 or less means limits.PAGE_DEFAULT; more than limits.PAGE_MAX means PAGE_MAX."""
        return self._store.due_messages(until, _page(limit))

    def unstartedMessages(self, before: int, limit: int, current: Ice.Current = None) -> list[PushGrid.MessageRecord]:
        """limit as dueMessages."""
        return self._store.unstarted_messages(before, _page(limit))

    def purgeExpired(self, expiredBefore: int, limit: int, current: Ice.Current = None) -> PushGrid.Purged:
        """limit as dueMessages."""
        return self._store.purge_expired(expiredBefore, _page(limit))

    # ------------------------------------------------------------ statistics

    def recordStats(self, msgId: int, batchKey: str, delta: PushGrid.StatsDelta, current: Ice.Current = None) -> None:
        self._store.record_stats(*_stats_row(msgId, batchKey, delta))

    def recordStatsMany(self, rows: Sequence[PushGrid.StatsRow], current: Ice.Current = None) -> None:
        wanted = _count(rows, "rows", limits.MESSAGES_PER_CALL)
        checked = [_stats_row(r.msgId, r.batchKey, r.delta) for r in wanted if r is not None]
        if checked:
            self._store.record_stats_many(checked)

    def recordReceipts(
        self, appKey: str, msgId: int, registrationIds: Sequence[str], current: Ice.Current = None
    ) -> int:
        app_key = validation.app_key(appKey)
        msg_id = _positive(msgId, "msgId")
        ids = _count(registrationIds, "registrationIds", limits.RECEIPTS_PER_CALL)
        ids = list(dict.fromkeys(validation.registration_id(r, "registrationIds") for r in ids))
        return self._store.record_receipts(app_key, msg_id, ids)

    def recordReceiptsMany(self, receipts: Sequence[PushGrid.Receipts], current: Ice.Current = None) -> int:
        checked = [_receipts(r.appKey, r.msgId, r.registrationIds) for r in _receipt_groups(receipts)]
        return self._store.record_receipts_many(checked) if checked else 0

    def recordTimedReceipts(self, receipts: Sequence[PushGrid.TimedReceipts], current: Ice.Current = None) -> int:
        """recordReceiptsMany's rules, and every receivedAt positive."""
        checked = [
            (*_receipts(r.appKey, r.msgId, r.registrationIds), _positive(r.receivedAt, "receivedAt"))
            for r in _receipt_groups(receipts)
        ]
        return self._store.record_timed_receipts(checked) if checked else 0

    def getStats(self, appKey: str, msgIds: Sequence[int], current: Ice.Current = None) -> list[PushGrid.MessageStats]:
        app_key = validation.app_key(appKey)
        ids = _count(msgIds, "msgIds", limits.MSG_IDS_PER_REPORT)
        ids = list(dict.fromkeys(_positive(m, "msgIds") for m in ids))
        return self._store.get_stats(app_key, ids)

    def getCurve(self, appKey: str, msgId: int, current: Ice.Current = None) -> list[PushGrid.CurvePoint]:
        return self._store.get_curve(*_message_key(appKey, msgId))

    def noteMessageError(self, appKey: str, msgId: int, error: str, current: Ice.Current = None) -> None:
        if not isinstance(error, str) or not error.strip() or len(error) > limits.MESSAGE_ERROR_MAX_CHARS:
            raise _invalid("error", f"error must be 1-{limits.MESSAGE_ERROR_MAX_CHARS} characters")
        self._store.note_message_error(validation.app_key(appKey), _positive(msgId, "msgId"), error)

    def getMessageErrors(
        self, appKey: str, msgIds: Sequence[int], current: Ice.Current = None
    ) -> list[PushGrid.MessageError]:
        app_key = validation.app_key(appKey)
        ids = _count(msgIds, "msgIds", limits.MSG_IDS_PER_REPORT)
        return self._store.get_message_errors(app_key, list(dict.fromkeys(_positive(m, "msgIds") for m in ids)))


def _receipt_groups(receipts: Sequence[Any] | None) -> list[Any]:
    """The groups of a recordReceiptsMany or recordTimedReceipts call, at most
    limits.RECEIPTS_PER_CALL registration ids in all."""
    groups = [r for r in receipts or [] if r is not None]
    if sum(len(r.registrationIds or ()) for r in groups) > limits.RECEIPTS_PER_CALL:
        raise _invalid("receipts", f"at most {limits.RECEIPTS_PER_CALL} registration ids in one call")
    return groups


def _receipts(app_key: str, msg_id: int, registration_ids: Sequence[str] | None) -> tuple[str, int, list[str]]:
    """One group of receipts, checked: app key, msg id, and its registration ids once each."""
    return (
        validation.app_key(app_key),
        _positive(msg_id, "msgId"),
        list(dict.fromkeys(validation.registration_id(x, "registrationIds") for x in registration_ids or ())),
    )


def _message_record(record: PushGrid.MessageRecord | None) -> PushGrid.MessageRecord:
    """Checks a record for storing: the ids, a new message's state, sane times and a valid request."""
    if record is None:
        raise _invalid("record", "record is required")
    validation.app_key(record.appKey)
    _positive(record.msgId, "msgId")
    if record.state not in lifecycle.NEW:
        raise _invalid("state", "a new message is Scheduled or Accepted")
    _positive(record.createdAt, "createdAt")
    _positive(record.sendAt, "sendAt")
    if record.expiresAt is None or record.expiresAt < record.sendAt:
        raise _invalid("expiresAt", "expiresAt must not be before sendAt")
    request = record.request
    if request is None:
        raise _invalid("request", "request is required")
    try:
        validation.audience(request.audience)
    except PushGrid.LimitExceeded as exc:  # recordMessage declares InvalidArgument only
        raise _invalid(exc.limit, exc.reason) from None
    validation.platforms(request.platforms)
    if len(codec.dumps(request).encode("utf-8")) > REQUEST_MAX_BYTES:
        raise _invalid("request", f"request is larger than {REQUEST_MAX_BYTES} bytes as JSON")
    return record
