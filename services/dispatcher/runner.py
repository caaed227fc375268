"""One task from start to finish: check the message, store it, fan it out page by page, count.

Every step is safe to repeat, and a checkpoint is saved after each page, so a task interrupted
anywhere (worker killed, partition moved) is finished by the next owner with nothing lost and
nothing counted twice: stats batches are keyed by page number, queues are sets, devices dedupe
by msg id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.common import frames, limits, validation
from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.mailbox import Mailbox, Stored
from services.common.overrides import supersede
from services.common.tasks import Task
from services.dispatcher import pacing
from services.dispatcher.checkpoint import Checkpoint
from services.dispatcher.delivery import Delivery

log = logging.getLogger(__name__)

S = PushGrid.MessageState
BROADCAST_BATCH_KEY = "broadcast"
RUNNABLE = (S.Scheduled, S.Accepted, S.Dispatching)


class Interrupted(Exception):
    """The task stopped between pages (its partition moved, or the worker is stopping); whoever
    owns the partition next resumes it from the checkpoint."""


def _page_key(page: int) -> str:
    return f"page-{page}"


class TaskRunner:
    """Runs tasks; the collaborators are the services' proxies, so unit tests pass fakes."""

    def __init__(
        self,
        db: PushGrid.DBAgentPrx,
        tagalias: PushGrid.TagAliasPrx,
        mailbox: Mailbox,
        delivery: Delivery,
        clock: Callable[[], int] = now_ms,
        page_size: int = limits.DISPATCH_PAGE,
        owner: str = "",
    ) -> None:
        """owner (the dispatcher's id) is written into each checkpoint, so operators and tests can
        tell which worker runs a task."""
        self._db = db
        self._tagalias = tagalias
        self._mailbox = mailbox
        self._delivery = delivery
        self._clock = clock
        self._page_size = page_size
        self._owner = owner

    def run(self, task: Task, stop: threading.Event) -> str:
        """Finishes task (or finds it needs nothing); returns what happened, for the log.

        Raises Interrupted when stop is set, and lets backend failures through: the task is then
        not finished and is run again later from its checkpoint.
        """
        cp = Checkpoint.from_fields(self._mailbox.checkpoint(task.msg_id))
        if cp.done:
            return "already done"
        skip, final = self._claim(task)
        if skip:
            if final:
                self._finish(task)
            return skip
        req = task.request
        ttl = validation.ttl_seconds(req.options)
        frame = frames.message_frame(task.msg_id, req)
        stored = Stored(
            task.msg_id, frame, frames.platform_names(req.platforms), task.expires_at, req.options.overrideMsgId
        )
        if ttl > 0:
            self._mailbox.store(stored)
        old = req.options.overrideMsgId
        if old:
            self._mailbox.forget(old)
            try:
                supersede(self._db, task.app_key, old)
            except PushGrid.UnknownMessage:  # gone meanwhile: nothing left to override
                pass
        if req.audience.all:
            self._broadcast(task, stored, ttl)
        else:
            outcome = self._targeted(task, stored, ttl, cp, stop)
            if outcome:
                self._finish(task)
                return outcome
        self._db.transitionMessage(task.app_key, task.msg_id, S.Dispatching, S.Done)
        self._finish(task)
        return "done"

    # ------------------------------------------------------------ state

    def _claim(self, task: Task) -> tuple[str, bool]:
        """Moves the message to Dispatching and returns ("", _); or why to skip it, and whether
        that is final (a duplicate of this task may then be skipped at once)."""
        for _ in range(3):
            record = self._db.getMessage(task.app_key, task.msg_id)
            state = record.state
            if state not in RUNNABLE:
                return f"skipped: {state.name}", True
            if self._expired(task):
                self._db.transitionMessage(task.app_key, task.msg_id, state, S.Expired)
                return "skipped: expired", True
            if state == S.Scheduled and record.sendAt > self._clock():
                return "skipped: not due yet", False  # the scheduler publishes it again when it is
            if state == S.Dispatching or self._db.transitionMessage(task.app_key, task.msg_id, state, S.Dispatching):
                return "", False
        return "skipped: its state keeps changing", False

    def _expired(self, task: Task) -> bool:
        """time_to_live 0 means online only, not expired: whoever is online when it goes out gets it."""
        return validation.ttl_seconds(task.request.options) > 0 and self._clock() >= task.expires_at

    def _still_running(self, task: Task) -> str:
        """Between pages: "" to go on, else why to stop (overridden meanwhile, or expired)."""
        state = self._db.getMessage(task.app_key, task.msg_id).state
        if state != S.Dispatching:
            return f"stopped: {state.name}"
        if self._expired(task):
            self._db.transitionMessage(task.app_key, task.msg_id, S.Dispatching, S.Expired)
            return "stopped: expired"
        return ""

    def _finish(self, task: Task) -> None:
        self._mailbox.save_checkpoint(task.msg_id, {"done": 1}, task.expires_at)

    def _save(self, task: Task, cp: Checkpoint) -> None:
        self._mailbox.save_checkpoint(task.msg_id, {**cp.to_fields(), "owner": self._owner}, task.expires_at)

    # ------------------------------------------------------------ fan-out

    def _envelope(self, task: Task, stored: Stored, ttl: int, spread_ms: int) -> PushGrid.Envelope:
        """STC sends no later than expiresAt; an online-only message gets a short grace instead."""
        expires = task.expires_at if ttl > 0 else self._clock() + spread_ms + limits.ONLINE_ONLY_GRACE_SECONDS * 1000
        return PushGrid.Envelope(
            msgId=task.msg_id,
            appKey=task.app_key,
            broadcast=task.request.audience.all,
            expiresAt=expires,
            overrideMsgId=stored.override_msg_id,
            body=stored.frame,
        )

    def _broadcast(self, task: Task, stored: Stored, ttl: int) -> None:
        """One log entry for replay, one call per STC process; targets are all the app's devices
        (counted without the platform filter)."""
        spread_ms = task.request.options.bigPushDuration * 60_000
        if ttl > 0:
            self._mailbox.log_broadcast(task.app_key, stored, self._clock())
        sent = self._delivery.broadcast(self._envelope(task, stored, ttl, spread_ms), task.request.platforms, spread_ms)
        targets = self._db.deviceCount(task.app_key)
        offline = max(targets - sent, 0) if ttl > 0 else 0
        self._db.recordStats(
            task.msg_id,
            BROADCAST_BATCH_KEY,
            PushGrid.StatsDelta(targets=targets, sentOnline=sent, storedOffline=offline),
        )

    def _targeted(self, task: Task, stored: Stored, ttl: int, cp: Checkpoint, stop: threading.Event) -> str:
        """Resolves and sends page by page from the checkpoint; "" when every page is sent."""
        req = task.request
        duration_ms = req.options.bigPushDuration * 60_000
        if not cp.started:
            estimate = self._estimate(task) if duration_ms else 0
            cp = Checkpoint(started=self._clock(), estimate=estimate)
            self._save(task, cp)
        first = True
        while not cp.walked:
            self._wait(pacing.due_at(cp.started, duration_ms, cp.targets, cp.estimate), stop)
            if not first:
                why = self._still_running(task)
                if why:
                    return why
            first = False
            page = self._tagalias.resolve(task.app_key, req.audience, req.platforms, cp.cursor, self._page_size)
            rids = list(page.registrationIds)
            if rids:
                if ttl > 0:
                    self._mailbox.enqueue(stored, rids)
                sent = self._delivery.deliver(self._envelope(task, stored, ttl, 0), rids)
                self._db.recordStats(
                    task.msg_id,
                    _page_key(cp.page),
                    PushGrid.StatsDelta(
                        targets=len(rids), sentOnline=sent, storedOffline=len(rids) - sent if ttl > 0 else 0
                    ),
                )
            cp = cp.after_page(page.cursor, len(rids), page.done)
            self._save(task, cp)
        return ""

    def _estimate(self, task: Task) -> int:
        aud = task.request.audience
        named = aud.registrationIds or aud.aliases
        tag_sizes = [] if named else [self._tagalias.tagSize(task.app_key, t) for t in aud.tags or ()]
        and_sizes = [self._tagalias.tagSize(task.app_key, t) for t in aud.tagsAnd or ()]
        count = 0 if named or aud.tags else self._db.deviceCount(task.app_key)
        return pacing.estimate_targets(aud, tag_sizes, and_sizes, count)

    def _wait(self, until: int, stop: threading.Event) -> None:
        """Sleeps until `until` (ms), or raises Interrupted as soon as stop is set."""
        while True:
            if stop.is_set():
                raise Interrupted()
            left = until - self._clock()
            if left <= 0:
                return
            stop.wait(min(left, 1000) / 1000)
