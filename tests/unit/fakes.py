"""What unit tests of several services share: the test apps, an in-memory Mailbox, and a
reading of this process's metrics.

The Mailbox is the one state both STC and the dispatchers write (services/common/mailbox.py),
so one fake serves both sides: what a dispatcher stores and queues is what STC replays.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY

from services.common.mailbox import Stored

APP = "0123456789abcdef01234567"
OTHER_APP = "76543210fedcba9876543210"


def sample(name: str, **labels: str) -> float:
    """A sample of this process's metrics as a server would serve it (0 if never counted)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FakeMailbox:
    """Presence, queues, stored messages, broadcast logs, marks and checkpoints in dicts
    (thread-safe: STC's engine calls it from its pool)."""

    def __init__(self, online: Mapping[str, str] | None = None) -> None:
        self.lock = threading.Lock()
        self.presence: dict[str, str] = dict(online or {})  # rid -> STC id
        self.queues: dict[str, dict[int, int]] = {}  # rid -> msg id -> expiry
        self.messages: dict[int, Stored] = {}
        self.broadcast_log: dict[str, list[int]] = {}
        self.marks: dict[str, int] = {}
        self.checkpoints: dict[int, dict[str, str]] = {}

    # ---- presence

    def set_online(self, rids: Sequence[str], stc_id: str, ttl_seconds: int) -> None:
        with self.lock:
            for rid in rids:
                self.presence[rid] = stc_id

    def set_offline_many(self, rids: Sequence[str], stc_id: str) -> None:
        with self.lock:
            for rid in rids:
                if self.presence.get(rid) == stc_id:
                    del self.presence[rid]

    def refresh_online(self, rids: Sequence[str], stc_id: str, ttl_seconds: int) -> list[str]:
        with self.lock:
            taken = [r for r in rids if self.presence.get(r, stc_id) != stc_id]
            for r in rids:
                self.presence.setdefault(r, stc_id)
            return taken

    def where(self, rids: Iterable[str]) -> dict[str, str]:
        with self.lock:
            return {r: self.presence[r] for r in rids if r in self.presence}

    # ---- messages, queues and broadcast logs (a dispatcher writes, STC reads)

    def store(self, msg: Stored) -> None:
        self.store_many([msg])

    def store_many(self, msgs: Sequence[Stored]) -> None:
        with self.lock:
            for msg in msgs:
                self.messages[msg.msg_id] = msg

    def forget(self, msg_id: int) -> None:
        with self.lock:
            self.messages.pop(msg_id, None)

    def enqueue(self, msg: Stored, rids: Iterable[str]) -> int:
        return self.enqueue_many([(msg, rids)])

    def enqueue_many(self, items: Sequence[tuple[Stored, Iterable[str]]]) -> int:
        count = 0
        with self.lock:
            for msg, rids in items:
                for rid in rids:
                    queue = self.queues.setdefault(rid, {})
                    queue[msg.msg_id] = msg.expires_at
                    queue.pop(msg.override_msg_id, None)
                    count += 1
        return count

    def log_broadcast(self, app: str, msg: Stored, now_ms: int) -> None:
        with self.lock:
            log = self.broadcast_log.setdefault(app, [])
            if msg.msg_id not in log:
                log.append(msg.msg_id)

    def missed(self, rids: Sequence[str], now_ms: int) -> dict[str, tuple[list[int], int]]:
        with self.lock:
            return {
                rid: (
                    [m for m, exp in sorted(self.queues.get(rid, {}).items(), key=lambda kv: kv[1]) if exp >= now_ms],
                    self.marks.get(rid, 0),
                )
                for rid in rids
            }

    def load(self, msg_ids: Sequence[int]) -> dict[int, Stored]:
        with self.lock:
            return {m: self.messages[m] for m in msg_ids if m in self.messages}

    def broadcasts_after(self, app: str, after_msg_id: int) -> list[int]:
        with self.lock:
            return [m for m in sorted(self.broadcast_log.get(app, [])) if m > after_msg_id]

    # ---- acks

    def ack_many(self, acks: Mapping[str, Sequence[int]]) -> None:
        with self.lock:
            for rid, ids in acks.items():
                for m in ids:
                    self.queues.get(rid, {}).pop(m, None)

    def ack_broadcasts(self, marks: Mapping[str, int]) -> None:
        with self.lock:
            for rid, m in marks.items():
                self.marks[rid] = max(self.marks.get(rid, 0), m)

    # ---- dispatch checkpoints

    def checkpoint(self, msg_id: int) -> dict[str, str]:
        return self.checkpoint_many([msg_id])[0]

    def checkpoint_many(self, msg_ids: Sequence[int]) -> list[dict[str, str]]:
        with self.lock:
            return [dict(self.checkpoints.get(m, {})) for m in msg_ids]

    def save_checkpoint(self, msg_id: int, fields: dict[str, Any], expires_at_ms: int) -> None:
        self.save_checkpoint_many([(msg_id, fields, expires_at_ms)])

    def save_checkpoint_many(self, saves: Sequence[tuple[int, Mapping[str, Any], int]]) -> None:
        with self.lock:
            for msg_id, fields, _ in saves:
                self.checkpoints.setdefault(msg_id, {}).update({k: str(v) for k, v in fields.items()})

    # ---- shortcuts for STC tests: what a dispatcher would have written

    def queue(self, rid: str, msg: Stored) -> None:
        self.store(msg)
        self.enqueue(msg, [rid])

    def log(self, app: str, msg: Stored) -> None:
        self.store(msg)
        self.log_broadcast(app, msg, 0)
