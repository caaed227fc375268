"""The web device page in headless Chromium (tests/integration/chromium.py): served by STC, it
registers, connects, shows a message delivered over Ice and acknowledges it."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from services.common.clock import now_ms
from services.common.contract import PushGrid
from services.common.ice import stc
from services.common.mailbox import Mailbox, Stored
from services.common.redis_client import cluster
from tests.integration.chromium import chromium, until_js
from tests.integration.test_stc import IDS, envelope, frame
from tests.integration.waiting import until_async as until

pytestmark = pytest.mark.integration


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
