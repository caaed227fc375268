"""The platform's main job, end to end on a local grid: what `./tools/run` shows.

Brings the grid up (or checks it), creates an app, registers three devices over the device
protocol, tags them, pushes by tag to the two online ones, pushes to the offline one and lets it
come back and get the message replayed, then prints the report of each push, the first push's
path through the servers' logs and when its devices received it.

    .venv/bin/python -m tools.demo --run-dir run
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Callable

from services.common import logs
from services.common.contract import PushGrid
from services.common.ice import client_communicator, dbagent, push, tagalias
from tools.device.sdk import Device, Message, register
from tools.grid import lifecycle
from tools.grid import logs as grid_logs
from tools.grid.rundir import RunDir
from tools.partner import builders as b
from tools.partner.cli import curve_lines

DEVICES = (
    ("phone-A", "android", ["sports", "beijing"]),
    ("phone-B", "ios", ["sports"]),
    ("browser-C", "web", ["news"]),
)


def _request(audience: PushGrid.Audience, alert: str, sendno: int) -> PushGrid.PushRequest:
    return b.push_request(
        audience,
        notification=b.notification(alert, title="pushgrid demo", extras={"from": "demo"}),
        options=b.options(sendno=sendno, ttl=3600),
    )


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _arrived(inbox: list[tuple[Message, float]], message: Message) -> None:
    inbox.append((message, time.time()))


def _alert(message: Message) -> str:
    return str((message.notification or {}).get("alert", ""))


async def demo(run: RunDir) -> None:
    comm = client_communicator(run.client_config)
    loop = asyncio.get_running_loop()
    db, ta, api = dbagent(comm), tagalias(comm), push(comm)
    try:
        app = await loop.run_in_executor(None, db.createApp, f"demo-{int(time.time())}", 600)
        print(f"\napp created: app key {app.appKey} (master secret shown once: {app.masterSecret})")

        received: dict[str, list[tuple[Message, float]]] = {name: [] for name, _, _ in DEVICES}
        devices: dict[str, Device] = {}
        for name, platform, tags in DEVICES:
            creds = await register(run.device_urls[0], app.appKey, platform)
            await loop.run_in_executor(None, ta.addTags, app.appKey, creds.registration_id, tags)
            devices[name] = Device(creds, run.device_urls, on_message=functools.partial(_arrived, received[name]))
            print(f"device {name:<9} registered: {creds.registration_id} ({platform}), tags {', '.join(tags)}")

        for name in ("phone-A", "phone-B"):
            devices[name].start()
            await asyncio.wait_for(devices[name].connected.wait(), 15)
            print(f"device {name:<9} connected to {devices[name].stc}")
        print("device browser-C is offline")

        sent = time.time()
        sports = await loop.run_in_executor(
            None, api.push, app.appKey, _request(PushGrid.Audience(tags=["sports"]), "Match starts in 10 minutes", 1)
        )
        print(f"\npush by tag 'sports': msg id {sports.msgId} (sendno {sports.sendno})")
        await _wait(lambda: all(received[n] for n in ("phone-A", "phone-B")), 20, "the sports push")
        for name in ("phone-A", "phone-B"):
            m, at = received[name][0]
            print(f"  {name:<9} received msg {m.msg_id}: {_alert(m)!r} after {(at - sent) * 1000:.0f} ms")

        news = await loop.run_in_executor(
            None, api.push, app.appKey, _request(PushGrid.Audience(tags=["news"]), "Morning briefing is ready", 2)
        )
        print(f"\npush by tag 'news' while browser-C is offline: msg id {news.msgId}")
        await asyncio.sleep(1.0)
        devices["browser-C"].start()
        await _wait(lambda: bool(received["browser-C"]), 20, "the replay")
        m, _ = received["browser-C"][0]
        print(f"  browser-C came back and received msg {m.msg_id} (replay={m.replay}): {_alert(m)!r}")

        print("\nreport (targets / sent online / stored offline / received):")

        def settled() -> bool:
            stats = api.report(app.appKey, [sports.msgId, news.msgId])
            return len(stats) == 2 and all(s.received >= s.targets > 0 for s in stats)

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not await loop.run_in_executor(None, settled):
            await asyncio.sleep(0.3)
        for s in await loop.run_in_executor(None, api.report, app.appKey, [sports.msgId, news.msgId]):
            print(f"  msg {s.msgId}: {s.targets} / {s.sentOnline} / {s.storedOffline} / {s.received}  ({s.state})")

        about = logs.about(sports.msgId, app.appKey)
        print(f"\nmsg {sports.msgId} through the grid (pushgrid logs --grep 'msg={sports.msgId} '):")
        for line in await loop.run_in_executor(None, _path, run, about):
            print("  " + line)
        print(f"\nwhen its devices received it (pushgrid-partner report --curve {sports.msgId}):")
        for line in curve_lines(await loop.run_in_executor(None, api.reportCurve, app.appKey, sports.msgId)):
            print("  " + line)
        for d in devices.values():
            await d.close()
    finally:
        comm.destroy()


def _path(run: RunDir, about: str, timeout: float = 10) -> list[str]:
    """The log lines naming the message, every server's, in time order, once its receipts are
    recorded (the last step); each as time, server and what happened."""
    deadline = time.monotonic() + timeout
    while True:
        found: list[str] = []
        grid_logs.tail(run, [], lines=0, grep=about + " ", emit=found.append)
        if any("receipts recorded" in line for line in found) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    out = []
    for line in found:
        _date, clock, _level, server, _logger, said = line.split(" ", 5)
        out.append(f"{clock} {server:<14} {said.removeprefix(about).strip()}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="run")
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    lifecycle.up(run)
    asyncio.run(demo(run))
    print(f"\nthe grid keeps running: .venv/bin/pushgrid --run-dir {args.run_dir} status | down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
