"""Steady traffic for tests that break or change the grid: devices that listen, a partner that
pushes to all of them through the router, and the checks that nothing accepted was lost.

With churn (the fault suite), the load is mixed: pushes go by registration id and by tag in
turn (a tag push walks the audience in TagAlias), a second partner session keeps changing the
listening devices' tags, and other devices keep connecting and leaving. Only the listening
devices are checked; what churn cannot do while a fault lasts is counted, not failed."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable

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
STEADY_TAG = "steady"  # every listening device has it; tag pushes go to it
FLIP_TAG = "flip"  # added to and taken from listening devices while pushes flow
CHURN_DEVICES = 3  # devices that connect and leave, in turn
CHURN_INTERVAL = 0.4
LOAD_SECONDS = 3.0  # under_fault: pushes flow this long before the fault, and again after it


class Traffic:
    """Six devices on their own event loop, and a partner pushing to all of them from a thread."""

    def __init__(
        self,
        run: RunDir,
        creds: PushGrid.AppCredentials,
        churn: bool = False,
        urls: list[str] | None = None,
        push_interval: float = PUSH_INTERVAL,
    ) -> None:
        self.run, self.creds, self.churn, self.push_interval = run, creds, churn, push_interval
        self.urls = urls or list(run.device_urls)  # listening device i starts at urls[i % len(urls)]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.devices: list[Device] = []
        self.shown: dict[str, list[int]] = {}  # registration id -> msg ids in the order shown
        self.accepted: list[int] = []
        self.call_seconds: list[float] = []  # how long each partner push took, answered or refused
        self.failed: list[str] = []
        self.churned = 0  # churn steps done (a connect and leave, or a tag change)
        self.churn_failed: list[str] = []
        self._pushing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._churn: asyncio.Future[None] | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), self.loop).result(60)
        self.client = PartnerClient(self.creds.appKey, self.creds.masterSecret, config=self.run.partner_config)
        if self.churn:
            self.tagger = PartnerClient(self.creds.appKey, self.creds.masterSecret, config=self.run.partner_config)
            for rid in self.shown:
                self.client.add_tags(rid, [STEADY_TAG])

    async def _connect(self) -> None:
        for i in range(DEVICES):
            creds = await register(self.urls[i % len(self.urls)], self.creds.appKey)
            seen: list[int] = []
            self.shown[creds.registration_id] = seen
            urls = self.urls[i % len(self.urls) :] + self.urls[: i % len(self.urls)]
            d = Device(creds, urls, backoff=(0.3, 2.0), on_message=lambda m, s=seen: s.append(m.msg_id))
            self.devices.append(d)
            d.start()
            await asyncio.wait_for(d.connected.wait(), 15)
        if self.churn:
            self.churners = [
                await register(self.urls[i % len(self.urls)], self.creds.appKey) for i in range(CHURN_DEVICES)
            ]

    def push_steadily(self) -> None:
        """Pushes (and, with churn, changes tags and connects devices) until stop_pushing()."""
        self._pushing.set()
        loops = [self._push_loop] + ([self._tag_loop] if self.churn else [])
        self._threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
        for t in self._threads:
            t.start()
        if self.churn:
            self._churn = asyncio.run_coroutine_threadsafe(self._churn_loop(), self.loop)

    def _push_loop(self) -> None:
        by_id = b.push_request(b.audience(registration_ids=list(self.shown)), notification="to each device")
        by_tag = b.push_request(b.audience(tags=[STEADY_TAG]), notification="to the tag")
        for turn in itertools.count():
            if not self._pushing.is_set():
                return
            request = by_tag if self.churn and turn % 2 else by_id
            started = time.monotonic()
            try:
                self.accepted.append(self.client.push(request).msgId)
            except Exception as exc:  # noqa: BLE001 - every failed partner call is a test failure
                self.failed.append(f"{type(exc).__name__}: {exc}")
            self.call_seconds.append(time.monotonic() - started)
            time.sleep(self.push_interval)

    def _tag_loop(self) -> None:
        """Flips a tag on the listening devices, one at a time (their STEADY_TAG stays)."""
        rids = list(self.shown)
        while self._pushing.is_set():
            rid = random.choice(rids)
            try:
                if FLIP_TAG in self.tagger.get_tags(rid):
                    self.tagger.remove_tags(rid, [FLIP_TAG])
                else:
                    self.tagger.add_tags(rid, [FLIP_TAG])
                self.churned += 1
            except Exception as exc:  # noqa: BLE001 - a fault may refuse it; counted
                self.churn_failed.append(f"tags: {type(exc).__name__}: {exc}")
            time.sleep(CHURN_INTERVAL)

    async def _churn_loop(self) -> None:
        """Connects a churn device, lets it settle, and takes it away again, one after another."""
        for creds in itertools.cycle(self.churners):
            if not self._pushing.is_set():
                return
            d = Device(creds, self.urls, backoff=(0.3, 2.0))
            d.start()
            try:
                await asyncio.wait_for(d.connected.wait(), 5)
                self.churned += 1
            except TimeoutError:
                self.churn_failed.append(f"{creds.registration_id} did not connect in 5 s")
            finally:
                await d.close()
            await asyncio.sleep(CHURN_INTERVAL)

    def stop_pushing(self) -> None:
        self._pushing.clear()
        for t in self._threads:
            t.join(30)
        if self._churn is not None:
            self._churn.result(30)
            self._churn = None

    def all_delivered(self) -> bool:
        want = set(self.accepted)
        return all(want <= set(seen) for seen in self.shown.values())

    def missing(self) -> str:
        """Which listening devices lack which accepted pushes, and where each device is."""
        want = set(self.accepted)
        return "; ".join(
            f"{d.creds.registration_id} on {d.stc or '?'} (connected: {d.connected.is_set()}) lacks "
            f"{sorted(want - set(self.shown[d.creds.registration_id]))[:5]}"
            f" ({len(want - set(self.shown[d.creds.registration_id]))} in all)"
            for d in self.devices
            if want - set(self.shown[d.creds.registration_id])
        )

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
        try:
            until(self.all_delivered, "every accepted push to reach every device", timeout=timeout)
        except AssertionError as late:
            raise AssertionError(f"{late}: {self.missing()}") from None
        until(lambda: all(d.connected.is_set() for d in self.devices), "every device to be connected", timeout=30)
        until(lambda: self.counted_once(self.accepted[since:]), "every message to be counted", timeout=timeout)
        for rid, shown in self.shown.items():  # at least once on the wire, once on the screen
            assert len(shown) == len(set(shown)), f"{rid} showed a message twice"
        return time.monotonic() - started

    def under_fault(self, fault: Callable[[], None], what: str, timeout: float = 90) -> None:
        """Pushes steadily, does fault, pushes on, then checks that nothing accepted was lost and
        prints how long the grid took to deliver everything after the fault began."""
        since, calls_since = len(self.accepted), len(self.call_seconds)
        self.push_steadily()
        time.sleep(LOAD_SECONDS)
        started = time.monotonic()
        fault()
        time.sleep(LOAD_SECONDS)
        self.assert_clean(since, calls_may_fail=True, timeout=timeout)
        print(
            f"\n{what}: {len(self.accepted) - since} pushes accepted, all delivered once and counted "
            f"{time.monotonic() - started:.1f} s after the fault began ({LOAD_SECONDS:g} s of pushing on "
            f"included); {len(self.failed)} partner calls refused so far; {self.churned} tag changes and "
            f"device visits, {len(self.churn_failed)} of them refused; slowest push call "
            f"{max(self.call_seconds[calls_since:], default=0):.1f} s"
        )

    def close(self) -> None:
        self.stop_pushing()
        self.client.close()
        if self.churn:
            self.tagger.close()
        for d in self.devices:
            asyncio.run_coroutine_threadsafe(d.close(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
