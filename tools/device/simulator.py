"""Many devices in one process: `python -m tools.device.simulator --run-dir RUN --app-key K --devices N`.

Registers N devices of app K (or loads them from --credentials, and saves new ones there), tags
them through TagAlias, connects them all to the grid's STC ports and prints, every second, how
many are connected and how many messages they received and acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from services.common import platforms
from services.common.fdlimit import raise_open_files
from services.common.ice import client_communicator, tagalias
from tools.device.sdk import Credentials, Device, register
from tools.grid.rundir import RunDir

CONNECTS_AT_ONCE = 100  # handshakes in flight; more only makes a 2-core machine thrash
DEVICES_PER_SOURCE = 100  # devices registering from one source address (STC allows a burst of 200)


def load_credentials(path: str | None, app_key: str) -> list[Credentials]:
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [Credentials.from_dict(d) for d in json.load(f) if d.get("app_key") == app_key]


def save_credentials(path: str, creds: list[Credentials]) -> None:
    others = []
    if os.path.exists(path):
        with open(path) as f:
            others = [d for d in json.load(f) if d.get("app_key") not in {c.app_key for c in creds}]
    with open(path, "w") as f:
        json.dump(others + [c.to_dict() for c in creds], f)


def source_address(url: str, i: int) -> str | None:
    """Where device i registers from: to a loopback STC, one 127.0.x.y per DEVICES_PER_SOURCE
    devices, as devices of many homes would (STC limits registrations per address); None
    (the system's choice) to any other."""
    if not (urlsplit(url).hostname or "").startswith("127."):
        return None
    n = i // DEVICES_PER_SOURCE
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


async def register_many(urls: list[str], app_key: str, platform: str, count: int) -> list[Credentials]:
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def one(i: int) -> Credentials:
        url = urls[i % len(urls)]
        async with gate:
            return await register(url, app_key, platform, local_host=source_address(url, i))

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def tag_all(config: str, creds: list[Credentials], tags: list[str]) -> None:
    communicator = client_communicator(config)
    try:
        ta = tagalias(communicator)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: ta.addTags(c.app_key, c.registration_id, tags), creds))
    finally:
        communicator.destroy()


def summary(devices: list[Device], started: float) -> str:
    connected = sum(d.connected.is_set() for d in devices)
    received = sum(d.stats.received for d in devices)
    acked = sum(d.stats.acked for d in devices)
    dups = sum(d.stats.duplicates for d in devices)
    reconnects = sum(max(d.stats.connects - 1, 0) for d in devices)
    return (
        f"[{time.monotonic() - started:6.1f}s] connected {connected}/{len(devices)}  received {received}"
        f"  acked {acked}  duplicates {dups}  reconnects {reconnects}"
    )


async def simulate(args: argparse.Namespace) -> int:
    run = RunDir(args.run_dir)
    urls = args.url or run.device_urls
    creds = load_credentials(args.credentials, args.app_key)[: args.devices]
    if len(creds) < args.devices:
        started = time.monotonic()
        new = await register_many(urls, args.app_key, args.platform, args.devices - len(creds))
        print(f"registered {len(new)} devices in {time.monotonic() - started:.1f}s", flush=True)
        if args.tags:
            tag_all(run.client_config, new, args.tags)
            print(f"tagged them {', '.join(args.tags)}", flush=True)
        creds += new
        if args.credentials:
            save_credentials(args.credentials, creds)
    devices = [Device(c, urls[i % len(urls) :] + urls[: i % len(urls)]) for i, c in enumerate(creds)]
    started = time.monotonic()
    for i, d in enumerate(devices):
        d.start()
        if i % CONNECTS_AT_ONCE == CONNECTS_AT_ONCE - 1:
            await asyncio.sleep(0.05)  # ramp up instead of one handshake storm
    try:
        while args.seconds <= 0 or time.monotonic() - started < args.seconds:
            await asyncio.sleep(1)
            print(summary(devices, started), flush=True)
    finally:
        await asyncio.gather(*(d.close() for d in devices))
    print("done: " + summary(devices, started), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.device.simulator", description=__doc__)
    parser.add_argument("--run-dir", default=os.environ.get("PUSHGRID_RUN_DIR", "run"))
    parser.add_argument("--app-key", required=True)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--platform", default="android", choices=platforms.NAMES)
    parser.add_argument("--tags", type=lambda s: [t for t in s.split(",") if t], default=[])
    parser.add_argument("--seconds", type=float, default=0, help="run this long (0: until interrupted)")
    parser.add_argument("--credentials", help="JSON file of saved devices: loaded if present, new ones added")
    parser.add_argument("--url", action="append", help="an STC device URL (default: the run directory's)")
    args = parser.parse_args(argv)
    limit = raise_open_files()
    if args.devices + 100 > limit:
        print(f"warning: {args.devices} devices need more than the {limit} open files allowed", file=sys.stderr)
    try:
        return asyncio.run(simulate(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
