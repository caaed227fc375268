"""The Push servant: validate everything, record the message, publish its task, then answer.

A push is answered only once its task is on the broker; until then nothing a partner could
rely on exists. If the broker does not take the task the message is moved to Cancelled (it was
never sent and never will be: a dispatcher skips a Cancelled message even if the task reached
the broker after all) and the partner gets Unavailable("kafka") and may push again. Only once the
broker took it does a push end the message it overrides (services.common.lifecycle says who
moves which state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import Ice

from services.common import limits, logs, validation
from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.ice import backend
from services.common.msgid import MsgIdGenerator
from services.common.tasks import Task, TaskPublisher
from services.push import metrics
from services.push.quota import Quota

log = logging.getLogger(__name__)


def _failed(exc: PushGrid.PushGridError) -> PushGrid.BatchPushResult:
    """A batch item's answer for the error a single push would have raised."""
    return PushGrid.BatchPushResult(0, 0, type(exc).__name__, exc.reason)


S = PushGrid.MessageState


def _audience(audience: PushGrid.Audience) -> str:
    """What a log line says of an audience: its kinds and sizes, not its names."""
    return " ".join(f"{n} {kind}" for kind, n in validation.audience_sizes(audience)) or "everyone"


RECORD_ATTEMPTS = 3  # fresh msg ids to try if one is taken (a restart after the clock went back)


class PushServiceI(PushGrid.PushService):
    """PushGrid::PushService over DBAgent and the tasks topic."""

    def __init__(
        self,
        db: PushGrid.DBAgentPrx,
        publisher: TaskPublisher,
        ids: MsgIdGenerator,
        quota: Quota | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._ids = ids
        self._quota = quota
        self._clock = clock

    # ------------------------------------------------------------ operations

    def push(self, appKey: str, request: PushGrid.PushRequest, current: Ice.Current = None) -> PushGrid.PushResult:
        with metrics.counted("push"):
            clean, app = self._check(appKey, request)
            self._take_quota(app)
            now = self._clock()
            record = self._record(app.appKey, clean, S.Accepted, now, now)
            self._publish(record)
            self._apply_override(record)
        log.info("%s accepted for %s", logs.about(record.msgId, record.appKey), _audience(clean.audience))
        return PushGrid.PushResult(msgId=record.msgId, sendno=clean.options.sendno)

    def pushBatch(
        self, appKey: str, requests: Sequence[PushGrid.PushRequest], current: Ice.Current = None
    ) -> list[PushGrid.BatchPushResult]:
        """push for each request, with one call per step for the whole batch (app, quota, record,
        publish); each request fails alone."""
        wanted = list(requests or [])
        if not 0 < len(wanted) <= limits.PUSH_BATCH_MAX:
            raise validation.invalid("requests", f"a batch holds 1-{limits.PUSH_BATCH_MAX} pushes")
        app = self._app(appKey)
        results: dict[int, PushGrid.BatchPushResult] = {}
        clean: dict[int, PushGrid.PushRequest] = {}
        for i, request in enumerate(wanted):
            try:
                checked = validation.push_request(request)
                self._check_override(app.appKey, checked)
                clean[i] = checked
            except (PushGrid.InvalidArgument, PushGrid.LimitExceeded, PushGrid.Unavailable) as exc:
                results[i] = _failed(exc)
        if self._quota is not None:
            for i in list(clean)[self._quota.take_many(app, len(clean)) :]:
                results[i] = _failed(self._quota.refusal(app))
                del clean[i]
        now = self._clock()
        records = self._record_many(app.appKey, clean, now)
        failures = self._publisher.publish_many([Task.from_record(r) for r in records.values()])
        for (i, record), failure in zip(records.items(), failures, strict=True):
            if failure is not None:
                self._cancel_unpublished(record)
                results[i] = _failed(failure)
                continue
            self._apply_override(record)
            log.info(
                "%s accepted in a batch for %s", logs.about(record.msgId, record.appKey), _audience(clean[i].audience)
            )
            results[i] = PushGrid.BatchPushResult(record.msgId, clean[i].options.sendno, "", "")
        answers = [results[i] for i in range(len(wanted))]
        for answer in answers:
            if answer.error:
                metrics.refused(answer.error)
        metrics.ACCEPTED.labels("pushBatch").inc(sum(1 for a in answers if not a.error))
        return answers

    def validate(self, appKey: str, request: PushGrid.PushRequest, current: Ice.Current = None) -> None:
        self._check(appKey, request)

    def schedule(
        self, appKey: str, request: PushGrid.PushRequest, sendAt: int, current: Ice.Current = None
    ) -> PushGrid.PushResult:
        """Records the message as Scheduled; the dispatchers' scheduler publishes it when due, and
        an override takes effect then (DBAgent ends the old message as the new one leaves Scheduled)."""
        with metrics.counted("schedule"):
            validation.app_key(appKey)
            now = self._clock()
            send_at = validation.send_at(sendAt, now)
            clean, app = self._check(appKey, request)
            self._take_quota(app)
            record = self._record(app.appKey, clean, S.Scheduled, now, send_at)
        log.info(
            "%s scheduled for %d for %s", logs.about(record.msgId, record.appKey), send_at, _audience(clean.audience)
        )
        return PushGrid.PushResult(msgId=record.msgId, sendno=clean.options.sendno)

    def cancel(self, appKey: str, msgId: int, current: Ice.Current = None) -> None:
        with backend("dbagent"):
            if self._db.transitionMessage(appKey, msgId, S.Scheduled, S.Cancelled):
                return
            state = self._db.getMessage(appKey, msgId).state
        raise PushGrid.InvalidState(
            reason=f"message {msgId} is {state.name}; only a Scheduled message can be cancelled", msgId=msgId
        )

    def report(self, appKey: str, msgIds: Sequence[int], current: Ice.Current = None) -> list[PushGrid.MessageStats]:
        validation.app_key(appKey)
        with backend("dbagent"):
            return self._db.getStats(appKey, list(msgIds or []))

    def reportErrors(
        self, appKey: str, msgIds: Sequence[int], current: Ice.Current = None
    ) -> list[PushGrid.MessageError]:
        validation.app_key(appKey)
        with backend("dbagent"):
            return self._db.getMessageErrors(appKey, list(msgIds or []))

    def reportCurve(self, appKey: str, msgId: int, current: Ice.Current = None) -> list[PushGrid.CurvePoint]:
        """The message's receipt curve; DBAgent answers UnknownMessage unless it is appKey's."""
        with backend("dbagent"):
            return self._db.getCurve(appKey, msgId)

    # ------------------------------------------------------------ steps

    def _check(self, app_key: str, request: PushGrid.PushRequest) -> tuple[PushGrid.PushRequest, PushGrid.AppInfo]:
        """Everything push checks: the request alone first, then the app and the overridden message."""
        validation.app_key(app_key)
        clean = validation.push_request(request)
        app = self._app(app_key)
        self._check_override(app_key, clean)
        return clean, app

    def _app(self, app_key: str) -> PushGrid.AppInfo:
        """The app, if it exists and is enabled."""
        validation.app_key(app_key)
        with backend("dbagent"):
            app = self._db.getApp(app_key)
        if not app.enabled:
            raise PushGrid.UnknownApp(reason="the app is disabled", appKey=app_key)
        return app

    def _check_override(self, app_key: str, clean: PushGrid.PushRequest) -> None:
        """The message a checked request overrides must be one of the app's."""
        old = clean.options.overrideMsgId
        if old:
            try:
                with backend("dbagent"):
                    self._db.getMessage(app_key, old)
            except PushGrid.UnknownMessage:
                raise validation.invalid(
                    "options.overrideMsgId", f"override_msg_id {old} is not a message of this app"
                ) from None

    def _take_quota(self, app: PushGrid.AppInfo) -> None:
        if self._quota is not None:
            self._quota.take(app)

    def _new_record(
        self, app_key: str, request: PushGrid.PushRequest, state: PushGrid.MessageState, now: int, send_at: int
    ) -> PushGrid.MessageRecord:
        """A message with a fresh msg id, expiring its time to live after send_at."""
        return PushGrid.MessageRecord(
            msgId=self._ids.next(),
            appKey=app_key,
            request=request,
            state=state,
            createdAt=now,
            sendAt=send_at,
            expiresAt=send_at + validation.ttl_seconds(request.options) * 1000,
        )

    def _record(
        self, app_key: str, request: PushGrid.PushRequest, state: PushGrid.MessageState, now: int, send_at: int
    ) -> PushGrid.MessageRecord:
        for attempt in range(RECORD_ATTEMPTS):
            record = self._new_record(app_key, request, state, now, send_at)
            try:
                with backend("dbagent"):
                    self._db.recordMessage(record)
                return record
            except PushGrid.AlreadyExists:
                log.warning("msg id %d was taken (attempt %d); drawing another", record.msgId, attempt + 1)
        raise PushGrid.Unavailable(reason="no free msg id; retry", backend="dbagent")

    def _record_many(
        self, app_key: str, requests: dict[int, PushGrid.PushRequest], now: int
    ) -> dict[int, PushGrid.MessageRecord]:
        """Records the accepted requests of a batch in one call; a request whose msg id was taken
        is recorded again alone, with a fresh one."""
        records = {i: self._new_record(app_key, r, S.Accepted, now, now) for i, r in requests.items()}
        if not records:
            return {}
        with backend("dbagent"):
            recorded = self._db.recordMessages(app_key, list(records.values()))
        for (i, record), ok in zip(list(records.items()), recorded, strict=True):
            if not ok:
                log.warning("msg id %d was taken; drawing another", record.msgId)
                records[i] = self._record(app_key, record.request, S.Accepted, now, now)
        return records

    def _publish(self, record: PushGrid.MessageRecord) -> None:
        try:
            self._publisher.publish(Task.from_record(record))
        except PushGrid.Unavailable:
            self._cancel_unpublished(record)
            raise

    def _cancel_unpublished(self, record: PushGrid.MessageRecord) -> None:
        """The broker did not take the task: the message is Cancelled, never to be sent."""
        try:
            with backend("dbagent"):
                self._db.transitionMessage(record.appKey, record.msgId, S.Accepted, S.Cancelled)
        except PushGrid.PushGridError as exc:
            log.error("%s stays Accepted without a task: %s", logs.about(record.msgId, record.appKey), exc.reason)

    def _apply_override(self, record: PushGrid.MessageRecord) -> None:
        """The new message's task is on the broker: DBAgent ends the message it overrides now.
        Best effort: the push is answered anyway, and the old message stays as it was."""
        old = record.request.options.overrideMsgId
        if not old:
            return
        try:
            with backend("dbagent"):
                self._db.applyOverride(record.appKey, record.msgId)
        except PushGrid.PushGridError as exc:
            log.warning(
                "%s not marked Overridden by msg=%d: %s", logs.about(old, record.appKey), record.msgId, exc.reason
            )
