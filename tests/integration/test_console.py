"""The operators' console in headless Chromium (tests/integration/chromium.py), against the
whole grid: the login is IceGrid's admin login, and once in, the page shows every server, live
charts that move with a real push, that push's report and delivery curve, and the releases.

PUSHGRID_SAVE_SCREENSHOT=1 also saves the last screenshot as tools/results/console.png (the
README's); otherwise screenshots stay in the test's own temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from patch.distribution import IcePatch2Distribution
from services.common import paths
from services.common.contract import PushGrid
from tests.integration.chromium import PNG_MAGIC, Page, chromium, until_js
from tests.integration.test_delivery_e2e import Phones
from tests.integration.waiting import until_async as until
from tools.grid import icegrid
from tools.grid.rundir import RunDir
from tools.partner import builders as b

pytestmark = pytest.mark.integration

SAVE_ENV = "PUSHGRID_SAVE_SCREENSHOT"
README_SCREENSHOT = paths.ROOT / "tools" / "results" / "console.png"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def _shot(page: Page, path: Path) -> None:
    data = await page.screenshot(path)
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000, path


async def _login(page: Page, password: str) -> None:
    await page.eval(
        f"document.getElementById('login-user').value = 'admin';"
        f"document.getElementById('login-password').value = {json.dumps(password)};"
        "document.getElementById('login-submit').click()"
    )


def test_the_console_shows_the_grid_a_push_and_the_releases(grid: RunDir, app: str, push, tmp_path: Path) -> None:
    url = icegrid.status(grid)["console"]
    assert url == f"http://{grid.internal_host}:{grid.ports['console']}/"
    assert _status(url + "api/grid") == 401  # no session: no data
    servers = {s["id"]: s for s in icegrid.status(grid)["servers"]}
    published = IcePatch2Distribution(grid.patch_data).published()

    async def t() -> None:
        async with chromium(url, "--window-size=1280,1600") as page:
            # no credentials: the login, and the API answers 401
            await until_js(page, "!document.getElementById('login').hidden", "the login form")
            assert await page.eval("document.getElementById('main').hidden")
            for path in ("/api/grid", "/api/charts", "/api/upgrade", "/api/message?id=1"):
                assert await page.eval(f"fetch('{path}').then(r => r.status)") == 401, path
            await _shot(page, tmp_path / "login.png")

            # a wrong password is refused
            await _login(page, "not the password")
            refused = await until_js(page, "document.getElementById('login-error').textContent", "the refusal")
            assert "wrong user or password" in refused
            assert await page.eval("document.getElementById('main').hidden")
            assert await page.eval("fetch('/api/grid').then(r => r.status)") == 401
            await _shot(page, tmp_path / "refused.png")

            # the right one logs in; the grid panel lists every server with its state
            await _login(page, grid.secrets["admin"])
            await until_js(page, "!document.getElementById('main').hidden", "the console after login")
            rows = "[...document.querySelectorAll('#servers tr')].map(r => [r.dataset.server, r.dataset.state])"
            await until_js(page, f"{rows}.length === {len(servers)}", "every server in the grid panel")
            assert dict(await page.eval(rows)) == {sid: s["state"] for sid, s in servers.items()}
            assert set(dict(await page.eval(rows)).values()) == {"Active"}
            assert await page.eval("document.querySelectorAll('#nodes tr').length") == 2

            # a real push to a connected device moves the charts
            count = "Number(document.querySelector('#chart-connections polyline').dataset.count)"
            await until_js(page, f"document.querySelector('#chart-connections polyline') && {count} >= 2", "samples")
            phones = Phones(grid, app)
            try:
                device = await phones.new()
                rid = device.creds.registration_id
                request = b.push_request(
                    b.audience(registration_ids=[rid]), notification="console", options=b.options()
                )
                sent = []
                for _ in range(3):  # a few seconds apart, so the rate chart has a shape
                    sent.append((await asyncio.to_thread(push.push, app, request)).msgId)
                    await asyncio.sleep(1.5)
                await until(lambda: set(sent) <= phones.ids(device), "the pushes to reach the device")
                msg_id = sent[0]
                most = "s => Number(document.querySelector(`#chart-${s[0]} polyline[data-series=${s[1]}]`).dataset.max)"
                await until_js(page, f"({most})(['rates', 'accepted']) > 0", "a non-zero push rate", timeout=30)
                await until_js(page, f"({most})(['rates', 'deliveries']) > 0", "a non-zero delivery rate", timeout=30)
                await until_js(page, f"({most})(['connections', 'connections']) >= 1", "a connection", timeout=30)

                # that push looked up by its msg id: its report, and its curve
                await until(
                    lambda: push.report(app, [msg_id])[0].received == 1, "the receipt to be recorded", timeout=30
                )
                await page.eval(
                    f"document.getElementById('message-id').value = '{msg_id}';"
                    "document.querySelector('#message-form button').click()"
                )
                await until_js(
                    page, f"document.getElementById('message').dataset.msgId === '{msg_id}'", "the push's report"
                )
                report = await page.eval(
                    "Object.fromEntries(['message-state', 'message-app', 'report-targets', 'report-sent-online',"
                    " 'report-received'].map(id => [id, document.getElementById(id).textContent]))"
                )
                assert report == {
                    "message-state": "Done",
                    "message-app": app,
                    "report-targets": "1",
                    "report-sent-online": "1",
                    "report-received": "1",
                }
                assert await page.eval("Number(document.getElementById('chart-curve').dataset.points)") >= 1
                assert await page.eval("Number(document.getElementById('chart-curve').dataset.max)") == 1

                # a msg id that is no push
                await page.eval(
                    "document.getElementById('message-id').value = '1';"
                    "document.querySelector('#message-form button').click()"
                )
                missing = await until_js(page, "document.getElementById('message-error').textContent", "not found")
                assert "no message 1" in missing
                await page.eval(
                    f"document.getElementById('message-id').value = '{msg_id}';"
                    "document.querySelector('#message-form button').click()"
                )
                await until_js(page, "!document.getElementById('message').hidden", "the push again")

                # the releases: every server on the published one
                summary = await until_js(
                    page, "document.getElementById('upgrade-summary').textContent", "the upgrade panel"
                )
                ours = [sid for sid, s in servers.items() if s["release"]]
                assert summary == f"every server on {published} ({len(ours)} servers)"
                on = (
                    "[...document.querySelectorAll('#upgrade-servers tr')]"
                    ".map(r => [r.dataset.server, r.dataset.release])"
                )
                assert dict(await page.eval(on)) == dict.fromkeys(ours, published)
                last = "Number(document.querySelector('#chart-rates polyline[data-series=accepted]').dataset.last)"
                await until_js(page, f"{last} === 0", "the push rate back to 0 after the pushes", timeout=30)
                await _shot(page, tmp_path / "console.png")
            finally:
                await phones.close()

            # logging out ends the session
            await page.eval("document.getElementById('logout').click()")
            await until_js(page, "!document.getElementById('login').hidden", "the login again")
            assert await page.eval("fetch('/api/grid').then(r => r.status)") == 401

    asyncio.run(t())
    if os.environ.get(SAVE_ENV) == "1":
        shutil.copyfile(tmp_path / "console.png", README_SCREENSHOT)


def test_the_console_refuses_a_guessing_address(grid: RunDir) -> None:
    url = icegrid.status(grid)["console"] + "login"

    def attempt(password: str) -> int:
        body = json.dumps({"user": "admin", "password": password}).encode()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    codes = [attempt(f"guess {i}") for i in range(6)]
    assert codes == [401] * 5 + [429]
    assert attempt(grid.secrets["admin"]) == 429  # even the right one, for the rest of the minute


def test_find_message_needs_only_the_msg_id(dbagent, app, push) -> None:
    request = b.push_request(b.audience(tags=["nobody"]), notification="x", options=b.options())
    msg_id = push.push(app, request).msgId
    assert dbagent.findMessage(msg_id).appKey == app
    with pytest.raises(PushGrid.UnknownMessage):
        dbagent.findMessage(1)
    with pytest.raises(PushGrid.InvalidArgument):
        dbagent.findMessage(0)
