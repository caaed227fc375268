"""Headless Chromium for the tests of web pages (the web device, the console), driven over its
DevTools protocol with the websockets library the project already has: no Playwright, no
downloaded browser (Debian's /usr/bin/chromium, which tools/bootstrap.sh installs)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.integration.waiting import until_async as until

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
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class DevToolsError(Exception):
    """Chromium answered a DevTools command with an error."""


class Page:
    """One page over the DevTools protocol: commands, and JavaScript evaluated to its value."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One DevTools command's result (events arriving meanwhile are skipped)."""
        call_id = next(self._ids)
        await self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        while True:
            reply = json.loads(await self._ws.recv())
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    async def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited)."""
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> bytes:
        """A PNG of the whole page (beyond the window too), written to path and returned."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = await self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            },
        )
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data


def _page_target(port: int, url: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
        targets = json.load(r)
    return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page" and t["url"].startswith(url))


@asynccontextmanager
async def chromium(url: str, *flags: str) -> AsyncIterator[Page]:
    """Headless Chromium showing url; stopped and its profile removed afterwards."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed (tools/bootstrap.sh installs it)"
    profile = tempfile.mkdtemp(prefix="pushgrid-chromium-")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}", url],
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
        async with connect(target, max_size=2**26) as ws:
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
    """Polls a JavaScript expression until it is truthy, and returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = await page.eval(expression)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what} ({expression})"
        await asyncio.sleep(0.1)
