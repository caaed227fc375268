"""In-memory stand-ins for DBAgent, TagAlias, Mailbox, STC delivery and the task publisher.

They keep the rules the Push and dispatcher tests rely on (message states moved only as
services.common.lifecycle allows, with compare-and-set, and a scheduled message going out ending
the one it overrides, as DBAgent does; stats once per batch key; paged resolution with cursors)
and nothing more.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future
from typing import Any

import Ice

from services.common import lifecycle
from services.common.contract import PushGrid
from services.dbagent import curve
from tests.unit.fakes import APP, FakeMailbox
from tools.partner import builders as b

S = PushGrid.MessageState


def request(**options: Any) -> PushGrid.PushRequest:
    """A valid tag push; options override PushOptions fields, audience= and platforms= the rest."""
    audience = options.pop("audience", PushGrid.Audience(tags=["t"]))
    platforms = options.pop("platforms", [])
    return b.push_request(audience, notification="hello", platforms=platforms, options=PushGrid.PushOptions(**options))


class FakeDB:
    """DBAgent: apps, messages with states, stats counted once per (msg id, batch key)."""

    def __init__(self) -> None:
        self.apps = {APP: PushGrid.AppInfo(appKey=APP, name="app", pushQuotaPerMinute=600, enabled=True)}
        self.messages: dict[int, PushGrid.MessageRecord] = {}
        self.stats: dict[int, PushGrid.StatsDelta] = defaultdict(PushGrid.StatsDelta)
        self.batches: set[tuple[int, str]] = set()
        self.receipts: set[tuple[int, str]] = set()
        self.received_at: dict[tuple[int, str], int] = {}  # receipts recorded with their time
        self.before_curves = False  # answers as a DBAgent of a release without receipt curves
        self.devices = 0
        self.errors: dict[int, str] = {}
        self.calls: list[str] = []
        self.fail_on: str | None = None  # an operation name that raises Unavailable

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_on == name:
            raise PushGrid.Unavailable(reason="down", backend="mysql")

    def getApp(self, app: str) -> PushGrid.AppInfo:
        self._call("getApp")
        if app not in self.apps:
            raise PushGrid.UnknownApp(reason="no such app", appKey=app)
        return self.apps[app]

    def recordMessage(self, record: PushGrid.MessageRecord) -> None:
        self._call("recordMessage")
        if record.msgId in self.messages:
            raise PushGrid.AlreadyExists(reason="taken", id=str(record.msgId))
        self.messages[record.msgId] = record

    def recordMessages(self, app: str, records: list[PushGrid.MessageRecord]) -> list[bool]:
        self._call("recordMessages")
        taken = [r.msgId in self.messages for r in records]
        for record, was_taken in zip(records, taken, strict=True):
            if not was_taken:
                self.messages[record.msgId] = record
        return [not t for t in taken]

    def getMessage(self, app: str, msg_id: int) -> PushGrid.MessageRecord:
        self._call("getMessage")
        rec = self.messages.get(msg_id)
        if rec is None or rec.appKey != app:
            raise PushGrid.UnknownMessage(reason="no such message", msgId=msg_id)
        return rec

    def findMessage(self, msg_id: int) -> PushGrid.MessageRecord:
        self._call("findMessage")
        if msg_id not in self.messages:
            raise PushGrid.UnknownMessage(reason="no such message", msgId=msg_id)
        return self.messages[msg_id]

    def transitionMessage(self, app: str, msg_id: int, frm: PushGrid.MessageState, to: PushGrid.MessageState) -> bool:
        self._call("transitionMessage")
        if not lifecycle.allowed(frm, to):
            raise lifecycle.forbidden(msg_id, frm, to)
        rec = self.getMessage(app, msg_id)
        if rec.state != frm:
            return False
        rec.state = to
        if (frm, to) in lifecycle.OVERRIDE_TAKES_EFFECT:
            self._override(rec)
        return True

    def noteMessageError(self, app: str, msg_id: int, error: str) -> None:
        self._call("noteMessageError")
        self.getMessage(app, msg_id)
        self.errors.setdefault(msg_id, error)

    def getMessages(self, keys: list[PushGrid.MessageKey]) -> list[PushGrid.MessageRecord]:
        self._call("getMessages")
        return [
            r if (r := self.messages.get(k.msgId)) is not None and r.appKey == k.appKey else PushGrid.MessageRecord()
            for k in keys
        ]

    def transitionMessages(self, moves: list[PushGrid.Transition]) -> list[bool]:
        self._call("transitionMessages")
        out, counted = [], len(self.calls)
        for m in moves:
            try:
                out.append(self.transitionMessage(m.appKey, m.msgId, m._from, m.to))
            except PushGrid.UnknownMessage:
                out.append(False)
        del self.calls[counted:]  # counted once, as transitionMessages
        return out

    def recordStatsMany(self, rows: list[PushGrid.StatsRow]) -> None:
        self._call("recordStatsMany")
        counted = len(self.calls)
        for r in rows:
            self.recordStats(r.msgId, r.batchKey, r.delta)
        del self.calls[counted:]  # counted once, as recordStatsMany

    def applyOverride(self, app: str, msg_id: int) -> bool:
        self._call("applyOverride")
        return self._override(self.getMessage(app, msg_id))

    def _override(self, rec: PushGrid.MessageRecord) -> bool:
        if rec.state not in lifecycle.PUBLISHED:
            return False
        old = self.messages.get(rec.request.options.overrideMsgId)
        if old is None or old.appKey != rec.appKey or old.state not in lifecycle.OVERRIDABLE:
            return False
        old.state = S.Overridden
        return True

    def dueMessages(self, until: int, limit: int) -> list[PushGrid.MessageRecord]:
        self._call("dueMessages")
        due = [r for r in self.messages.values() if r.state == S.Scheduled and r.sendAt <= until]
        return sorted(due, key=lambda r: (r.sendAt, r.msgId))[:limit]

    def unstartedMessages(self, before: int, limit: int) -> list[PushGrid.MessageRecord]:
        self._call("unstartedMessages")
        due = [r for r in self.messages.values() if r.state == S.Accepted and r.sendAt <= before]
        return sorted(due, key=lambda r: (r.sendAt, r.msgId))[:limit]

    def recordStats(self, msg_id: int, key: str, delta: PushGrid.StatsDelta) -> None:
        self._call("recordStats")
        if (msg_id, key) in self.batches:
            return
        self.batches.add((msg_id, key))
        s = self.stats[msg_id]
        s.targets += delta.targets
        s.sentOnline += delta.sentOnline
        s.storedOffline += delta.storedOffline

    def recordReceipts(self, app: str, msg_id: int, rids: list[str]) -> int:
        self._call("recordReceipts")
        if msg_id not in self.messages or self.messages[msg_id].appKey != app:
            raise PushGrid.UnknownMessage(reason="no such message", msgId=msg_id)
        new = {(msg_id, r) for r in rids} - self.receipts
        self.receipts |= new
        return len(new)

    def recordReceiptsMany(self, groups: list[PushGrid.Receipts]) -> int:
        self._call("recordReceiptsMany")
        new = 0
        counted = len(self.calls)
        for g in groups:
            try:
                new += self.recordReceipts(g.appKey, g.msgId, g.registrationIds)
            except PushGrid.UnknownMessage:
                continue
        del self.calls[counted:]  # counted once, as recordReceiptsMany
        return new

    def recordTimedReceipts(self, groups: list[PushGrid.TimedReceipts]) -> int:
        if self.before_curves:
            raise Ice.OperationNotExistException(operation="recordTimedReceipts")
        self._call("recordTimedReceipts")
        before = set(self.receipts)
        new = self.recordReceiptsMany([PushGrid.Receipts(g.appKey, g.msgId, g.registrationIds) for g in groups])
        self.calls.pop()  # counted once, as recordTimedReceipts
        fresh = self.receipts - before
        for g in groups:
            for rid in g.registrationIds:
                if (g.msgId, rid) in fresh:
                    self.received_at.setdefault((g.msgId, rid), g.receivedAt)
        return new

    def getCurve(self, app: str, msg_id: int) -> list[PushGrid.CurvePoint]:
        if self.before_curves:
            raise Ice.OperationNotExistException(operation="getCurve")
        self._call("getCurve")
        send_at = self.getMessage(app, msg_id).sendAt
        self.calls.pop()  # counted once, as getCurve
        buckets: dict[int, int] = defaultdict(int)
        for (m, _), at in self.received_at.items():
            if m == msg_id:
                buckets[curve.bucket(at, send_at)] += 1
        return curve.points(buckets.items())

    def getMessageErrors(self, app: str, ids: list[int]) -> list[PushGrid.MessageError]:
        self._call("getMessageErrors")
        return [PushGrid.MessageError(msgId=m, error=self.errors[m]) for m in ids if m in self.errors]

    def getStats(self, app: str, ids: list[int]) -> list[PushGrid.MessageStats]:
        self._call("getStats")
        return [
            PushGrid.MessageStats(msgId=m, state=self.messages[m].state)
            for m in ids
            if m in self.messages and self.messages[m].appKey == app
        ]

    def deviceCount(self, app: str) -> int:
        self._call("deviceCount")
        return self.devices

    def add(
        self,
        msg_id: int,
        req: PushGrid.PushRequest,
        state: PushGrid.MessageState = S.Accepted,
        send_at: int = 1000,
        expires_at: int = 10**15,
    ) -> PushGrid.MessageRecord:
        rec = PushGrid.MessageRecord(
            msgId=msg_id, appKey=APP, request=req, state=state, createdAt=send_at, sendAt=send_at, expiresAt=expires_at
        )
        self.messages[msg_id] = rec
        return rec


class FakeTagAlias:
    """TagAlias: tag members resolved in pages; the cursor is the index of the next member."""

    def __init__(self, tags: dict[str, list[str]]) -> None:
        self.tags = tags
        self.resolved: list[str] = []  # cursors asked for, in order

    def resolve(
        self, app: str, aud: PushGrid.Audience, platforms: list, cursor: str, limit: int
    ) -> PushGrid.AudiencePage:
        self.resolved.append(cursor)
        members = sorted({r for t in aud.tags or [] for r in self.tags.get(t, [])} | set(aud.registrationIds or []))
        start = int(cursor or 0)
        end = start + limit
        done = end >= len(members)
        return PushGrid.AudiencePage(registrationIds=members[start:end], cursor="" if done else str(end), done=done)

    def resolveAsync(
        self, app: str, aud: PushGrid.Audience, platforms: list, cursor: str, limit: int
    ) -> Future[PushGrid.AudiencePage]:
        """resolve as Ice's asynchronous call answers it: a future."""
        answer: Future[PushGrid.AudiencePage] = Future()
        answer.set_result(self.resolve(app, aud, platforms, cursor, limit))
        return answer

    def tagSize(self, app: str, tag: str) -> int:
        return len(self.tags.get(tag, []))


class FakeDelivery:
    """STC delivery: sends to the online devices given; a hook may run after each page."""

    def __init__(self, mailbox: FakeMailbox, broadcast_sent: int = 0) -> None:
        self.mailbox = mailbox
        self.broadcast_sent = broadcast_sent
        self.delivered: list[tuple[PushGrid.Envelope, list[str]]] = []
        self.broadcasted: list[tuple[PushGrid.Envelope, list, int]] = []
        self.after_deliver = lambda: None
        self.calls = 0  # deliver_many calls

    def deliver(self, env: PushGrid.Envelope, rids: list[str]) -> int:
        return self.deliver_many([(env, rids)])[0]

    def deliver_many(self, items: list[tuple[PushGrid.Envelope, list[str]]]) -> list[int]:
        self.calls += 1
        sent = []
        for env, rids in items:
            online = list(self.mailbox.where(rids))
            self.delivered.append((env, online))
            self.after_deliver()
            sent.append(len(online))
        return sent

    def broadcast(self, env: PushGrid.Envelope, platforms: list, spread_ms: int) -> int:
        self.broadcasted.append((env, list(platforms), spread_ms))
        return self.broadcast_sent


class FakePublisher:
    """The task publisher: keeps tasks, or fails as a dead broker does."""

    def __init__(self) -> None:
        self.tasks: list[Any] = []
        self.down = False

    def publish(self, task: Any) -> None:
        if self.down:
            raise PushGrid.Unavailable(reason="broker down", backend="kafka")
        self.tasks.append(task)

    def publish_many(self, tasks: list[Any]) -> list[PushGrid.Unavailable | None]:
        out: list[PushGrid.Unavailable | None] = []
        for task in tasks:
            try:
                self.publish(task)
                out.append(None)
            except PushGrid.Unavailable as exc:
                out.append(exc)
        return out
