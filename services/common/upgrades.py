"""An upgrade's progress where the console can see it: one small record in Redis.

The grid already says which release each server runs (its PushGrid.Release); what only the
rollout knows is where it is going, in which order, and which step each server is at. The
rollout (patch/rollout.py, run from an operator's machine) writes that here at every step, and
the console (services/console, on a node) reads it: Redis is what both reach. One owner, this
module; one writer at a time, the rollout (run/upgrade.json keeps a second from starting
elsewhere on the same run directory).

The record is a JSON value rewritten whole at each step (a few hundred bytes), kept a week after
its last write. Redis failing never fails an upgrade: the writer logs and goes on, and the
console then shows the servers' releases only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from services.common.backends import REDIS
from services.common.clock import now_ms

log = logging.getLogger(__name__)

KEY = "pg:upgrade"
KEEP_SECONDS = 7 * 86400

# a server's steps, in order (rollout._replace); failed ends it
PENDING, STOPPING, PATCHING, STARTING, DONE, FAILED = "pending", "stopping", "patching", "starting", "done", "failed"
STEPS = (PENDING, STOPPING, PATCHING, STARTING, DONE, FAILED)
# the whole upgrade
UPGRADING, ROLLING_BACK, FINISHED, STOPPED = "upgrading", "rolling back", "finished", "stopped"
PHASES = (UPGRADING, ROLLING_BACK, FINISHED, STOPPED)


@dataclass
class Progress:
    """Where an upgrade is: its target and the release before, its phase (and what it last said),
    and each server's step, in the order the rollout takes them."""

    target: str
    previous: str
    phase: str = UPGRADING
    note: str = ""
    servers: dict[str, str] = field(default_factory=dict)  # server id -> step
    started_at: int = 0  # ms since the epoch
    updated_at: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Progress | None:
        """The record, or None if there is none or it is not one (never raises)."""
        if not text:
            return None
        try:
            d = json.loads(text)
            servers = {str(k): str(v) for k, v in d["servers"].items() if v in STEPS}
            return cls(
                target=str(d["target"]),
                previous=str(d["previous"]),
                phase=str(d["phase"]) if d["phase"] in PHASES else STOPPED,
                note=str(d.get("note", "")),
                servers=servers,
                started_at=int(d["started_at"]),
                updated_at=int(d["updated_at"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class Recorder:
    """The rollout's side: keeps the record in memory and writes it whole at every change."""

    def __init__(self, redis: Callable[[], Any], clock: Callable[[], int] = now_ms) -> None:
        self._redis = redis
        self._clock = clock
        self.progress: Progress | None = None

    def begin(self, target: str, previous: str, servers: Sequence[str], phase: str = UPGRADING) -> None:
        """A new run (or the rollback of one) over servers, every one pending."""
        now = self._clock()
        self.progress = Progress(target, previous, phase, "", dict.fromkeys(servers, PENDING), now, now)
        self._write()

    def step(self, server_id: str, step: str) -> None:
        if self.progress is not None:
            self.progress.servers[server_id] = step
            self._write()

    def phase(self, phase: str, note: str = "") -> None:
        if self.progress is not None:
            self.progress.phase, self.progress.note = phase, note
            self._write()

    def _write(self) -> None:
        assert self.progress is not None
        self.progress.updated_at = self._clock()
        try:
            self._redis().set(KEY, self.progress.to_json(), ex=KEEP_SECONDS)
        except REDIS.errors as exc:  # the upgrade goes on; the console shows releases only
            log.warning("upgrade progress not recorded in Redis: %r", exc)


def read(redis: Any) -> Progress | None:
    """The last upgrade's record (it stays a week), or None. Redis errors reach the caller."""
    return Progress.from_json(redis.get(KEY))
