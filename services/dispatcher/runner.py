"""One task from start to finish: check the message, store it, fan it out page by page, count.

Every step is safe to repeat, and a checkpoint is saved after each page, so a task interrupted
anywhere (worker killed, partition moved) is finished by the next owner with nothing lost and
nothing counted twice: stats batches are keyed by page number, queues are sets, devices dedupe
by msg id. The runner moves only its own message (services.common.lifecycle: to Dispatching,
Done or Expired); the message it overrides is dropped from the mailbox here and marked
Overridden by DBAgent (applyOverride, which Push asks first, or the move out of Scheduled).
run() says how it ended with an Outcome.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.common import canaries, frames, lifecycle, limits, platforms, validation
from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.mailbox import Mailbox, Stored
from services.common.tasks import Task
from services.dispatcher import metrics, pacing
from services.dispatcher.checkpoint import Checkpoint
from services.dispatcher.delivery import Delivery

log = logging.getLogger(__name__)

S = PushGrid.MessageState
BROADCAST_BATCH_KEY = "broadcast"
CLAIM_ATTEMPTS = 3  # reads of the message's state, should racing callers keep changing it


class Ending(enum.Enum):
    DONE = "done"  # every target sent (or the broadcast handed to every STC)
    ALREADY_DONE = "already done"  # a duplicate or retried task whose checkpoint says done
    SKIPPED = "skipped"  # not started: the message is not runnable, expired, or not due
    STOPPED = "stopped"  # stopped between pages: no longer Dispatching, or expired
    DROPPED = "dropped"  # cannot run at all (its message or app is gone, or the task is malformed)


@dataclass(frozen=True)
class Outcome:
    """How run() ended; str() is the text the worker logs ("done", "skipped: Cancelled")."""

    ending: Ending
    reason: str = ""  # the state or condition that skipped or stopped it
    final: bool = True  # nothing is left to do: the task is marked done, so a duplicate skips at once

    def __str__(self) -> str:
        return f"{self.ending.value}: {self.reason}" if self.reason else self.ending.value


DONE = Outcome(Ending.DONE)
ALREADY_DONE = Outcome(Ending.ALREADY_DONE)
SKIPPED_EXPIRED = Outcome(Ending.SKIPPED, "expired")
STOPPED_EXPIRED = Outcome(Ending.STOPPED, "expired")
NOT_DUE = Outcome(Ending.SKIPPED, "not due yet", final=False)  # the scheduler publishes it again when due
UNSETTLED = Outcome(Ending.SKIPPED, "its state keeps changing", final=False)
DROPPED = Outcome(Ending.DROPPED, "it can never run")  # the worker's verdict on a permanent error


def skipped(state: PushGrid.MessageState) -> Outcome:
    """A task whose message is in a state a dispatcher does not run (lifecycle.RUNNABLE)."""
    return Outcome(Ending.SKIPPED, state.name)


def stopped(state: PushGrid.MessageState) -> Outcome:
    """A task whose message left Dispatching while it ran (overridden meanwhile)."""
    return Outcome(Ending.STOPPED, state.name)


class Interrupted(Exception):
    """The task stopped between pages (its partition moved, or the worker is stopping); whoever
    owns the partition next resumes it from the checkpoint."""


def _page_key(page: int) -> str:
    return f"page-{page}"


def _stored(task: Task) -> Stored:
    """The message as kept for replay: its device frame, built once, and who may get it."""
    req = task.request
    frame = frames.message_frame(task.msg_id, req)
    return Stored(task.msg_id, frame, platforms.names(req.platforms), task.expires_at, req.options.overrideMsgId)


def _batchable(task: Task) -> bool:
    """A task run_batch can take: targeted, unpaced, overriding nothing."""
    opts = task.request.options
    return not task.request.audience.all and not opts.bigPushDuration and not opts.overrideMsgId


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
        data_lost: Callable[[], int] = lambda: 0,
    ) -> None:
        """owner (the dispatcher's id) is written into each checkpoint, so operators and tests can
        tell which worker runs a task. data_lost says how many Redis canaries are gone
        (canaries.Watch.missing); a message finished meanwhile gets an error on its report."""
        self._db = db
        self._tagalias = tagalias
        self._mailbox = mailbox
        self._delivery = delivery
        self._clock = clock
        self._page_size = page_size
        self._owner = owner
        self._data_lost = data_lost

    def run(self, task: Task, stop: threading.Event) -> Outcome:
        """Finishes task (or finds it needs nothing); returns how it ended, for the log.

        Raises Interrupted when stop is set, and lets backend failures through: the task is then
        not finished and is run again later from its checkpoint.
        """
        cp = Checkpoint.from_fields(self._mailbox.checkpoint(task.msg_id))
        if cp.done:
            return ALREADY_DONE
        skip = self._claim(task)
        if skip is not None:
            return self._end(task, skip)
        req = task.request
        ttl = validation.ttl_seconds(req.options)
        stored = _stored(task)
        if ttl > 0:
            self._mailbox.store(stored)
        if req.options.overrideMsgId:
            self._mailbox.forget(req.options.overrideMsgId)
            # Push asked DBAgent already; asking again (idempotent) covers a Push that could not
            self._db.applyOverride(task.app_key, task.msg_id)
        if req.audience.all:
            self._broadcast(task, stored, ttl)
        else:
            stop_early = self._targeted(task, stored, ttl, cp, stop)
            if stop_early is not None:
                return self._end(task, stop_early)
        self._note_lost_data([task])
        self._db.transitionMessage(task.app_key, task.msg_id, S.Dispatching, S.Done)
        return self._end(task, DONE)

    def run_batch(self, tasks: Sequence[Task], stop: threading.Event) -> list[Outcome | Exception]:
        """run() for many tasks, with one call per step for all of them: checkpoints, states,
        claims, stored messages, first pages, queues, deliveries, stats and the move to Done.

        The batch takes targeted, unpaced tasks that have not started; it leaves to run(), one by
        one and from where the batch left them, whatever it cannot finish alone: broadcasts, paced
        pushes, overrides, audiences of more than one page, a message whose state moved under it.
        Answers, in order, each task's Outcome, or the exception run() raised for it. A backend
        failure of a batched step raises for the whole batch, which is safe to run again.
        """
        out: list[Outcome | Exception | None] = [None] * len(tasks)
        cps = self._mailbox.checkpoint_many([t.msg_id for t in tasks])
        fresh = []
        for i, (task, fields) in enumerate(zip(tasks, cps, strict=True)):
            cp = Checkpoint.from_fields(fields)
            if cp.done:
                out[i] = ALREADY_DONE
            elif not cp.started and _batchable(task):
                fresh.append(i)
        claimed = self._claim_many([tasks[i] for i in fresh])
        finals: list[Task] = []
        walked: list[tuple[int, Stored, int]] = []  # (task index, stored form, ttl)
        for i, verdict in zip(fresh, claimed, strict=True):
            if isinstance(verdict, Outcome):
                out[i] = verdict
                if verdict.final:
                    finals.append(tasks[i])
            elif verdict:
                walked.append((i, _stored(tasks[i]), validation.ttl_seconds(tasks[i].request.options)))
        if walked:
            self._first_pages(tasks, walked, out, finals)
        self._mailbox.save_checkpoint_many([(t.msg_id, {"done": 1}, t.expires_at) for t in finals])
        answers: list[Outcome | Exception] = []
        for task, known in zip(tasks, out, strict=True):
            if known is None:
                try:
                    known = self.run(task, stop)
                except Exception as exc:  # noqa: BLE001 - this task's verdict, as run() gives it
                    known = exc
            answers.append(known)
        return answers

    def _claim_many(self, tasks: Sequence[Task]) -> list[Outcome | bool]:
        """_claim for many tasks in two calls: an Outcome where a task is skipped, True where it
        was claimed (moved to Dispatching), False where run() should look again."""
        if not tasks:
            return []
        records = self._db.getMessages([PushGrid.MessageKey(t.app_key, t.msg_id) for t in tasks])
        verdicts: list[Outcome | bool] = []
        moves: dict[int, PushGrid.Transition] = {}
        now = self._clock()
        for k, (task, record) in enumerate(zip(tasks, records, strict=True)):
            state = record.state
            expired = validation.ttl_seconds(task.request.options) > 0 and now >= task.expires_at
            if not record.msgId or expired:
                verdicts.append(False)  # run() drops it or moves it to Expired
            elif state not in lifecycle.RUNNABLE:
                verdicts.append(skipped(state))
            elif state == S.Scheduled and record.sendAt > now:
                verdicts.append(NOT_DUE)
            else:
                verdicts.append(state == S.Dispatching)
                if state != S.Dispatching:
                    moves[k] = PushGrid.Transition(task.app_key, task.msg_id, state, S.Dispatching)
        if moves:
            for k, moved in zip(moves, self._db.transitionMessages(list(moves.values())), strict=True):
                verdicts[k] = moved
        return verdicts

    def _first_pages(
        self,
        tasks: Sequence[Task],
        walked: list[tuple[int, Stored, int]],
        out: list[Outcome | Exception | None],
        finals: list[Task],
    ) -> None:
        """The first page of each claimed task: stored, resolved, queued, delivered, counted; the
        tasks whose audience ended there are moved to Done."""
        self._mailbox.store_many([stored for _, stored, ttl in walked if ttl > 0])
        futures = [
            self._tagalias.resolveAsync(
                tasks[i].app_key, tasks[i].request.audience, tasks[i].request.platforms, "", self._page_size
            )
            for i, _, _ in walked
        ]
        pages: list[PushGrid.AudiencePage] = [f.result() for f in futures]
        self._mailbox.enqueue_many(
            [(stored, page.registrationIds) for (_, stored, ttl), page in zip(walked, pages, strict=True) if ttl > 0]
        )
        sent = self._delivery.deliver_many(
            [
                (self._envelope(tasks[i], stored, ttl, 0), list(page.registrationIds))
                for (i, stored, ttl), page in zip(walked, pages, strict=True)
            ]
        )
        metrics.PAGES.inc(len(walked))
        metrics.TARGETS.inc(sum(len(page.registrationIds) for page in pages))
        metrics.ONLINE.inc(sum(sent))
        rows = []
        for (i, _, ttl), page, online in zip(walked, pages, sent, strict=True):
            count = len(page.registrationIds)
            if count:
                offline = count - online if ttl > 0 else 0
                rows.append(
                    PushGrid.StatsRow(tasks[i].msg_id, _page_key(0), PushGrid.StatsDelta(count, online, offline))
                )
        if rows:
            self._db.recordStatsMany(rows)
        ended = [(i, page) for (i, _, _), page in zip(walked, pages, strict=True) if page.done]
        partial = [(i, page) for (i, _, _), page in zip(walked, pages, strict=True) if not page.done]
        self._mailbox.save_checkpoint_many(
            [
                (
                    tasks[i].msg_id,
                    {
                        **Checkpoint(started=self._clock())
                        .after_page(page.cursor, len(page.registrationIds), False)
                        .to_fields(),
                        "owner": self._owner,
                    },
                    tasks[i].expires_at,
                )
                for i, page in partial
            ]
        )
        if ended:
            self._note_lost_data([tasks[i] for i, _ in ended])
            moves = [PushGrid.Transition(tasks[i].app_key, tasks[i].msg_id, S.Dispatching, S.Done) for i, _ in ended]
            self._db.transitionMessages(moves)
            for i, _ in ended:
                out[i] = DONE
                finals.append(tasks[i])

    # ------------------------------------------------------------ state

    def _claim(self, task: Task) -> Outcome | None:
        """Moves the message to Dispatching (None: go on), or says why the task is skipped."""
        for _ in range(CLAIM_ATTEMPTS):
            record = self._db.getMessage(task.app_key, task.msg_id)
            state = record.state
            if state not in lifecycle.RUNNABLE:
                return skipped(state)
            if self._expire(task, state):
                return SKIPPED_EXPIRED
            if state == S.Scheduled and record.sendAt > self._clock():
                return NOT_DUE
            if state == S.Dispatching or self._db.transitionMessage(task.app_key, task.msg_id, state, S.Dispatching):
                return None
        return UNSETTLED

    def _expire(self, task: Task, state: PushGrid.MessageState) -> bool:
        """If the message's time to live is over, moves it from state to Expired and says so.

        time_to_live 0 means online only, not expired: whoever is online when it goes out gets it.
        """
        if validation.ttl_seconds(task.request.options) <= 0 or self._clock() < task.expires_at:
            return False
        self._db.transitionMessage(task.app_key, task.msg_id, state, S.Expired)
        return True

    def _still_running(self, task: Task) -> Outcome | None:
        """Between pages: None to go on, or why to stop (overridden meanwhile, or expired)."""
        state = self._db.getMessage(task.app_key, task.msg_id).state
        if state != S.Dispatching:
            return stopped(state)
        if self._expire(task, state):
            return STOPPED_EXPIRED
        return None

    def _note_lost_data(self, tasks: Sequence[Task]) -> None:
        """Before messages move to Done: if Redis lost data, their reports say devices may have
        been missed (noted first, so a crash in between leaves the note, never a bare Done)."""
        missing = self._data_lost()
        if missing:
            error = canaries.lost_data_error(missing)
            for task in tasks:
                self._db.noteMessageError(task.app_key, task.msg_id, error)

    def _end(self, task: Task, outcome: Outcome) -> Outcome:
        """Marks a task with nothing left to do done, so a duplicate of it is skipped at once."""
        if outcome.final:
            self._finish(task)
        return outcome

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

    def _targeted(self, task: Task, stored: Stored, ttl: int, cp: Checkpoint, stop: threading.Event) -> Outcome | None:
        """Resolves and sends page by page from the checkpoint; None once every page is sent, or
        why it stopped early."""
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
                stop_early = self._still_running(task)
                if stop_early is not None:
                    return stop_early
            first = False
            page = self._tagalias.resolve(task.app_key, req.audience, req.platforms, cp.cursor, self._page_size)
            rids = list(page.registrationIds)
            if rids:
                if ttl > 0:
                    self._mailbox.enqueue(stored, rids)
                sent = self._delivery.deliver(self._envelope(task, stored, ttl, 0), rids)
                metrics.TARGETS.inc(len(rids))
                metrics.ONLINE.inc(sent)
                self._db.recordStats(
                    task.msg_id,
                    _page_key(cp.page),
                    PushGrid.StatsDelta(
                        targets=len(rids), sentOnline=sent, storedOffline=len(rids) - sent if ttl > 0 else 0
                    ),
                )
            metrics.PAGES.inc()
            cp = cp.after_page(page.cursor, len(rids), page.done)
            self._save(task, cp)
        return None

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
