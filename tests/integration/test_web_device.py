"""The web device page in headless Chromium: served by STC, it registers, connects, shows a
message delivered over Ice and acknowledges it. Chromium is driven over its DevTools protocol
with the websockets library the project already has."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.ice import stc
from services.common.mailbox import Mailbox, Stored
from services.common.redis_client import cluster
from tests.integration.test_stc import IDS, envelope, frame
from tests.integration.waiting import until_async as until

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


class Page:
    """One page over the DevTools protocol: evaluates JavaScript and returns the value."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def eval(self, expression: str) -> Any:
        call_id = next(self._ids)
        await self._ws.send(
            json.dumps(
                {
                    "id": call_id,
                    "method": "Runtime.evaluate",
                    "params": {"expression": expression, "returnByValue": True},
                }
            )
        )
        while True:
            reply = json.loads(await self._ws.recv())
            if reply.get("id") == call_id:
                return reply["result"]["result"].get("value")


def _page_target(port: int, url: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
        targets = json.load(r)
    return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page" and t["url"].startswith(url))


@asynccontextmanager
async def chromium(url: str) -> AsyncIterator[Page]:
    """Headless Chromium showing url; stopped and its profile removed afterwards."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed (tools/bootstrap.sh installs it)"
    profile = tempfile.mkdtemp(prefix="pushgrid-chromium-")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        await until(
            lambda: os.path.exists(port_file) and open(port_file).read().count("\n") >= 1,
            "Chromium's DevTools port",
            timeout=30,
        )
        port = int(open(port_file).read().split()[0])
        target = ""
        deadline = time.monotonic() + 20
        while not target:
            try:
                target = await asyncio.to_thread(_page_target, port, url.split("?")[0])
            except (StopIteration, OSError):
                assert time.monotonic() < deadline, "Chromium opened no page"
                await asyncio.sleep(0.2)
        async with connect(target, max_size=2**24) as ws:
            yield Page(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def until_js(page: Page, expression: str, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await page.eval(expression)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what} ({expression})"
        await asyncio.sleep(0.1)


def test_web_device_registers_shows_and_acks(grid, communicator, dbagent, redis_settings) -> None:
    app = dbagent.createApp("web-" + uuid.uuid4().hex[:8], 0).appKey
    mailbox = Mailbox(cluster(redis_settings))
    page_url = grid.device_urls[0].replace("ws://", "http://").replace("/v1/device", "/") + "?app_key=" + app

    async def t() -> None:
        async with chromium(page_url) as page:
            await until_js(page, "document.getElementById('status').textContent === 'connected'", "the page to connect")
            rid = await page.eval("document.getElementById('rid').textContent")
            stc_id = await page.eval("document.getElementById('stc').textContent")
            assert dbagent.getDevice(app, rid).platform == PushGrid.Platform.Web
            assert (
                json.loads(await page.eval(f"localStorage.getItem('pushgrid.device.{app}')"))["registration_id"] == rid
            )

            msg_id = IDS.next()  # above 2**53: the page must not round it
            assert msg_id > 2**53
            msg = Stored(msg_id, frame(msg_id, "hello browser"), (), now_ms() + 600_000)
            mailbox.store(msg)
            mailbox.enqueue(msg, [rid])
            sent = await asyncio.to_thread(
                stc(communicator, stc_id).deliver, envelope(msg_id, app, "hello browser"), [rid]
            )
            assert sent == [rid]
            li = f"document.querySelector('#messages li[data-msg-id=\"{msg_id}\"]')"
            await until_js(page, f"{li} && {li}.dataset.acked === '1'", "the message to be shown and acked")
            assert "hello browser" in await page.eval(f"{li}.textContent")
            await until(lambda: mailbox.pending(rid, now_ms()) == [], "the ack to reach STC")

    asyncio.run(t())
