"""What a rolling upgrade costs the grid's users: its length, failed partner calls (must be 0),
partner push latency during the upgrade against before it, and device reconnects.

    .venv/bin/python -m tools.bench_upgrade --run-dir run [--devices 50] [--rate 10] [--plot bench-upgrade.png]

On a grid that is up (`pushgrid up`): builds a release of the checkout, connects N devices and
starts a partner pushing to them through the Glacier2 router at a steady rate, measures a quiet
baseline, then runs `pushgrid upgrade` (canary 1, then stages of 4, a short soak) and keeps
measuring until it ends. Every push's latency is the partner's call time; every accepted push
must reach every device (checked at the end, by msg id). A device's reconnect time is how long
it had no connection. Prints the figures, with during/before ratios of p50 and p99, and saves a
plot: push latency over time with the upgrade shaded, and the reconnect times.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from patch import release
from services.common import ice, paths
from tools.bench_delivery import _pct
from tools.device.sdk import Device, Message, register
from tools.grid.rundir import RunDir
from tools.partner import builders as b
from tools.partner.sdk import PartnerClient


def _show(seen: set[int], message: Message) -> None:
    seen.add(message.msg_id)


@dataclass
class Devices:
    """N devices on one event loop; records how long each stayed disconnected, each time."""

    run: RunDir
    app: str
    n: int
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    devices: list[Device] = field(default_factory=list)
    shown: dict[str, set[int]] = field(default_factory=dict)
    gaps: list[float] = field(default_factory=list)  # seconds without a connection, per reconnect

    def start(self) -> None:
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._connect(), self.loop).result(120)
        asyncio.run_coroutine_threadsafe(self._watch(), self.loop)

    async def _connect(self) -> None:
        for i in range(self.n):
            creds = await register(self.run.device_urls[i % len(self.run.device_urls)], self.app)
            seen: set[int] = set()
            self.shown[creds.registration_id] = seen
            d = Device(creds, self.run.device_urls, backoff=(0.3, 2.0), on_message=functools.partial(_show, seen))
            self.devices.append(d)
            d.start()
            await asyncio.wait_for(d.connected.wait(), 30)

    async def _watch(self) -> None:
        down: dict[int, float] = {}
        while True:
            now = time.monotonic()
            for i, d in enumerate(self.devices):
                if not d.connected.is_set():
                    down.setdefault(i, now)
                elif i in down:
                    self.gaps.append(now - down.pop(i))
            await asyncio.sleep(0.01)

    def connected(self) -> int:
        return sum(d.connected.is_set() for d in self.devices)

    def missing(self, accepted: list[int]) -> int:
        want = set(accepted)
        return sum(len(want - seen) for seen in self.shown.values())


@dataclass
class Partner:
    """Pushes to every device at a steady rate; records (start time, latency) and failures."""

    client: PartnerClient
    rids: list[str]
    rate: float
    calls: list[tuple[float, float]] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self._run, daemon=True)
        t.start()
        return t

    def _run(self) -> None:
        request = b.push_request(b.audience(registration_ids=self.rids), notification="bench")
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.accepted.append(self.client.push(request).msgId)
                self.calls.append((started, time.monotonic() - started))
            except Exception as exc:  # noqa: BLE001 - every failed partner call is counted and printed
                self.failed.append(f"{type(exc).__name__}: {exc}")
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="run")
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--rate", type=float, default=10.0, help="partner pushes per second")
    ap.add_argument("--baseline", type=float, default=20.0, help="seconds measured before the upgrade")
    ap.add_argument("--soak", default="3", help="the upgrade's soak per stage, seconds")
    ap.add_argument("--plot", default="bench-upgrade.png")
    args = ap.parse_args()
    run = RunDir(args.run_dir)

    version = f"bench-{time.strftime('%Y%m%d%H%M%S')}"
    print(f"building release {version}", flush=True)
    release.build(run.releases, version=version, progress=lambda line: print(line, flush=True))
    comm = ice.client_communicator(run.client_config)
    creds = ice.dbagent(comm).createApp("bench-upgrade-" + uuid.uuid4().hex[:8], 1_000_000)
    comm.destroy()
    devices = Devices(run, creds.appKey, args.devices)
    print(f"connecting {args.devices} devices", flush=True)
    devices.start()
    partner = Partner(
        PartnerClient(creds.appKey, creds.masterSecret, config=run.partner_config), list(devices.shown), args.rate
    )
    pusher = partner.start()
    t0 = time.monotonic()
    print(f"baseline: {args.baseline:.0f}s of {args.rate:g} pushes/s through the router", flush=True)
    time.sleep(args.baseline)
    up_start = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "tools.cli",
        "--run-dir",
        run.path,
        "upgrade",
        version,
        "--stage",
        "4",
        "--soak",
        args.soak,
    ]
    result = subprocess.run(cmd, cwd=paths.ROOT, text=True)
    up_end = time.monotonic()
    time.sleep(3)
    partner.stop()
    pusher.join(30)
    partner.client.close()
    deadline = time.monotonic() + 60
    while devices.missing(partner.accepted) and time.monotonic() < deadline:
        time.sleep(0.5)

    before = [lat for t, lat in partner.calls if t < up_start]
    during = [lat for t, lat in partner.calls if up_start <= t <= up_end]
    before.sort()
    during.sort()
    p50b, p99b, p50d, p99d = _pct(before, 0.5), _pct(before, 0.99), _pct(during, 0.5), _pct(during, 0.99)
    print("\nresults")
    print(f"  upgrade exit status        {result.returncode}; took {up_end - up_start:.1f}s for the whole grid")
    print(f"  partner pushes             {len(partner.accepted)} accepted, {len(partner.failed)} failed")
    for f in partner.failed[:5]:
        print(f"    {f}")
    print(f"  push latency before        p50 {p50b * 1000:.1f} ms, p99 {p99b * 1000:.1f} ms ({len(before)} calls)")
    print(f"  push latency during        p50 {p50d * 1000:.1f} ms, p99 {p99d * 1000:.1f} ms ({len(during)} calls)")
    print(f"  during/before              p50 x{p50d / p50b:.2f}, p99 x{p99d / p99b:.2f}")
    gaps = devices.gaps
    if gaps:
        print(
            f"  device reconnects          {len(gaps)} (of {args.devices} devices); without a connection "
            f"median {statistics.median(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms"
        )
    else:
        print("  device reconnects          0")
    print(f"  devices connected at end   {devices.connected()}/{args.devices}")
    print(f"  accepted pushes not shown  {devices.missing(partner.accepted)} (device x msg id)")
    _plot(args.plot, partner.calls, t0, up_start, up_end, gaps)
    print(f"  plot                       {args.plot}")
    ok = result.returncode == 0 and not partner.failed and not devices.missing(partner.accepted)
    return 0 if ok else 1


def _plot(
    path: str, calls: list[tuple[float, float]], t0: float, up_start: float, up_end: float, gaps: list[float]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, rec) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    lat.scatter([t - t0 for t, _ in calls], [x * 1000 for _, x in calls], s=4)
    lat.axvspan(up_start - t0, up_end - t0, alpha=0.15, color="orange", label="rolling upgrade")
    lat.set_yscale("log")
    lat.set_xlabel("seconds")
    lat.set_ylabel("partner push latency (ms, log)")
    lat.legend(loc="upper left")
    lat.set_title("partner pushes through the router during a rolling upgrade")
    rec.hist([g * 1000 for g in gaps] or [0], bins=20)
    rec.set_xlabel("ms without a connection")
    rec.set_ylabel("device reconnects")
    rec.set_title("device reconnects")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
