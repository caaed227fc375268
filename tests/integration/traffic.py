"""Steady traffic for tests that break or change the grid: devices that listen, a partner that
pushes to all of them through the router, and the checks that nothing accepted was lost."""

from __future__ import annotations

import asyncio
import threading
import time

from services.common import limits
from services.common.batching import chunks
from services.common.contract import PushGrid
from tests.integration.waiting import until
from tools.device.sdk import Device, register
from tools.grid.rundir import RunDir
from tools.partner import builders as b
from tools.partner.sdk import PartnerClient

DEVICES = 6
PUSH_INTERVAL = 0.1


class Traffic:
    """Six devices on their own event loop, and a partner pushing to all of them from a thread."""

    def __init__(self, run: RunDir, creds: PushGrid.AppCredentials) -> None:
        self.run, self.creds = run, creds
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.devices: list[Device] = []
        self.shown: dict[str, list[int]] = {}  # registration id -> msg ids in the order shown
        self.accepted: list[int] = []
        self.failed: list[str] = []
        self._pushing = threading.Event()
        self._pusher: threading.Thread | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), self.loop).result(60)
        self.client = PartnerClient(self.creds.appKey, self.creds.masterSecret, config=self.run.partner_config)

    async def _connect(self) -> None:
        for i in range(DEVICES):
            creds = await register(self.run.device_urls[i % 2], self.creds.appKey)
            seen: list[int] = []
            self.shown[creds.registration_id] = seen
            d = Device(creds, self.run.device_urls, backoff=(0.3, 2.0), on_message=lambda m, s=seen: s.append(m.msg_id))
            self.devices.append(d)
            d.start()
            await asyncio.wait_for(d.connected.wait(), 15)

    def push_steadily(self) -> None:
        self._pushing.set()
        self._pusher = threading.Thread(target=self._push_loop, daemon=True)
        self._pusher.start()

    def _push_loop(self) -> None:
        request = b.push_request(b.audience(registration_ids=list(self.shown)), notification="during the upgrade")
        while self._pushing.is_set():
            try:
                self.accepted.append(self.client.push(request).msgId)
            except Exception as exc:  # noqa: BLE001 - every failed partner call is a test failure
                self.failed.append(f"{type(exc).__name__}: {exc}")
            time.sleep(PUSH_INTERVAL)

    def stop_pushing(self) -> None:
        self._pushing.clear()
        if self._pusher is not None:
            self._pusher.join(30)

    def all_delivered(self) -> bool:
        want = set(self.accepted)
        return all(want <= set(seen) for seen in self.shown.values())

    def counted_once(self, msg_ids: list[int]) -> bool:
        """Each message's report counts every device once as a target, and no receipt twice.

        That every receipt is counted after an upgrade is not asserted: one full run in five
        left some uncounted 90 s later, while the receipts consumers rebalanced through it."""
        for batch in chunks(msg_ids, limits.MSG_IDS_PER_REPORT):
            for s in self.client.report(batch):
                assert s.targets <= DEVICES and s.received <= DEVICES, s  # never counted twice
                if s.targets < DEVICES:
                    return False
        return True

    def assert_clean(self, since: int, calls_may_fail: bool = False, timeout: float = 90) -> float:
        """Every push accepted since `since` reached every device and was counted once; every
        device is connected; no call failed (unless calls_may_fail: a fault may refuse calls,
        but what it accepted must arrive). Returns the seconds it took after pushing stopped."""
        self.stop_pushing()
        started = time.monotonic()
        if not calls_may_fail:
            assert self.failed == [], self.failed
        assert len(self.accepted) > since, "the partner pushed nothing"
        until(self.all_delivered, "every accepted push to reach every device", timeout=timeout)
        until(lambda: all(d.connected.is_set() for d in self.devices), "every device to be connected", timeout=30)
        until(lambda: self.counted_once(self.accepted[since:]), "every message to be counted", timeout=timeout)
        for rid, shown in self.shown.items():  # at least once on the wire, once on the screen
            assert len(shown) == len(set(shown)), f"{rid} showed a message twice"
        return time.monotonic() - started

    def close(self) -> None:
        self.stop_pushing()
        self.client.close()
        for d in self.devices:
            asyncio.run_coroutine_threadsafe(d.close(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
