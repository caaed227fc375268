"""In-memory stand-ins for what the STC engine talks to (unit tests only)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from services.common.mailbox import Stored
from services.stc import protocol
from services.stc.engine import Device

APP = "0123456789abcdef01234567"
OTHER_APP = "76543210fedcba9876543210"


class FakeDirectory:
    """Devices by registration id; token "good" verifies."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.touched: list[tuple[str, list[str], int]] = []
        self._n = 0

    def add(self, rid: str, app: str = APP, platform: str = "android", created_at: int = 0) -> Device:
        self.devices[rid] = Device(app, rid, platform, created_at)
        return self.devices[rid]

    def register(self, app_key: str, platform: str) -> tuple[str, str]:
        if app_key not in (APP, OTHER_APP):
            raise protocol.AuthFailed("unknown app")
        self._n += 1
        self.add(f"new{self._n}", app_key, platform)
        return f"new{self._n}", "good"

    def verify(self, app_key: str, registration_id: str, device_token: str) -> Device:
        d = self.devices.get(registration_id)
        if d is None or d.app_key != app_key or device_token != "good":
            raise protocol.AuthFailed("authentication failed")
        return d

    def touch(self, app_key: str, registration_ids: Sequence[str], seen_at: int) -> None:
        self.touched.append((app_key, list(registration_ids), seen_at))


class FakeMailbox:
    """The Mailbox calls STC makes, over dicts (thread-safe: the engine calls from its pool)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.presence: dict[str, str] = {}
        self.queues: dict[str, dict[int, int]] = {}  # rid -> msg id -> expiry
        self.messages: dict[int, Stored] = {}
        self.broadcast_log: dict[str, list[int]] = {}
        self.marks: dict[str, int] = {}

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

    def pending(self, rid: str, now_ms: int) -> list[int]:
        with self.lock:
            return [m for m, exp in sorted(self.queues.get(rid, {}).items(), key=lambda kv: kv[1]) if exp >= now_ms]

    def load(self, msg_ids: Sequence[int]) -> dict[int, Stored]:
        with self.lock:
            return {m: self.messages[m] for m in msg_ids if m in self.messages}

    def broadcasts_after(self, app: str, after_msg_id: int) -> list[int]:
        with self.lock:
            return [m for m in sorted(self.broadcast_log.get(app, [])) if m > after_msg_id]

    def last_broadcast(self, rid: str) -> int:
        with self.lock:
            return self.marks.get(rid, 0)

    def ack_many(self, acks: Mapping[str, Sequence[int]]) -> None:
        with self.lock:
            for rid, ids in acks.items():
                for m in ids:
                    self.queues.get(rid, {}).pop(m, None)

    def ack_broadcasts(self, marks: Mapping[str, int]) -> None:
        with self.lock:
            for rid, m in marks.items():
                self.marks[rid] = max(self.marks.get(rid, 0), m)

    # ---- what a dispatcher would have written

    def queue(self, rid: str, msg: Stored) -> None:
        self.messages[msg.msg_id] = msg
        self.queues.setdefault(rid, {})[msg.msg_id] = msg.expires_at

    def log(self, app: str, msg: Stored) -> None:
        self.messages[msg.msg_id] = msg
        self.broadcast_log.setdefault(app, []).append(msg.msg_id)


class FakeReceipts:
    def __init__(self) -> None:
        self.records: list[tuple[str, list[list[Any]]]] = []
        self.flushed = 0

    def publish(self, app_key: str, acks: list[list[Any]]) -> None:
        self.records.append((app_key, acks))

    def flush(self) -> None:
        self.flushed += 1


class FakeConn:
    """What a transport connection does for the engine: collects frames and the close code."""

    def __init__(self, accept: bool = True) -> None:
        self.frames: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.accept = accept

    def send(self, frame: str) -> bool:
        if self.closed is not None or not self.accept:
            return False
        self.frames.append(frame)
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
