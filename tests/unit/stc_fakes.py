"""In-memory stand-ins for what the STC engine talks to (unit tests only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.stc import protocol
from services.stc.engine import Device
from tests.unit.fakes import APP, OTHER_APP


class FakeDirectory:
    """Devices by registration id; token "good" verifies."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.touched: list[tuple[str, list[str], int]] = []
        self.verify_calls: list[int] = []  # hellos per verify call
        self._n = 0

    def add(self, rid: str, app: str = APP, platform: str = "android", created_at: int = 0) -> Device:
        self.devices[rid] = Device(app, rid, platform, created_at)
        return self.devices[rid]

    def register(self, app_key: str, platform: str, count: int) -> list[tuple[str, str]]:
        if app_key not in (APP, OTHER_APP):
            raise protocol.AuthFailed("unknown app")
        out = []
        for _ in range(count):
            self._n += 1
            self.add(f"new{self._n}", app_key, platform)
            out.append((f"new{self._n}", "good"))
        return out

    def verify(self, hellos: Sequence[protocol.Hello]) -> list[Device | None]:
        self.verify_calls.append(len(hellos))
        out: list[Device | None] = []
        for h in hellos:
            d = self.devices.get(h.registration_id)
            out.append(d if d is not None and d.app_key == h.app_key and h.device_token == "good" else None)
        return out

    def touch(self, app_key: str, registration_ids: Sequence[str], seen_at: int) -> None:
        self.touched.append((app_key, list(registration_ids), seen_at))


class FakeReceipts:
    def __init__(self) -> None:
        self.records: list[tuple[str, list[list[Any]]]] = []
        self.flushed = 0

    def publish(self, app_key: str, receipts: list[list[Any]]) -> None:
        self.records.append((app_key, receipts))

    def acked(self) -> list[tuple[str, int, str]]:
        """Every (app, msg id, registration id) published, in order."""
        return [(app, m, rid) for app, groups in self.records for m, rids in groups for rid in rids]

    def flush(self) -> None:
        self.flushed += 1


class FakeConn:
    """What a transport connection does for the engine: collects frames and the close code."""

    def __init__(self, accept: bool = True) -> None:
        self.frames: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.accept = accept

    def send(self, frame: str | bytes) -> bool:
        if self.closed is not None or not self.accept:
            return False
        self.frames.append(frame.decode() if isinstance(frame, bytes) else frame)  # bytes are UTF-8 text
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
