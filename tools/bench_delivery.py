"""Delivery benchmark: pushgrid's STC and nginx nchan (the C reference), side by side.

    .venv/bin/python -m tools.bench_delivery --run-dir run --devices 100000

One command measures both targets on the same machine: it registers the devices (pushgrid:
through DBAgent in calls of 100, as STC gathers registrations), connects them to each target in turn and holds
both sets, then broadcasts in alternating rounds (pushgrid, nchan, pushgrid, ...), and ends with
targeted pushes at a steady rate through Push (pushgrid only; nchan has no per-device address).
nginx + nchan is started here on loopback with as many workers as STC processes and one channel
every connection subscribes to; its broadcast is published over HTTP.

Printed as one table with a column per target and the ratio (above 1: pushgrid does better):
connections held, new connections/s, memory per connection (server RSS growth / connections),
broadcast time to the last device and deliveries/s (medians), the share of held devices that
got each broadcast, the load generator's own CPU per 1,000 deliveries (it must not be the
limit), device registrations/s, and targeted latency p50/p90/p99. The plot (--plot) draws both
on the same axes: connections over time, and the arrival CDF of one broadcast.

The devices are swarms (tools/device/swarm.py) in worker processes, each below the 20,000 open
files a process may have here, whose connections come from source addresses spread over
127.0.0.0/8 so no source address runs out of ports. Everything stays on loopback and stops by
itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from services.common import batching, limits
from services.common.contract import PushGrid
from tools.grid.rundir import RunDir
from tools.partner import builders as b

PER_WORKER_MAX = 16000
TICK_S = 0.05  # the targeted phase sends the pushes due this often, in one pushBatch
REGISTER_BATCH = 100  # devices per registerDevices call: what STC gathers from devices registering together
DEVICES_PER_SOURCE = 5000  # connections from one source address (its ports run out near 28,000)
QUIET_SHARE = 0.25  # a broadcast round starts once the cores are at most this busy


# ---------------------------------------------------------------- device side (worker processes)


def _busy_share(seconds: float) -> float:
    """The share of the machine's CPU time spent busy over the next seconds (/proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def _wait_quiet(timeout: float = 30.0) -> float:
    """Waits until the cores are mostly idle (the previous round's acks and receipts taken
    care of), so every round of either target starts on the same machine; returns seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and _busy_share(0.5) > QUIET_SHARE:
        pass
    return time.monotonic() - started


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _worker(
    index: int, devices: list[tuple[str, str]], app: str, urls: list[str], cmd: mp.Queue[Any], out: mp.Queue[Any]
) -> None:
    """Holds its share of devices in one swarm (tools/device/swarm.py); reports connection
    counts, received (msg id, time) pairs and the CPU seconds this process used."""
    import uvloop

    from tools.device.swarm import Swarm

    _raise_nofile()
    # source addresses over 127.0.0.0/8: at most DEVICES_PER_SOURCE connections from each
    ips = [f"127.{1 + index}.{k // 250}.{1 + k % 250}" for k in range(1 + len(devices) // DEVICES_PER_SOURCE)]

    async def main() -> None:
        swarm = Swarm(app, devices, urls, ips)
        swarm.start()
        loop = asyncio.get_running_loop()
        while True:
            out.put(("status", index, swarm.tally.connected, swarm.tally.failed, time.process_time()))
            batch = swarm.tally.take_received()
            if batch:
                out.put(("received", index, batch))
            try:
                command = await loop.run_in_executor(None, cmd.get, True, 0.25)
            except queue.Empty:
                command = None
            if command == "stop":
                break
        await swarm.stop()
        out.put(("stopped", index))

    uvloop.run(main())


# ---------------------------------------------------------------- controller


class Bench:
    """pushgrid: devices registered through DBAgent, connected to STC, pushes through Push."""

    name = "pushgrid STC"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.received: dict[int, list[float]] = {}
        self.connected: dict[int, int] = {}
        self.client_cpu: dict[int, float] = {}  # CPU seconds each worker process used so far
        self.workers: list[tuple[mp.Process, mp.Queue[Any]]] = []
        self.out: mp.Queue[Any] = mp.Queue()
        self.setup()

    def setup(self) -> None:
        from services.common.ice import client_communicator, dbagent, push, tagalias

        self.run = RunDir(self.args.run_dir)
        self.comm = client_communicator(self.run.client_config)
        self.db, self.ta, self.push = dbagent(self.comm), tagalias(self.comm), push(self.comm)
        self.urls = self.run.device_urls

    def register(self, n: int) -> tuple[str, list[tuple[str, str]]]:
        app = self.db.createApp(
            f"bench-{os.getpid()}-{int(time.time())}", limits.PUSH_QUOTA_MAX
        ).appKey  # not the bench's limit
        creds: list[tuple[str, str]] = []
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:

            def some(count: int) -> list[tuple[str, str]]:
                made = self.db.registerDevices(app, PushGrid.Platform.Android, count)
                self.ta.addDevices(app, [c.registrationId for c in made], PushGrid.Platform.Android)
                return [(c.registrationId, c.deviceToken) for c in made]

            sizes = [len(c) for c in batching.chunks(range(n), REGISTER_BATCH)]
            for made in pool.map(some, sizes):
                creds += made
                if len(creds) % 5000 < REGISTER_BATCH or len(creds) == n:
                    rate = len(creds) / (time.monotonic() - started)
                    print(f"  registered {len(creds):,}/{n:,} devices ({rate:,.0f}/s)", flush=True)
        return app, creds

    def server_rss(self) -> dict[str, int]:
        """RSS in bytes of every STC server process, from the pids IceGrid reports."""
        from tools.grid import icegrid

        with icegrid.admin_session(self.run) as admin:
            return {sid: _rss(admin.getServerPid(sid)) for sid in admin.getAllServerIds() if sid.startswith("STC-")}

    def start_workers(self, app: str, creds: list[tuple[str, str]], first_index: int = 0) -> None:
        """Worker processes, numbered from first_index: each number has its own source addresses."""
        per = min(PER_WORKER_MAX, max(1, -(-len(creds) // self.args.workers)))
        for index, chunk in enumerate(batching.chunks(creds, per), first_index):
            cmd: mp.Queue[Any] = mp.Queue()
            p = mp.Process(target=_worker, args=(index, chunk, app, self.urls, cmd, self.out), daemon=True)
            p.start()
            self.workers.append((p, cmd))

    def pump(self, timeout: float = 0.2) -> None:
        """Takes worker reports off the queue: connection counts and received msg ids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.out.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return
            if msg[0] == "status":
                self.connected[msg[1]] = msg[2]
                self.client_cpu[msg[1]] = msg[4]
            elif msg[0] == "received":
                for mid, t in msg[2]:
                    self.received.setdefault(mid, []).append(t)

    def wait_connected(self, n: int, timeout: float) -> float:
        """Waits until n devices are connected; keeps (seconds, connected) in self.curve."""
        started = time.monotonic()
        last_print = 0.0
        self.curve: list[tuple[float, int]] = []
        while time.monotonic() - started < timeout:
            self.pump(0.5)
            total = sum(self.connected.values())
            self.curve.append((time.monotonic() - started, total))
            if time.monotonic() - last_print > 5:
                print(f"  connected {total:,}/{n:,}", flush=True)
                last_print = time.monotonic()
            if total >= n:
                break
        return time.monotonic() - started

    def request(self, audience: PushGrid.Audience, text: str) -> PushGrid.PushRequest:
        return b.push_request(audience, notification=b.notification(text, title="bench"), options=b.options(1, 600))

    def publish_broadcast(self, app: str) -> int:
        return self.push.push(app, self.request(PushGrid.Audience(all=True), "broadcast")).msgId

    def broadcast(self, app: str, n: int, timeout: float) -> dict[str, Any]:
        self.pump(0.5)
        cpu_before = sum(self.client_cpu.values())
        sent_at = time.time()
        msg_id = self.publish_broadcast(app)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.received.get(msg_id, [])) < n:
            self.pump(0.5)
        times = sorted(self.received.get(msg_id, []))
        last = (times[-1] - sent_at) if times else float("nan")
        self.pump(0.6)  # the workers' CPU counts as of the end
        return {
            "client_cpu_s": sum(self.client_cpu.values()) - cpu_before,
            "msg_id": msg_id,
            "got": len(times),
            "last_s": last,
            "per_s": len(times) / last if times else 0.0,
            "curve": [t - sent_at for t in times],
        }

    def settle(self, app: str, msg_ids: list[int], held: int, timeout: float) -> float:
        """Waits until the devices' acks of msg_ids are counted in the report (the receipts path
        has caught up), so the targeted phase measures a grid at rest; returns the seconds waited."""
        started = time.monotonic()
        last_print = 0.0
        while time.monotonic() - started < timeout:
            received = sum(s.received for s in self.push.report(app, msg_ids))
            if received >= 0.99 * held * len(msg_ids):
                break
            if time.monotonic() - last_print > 5:
                print(f"  receipts counted {received:,}/{held * len(msg_ids):,}", flush=True)
                last_print = time.monotonic()
            self.pump(1.0)
        return time.monotonic() - started

    def targeted(self, app: str, creds: list[tuple[str, str]], rate: float, seconds: float) -> tuple[list[float], int]:
        """Pushes to one random device each at rate for seconds, as a partner with many single
        pushes does: every TICK_S the pushes due go out in one pushBatch. Answers each delivered
        push's latency (ms, call to device) and how many were sent."""
        sent: dict[int, float] = {}
        started = time.monotonic()
        due, ticks = 0.0, 0
        while time.monotonic() - started < seconds:
            ticks += 1
            due += rate * TICK_S
            count, due = int(due), due - int(due)
            if count:
                batch = [
                    self.request(PushGrid.Audience(registrationIds=[random.choice(creds)[0]]), "hi")
                    for _ in range(count)
                ]
                t = time.time()
                for res in self.push.pushBatch(app, batch):
                    if res.msgId:
                        sent[res.msgId] = t
            self.pump(max(0.001, started + ticks * TICK_S - time.monotonic()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(m not in self.received for m in sent):
            self.pump(0.5)
        lat = sorted((self.received[m][0] - t) * 1000 for m, t in sent.items() if m in self.received)
        return lat, len(sent)

    def stop(self) -> None:
        for _, cmd in self.workers:
            cmd.put("stop")
        for p, _ in self.workers:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        self.teardown()

    def teardown(self) -> None:
        self.comm.destroy()


class NchanBench(Bench):
    """The reference: nginx + nchan on loopback, one channel every connection subscribes to."""

    name = "nginx nchan"

    def setup(self) -> None:
        import shutil
        import socket
        import subprocess
        import tempfile

        if not os.path.exists("/usr/lib/nginx/modules/ngx_nchan_module.so"):
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "nginx-light", "libnginx-mod-nchan"],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        self.dir = tempfile.mkdtemp(prefix="bench-nchan-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(NCHAN_CONF.format(dir=self.dir, port=self.port, workers=self.args.nchan_workers))
        self.nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", self.dir, "-c", "nginx.conf"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        self.urls = [f"ws://127.0.0.1:{self.port}/sub"]
        self.next_id = 1

    def register(self, n: int) -> tuple[str, list[tuple[str, str]]]:
        return "", [(f"sub{i}", "") for i in range(n)]

    def server_rss(self) -> dict[str, int]:
        children = subprocess_children(self.nginx.pid)
        return {f"nginx-{pid}": _rss(pid) for pid in [self.nginx.pid, *children]}

    def settle(self, app: str, msg_ids: list[int], held: int, timeout: float) -> float:
        return 0.0  # nchan keeps no receipts

    def publish_broadcast(self, app: str) -> int:
        import urllib.request

        msg_id, self.next_id = self.next_id, self.next_id + 1
        body = json.dumps({"msg_id": msg_id, "notification": {"alert": "broadcast"}}).encode()
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{self.port}/pub", data=body, method="POST"), timeout=30
        ).read()
        return msg_id

    def teardown(self) -> None:
        import shutil

        self.nginx.terminate()
        self.nginx.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


NCHAN_CONF = """
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
daemon off;
worker_processes {workers};
worker_rlimit_nofile 20000;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 19000; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /sub {{ nchan_subscriber websocket; nchan_channel_id bench; }}
        location = /pub {{ nchan_publisher; nchan_channel_id bench; nchan_message_buffer_length 10; }}
    }}
}}
"""


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def subprocess_children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


@dataclass
class Run:
    """One target's figures in a side-by-side run."""

    bench: Bench
    app: str = ""
    creds: list[tuple[str, str]] = field(default_factory=list)
    register_per_s: float = 0.0
    connect_s: float = 0.0
    held: int = 0
    per_conn: float = float("nan")
    casts: list[dict[str, Any]] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    targeted_sent: int = 0

    @property
    def name(self) -> str:
        return self.bench.name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="run")
    parser.add_argument("--devices", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=2, help="device-holding processes per target (one per core)")
    parser.add_argument("--broadcasts", type=int, default=3, help="broadcast rounds (each target in turn)")
    parser.add_argument("--rate", type=float, default=1000, help="targeted pushes per second")
    parser.add_argument("--seconds", type=float, default=60, help="duration of the targeted phase")
    parser.add_argument(
        "--targets",
        default="pushgrid,nchan",
        help="what to measure, side by side: pushgrid (STC), nchan (nginx, the C reference), or both",
    )
    parser.add_argument("--nchan-workers", type=int, default=6, help="nginx worker processes (nchan)")
    parser.add_argument("--plot", default="bench-delivery.png")
    args = parser.parse_args()
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not names or any(t not in ("pushgrid", "nchan") for t in names):
        parser.error("--targets takes pushgrid, nchan or both, comma-separated")
    _raise_nofile()
    runs: list[Run] = []
    try:
        for i, t in enumerate(names):
            run = Run(NchanBench(args) if t == "nchan" else Bench(args))
            runs.append(run)
            print(f"[{run.name}] registering {args.devices:,} devices", flush=True)
            started = time.monotonic()
            run.app, run.creds = run.bench.register(args.devices)
            run.register_per_s = args.devices / (time.monotonic() - started)
            rss_before = run.bench.server_rss()
            print(f"[{run.name}] connecting them through {len(run.bench.urls)} port(s)", flush=True)
            run.bench.start_workers(run.app, run.creds, first_index=i * 100)
            run.connect_s = run.bench.wait_connected(args.devices, timeout=max(120, args.devices / 200))
            run.held = sum(run.bench.connected.values())
            time.sleep(2)
            grown = sum(run.bench.server_rss().values()) - sum(rss_before.values())
            run.per_conn = grown / run.held if run.held else float("nan")
            print(
                f"  held {run.held:,} after {run.connect_s:.1f}s ({run.held / run.connect_s:,.0f}/s); "
                f"{run.per_conn / 1024:.1f} KiB per connection",
                flush=True,
            )
        for r in range(args.broadcasts):
            for run in runs:  # alternating: each round gives every target the same machine
                _wait_quiet()
                cast = run.bench.broadcast(run.app, run.held, timeout=120)
                run.casts.append(cast)
                print(
                    f"  round {r + 1}, {run.name}: {cast['got']:,} of {run.held:,} devices, first after "
                    f"{_pct(cast['curve'], 0.0):.2f}s, half after {_pct(cast['curve'], 0.5):.2f}s, last after "
                    f"{cast['last_s']:.2f}s, {cast['per_s']:,.0f} deliveries/s; load generator "
                    f"{cast['client_cpu_s']:.2f} CPU-s",
                    flush=True,
                )
        for run in runs:
            if isinstance(run.bench, NchanBench):
                continue
            waited = run.bench.settle(run.app, [c["msg_id"] for c in run.casts], run.held, timeout=600)
            print(f"  every broadcast's receipts counted {waited:.0f}s after the last one", flush=True)
            print(f"[{run.name}] targeted pushes at {args.rate:g}/s for {args.seconds:g}s", flush=True)
            run.lat, run.targeted_sent = run.bench.targeted(run.app, run.creds, args.rate, args.seconds)
        _report(runs, args.devices)
        _plot(args.plot, runs)
        print(f"plot saved to {args.plot}")
    finally:
        for run in runs:
            run.bench.stop()
    return 0


def _rows(run: Run) -> dict[str, tuple[float, str, bool]]:
    """Each figure of a run: (value, format, higher is better)."""
    casts = run.casts
    got = [c["got"] / max(1, run.held) for c in casts]
    rows: dict[str, tuple[float, str, bool]] = {
        "connections held": (run.held, "{:,.0f}", True),
        "new connections/s": (run.held / run.connect_s if run.connect_s else 0.0, "{:,.0f}", True),
        "memory per connection (KiB)": (run.per_conn / 1024, "{:.1f}", False),
        "broadcast: last device (s, median)": (statistics.median(c["last_s"] for c in casts), "{:.2f}", False),
        "broadcast deliveries/s (median)": (statistics.median(c["per_s"] for c in casts), "{:,.0f}", True),
        "held devices that got it (worst)": (100 * min(got), "{:.2f}%", True),
        "load generator ms per 1,000 deliveries": (
            statistics.median(1e6 * c["client_cpu_s"] / max(1, c["got"]) for c in casts),
            "{:.0f}",
            False,
        ),
    }
    if not isinstance(run.bench, NchanBench):
        rows["device registrations/s"] = (run.register_per_s, "{:,.0f}", True)
    if run.targeted_sent:
        rows["targeted pushes sent"] = (run.targeted_sent, "{:,.0f}", True)
        rows["targeted pushes on a device within 30 s"] = (100 * len(run.lat) / run.targeted_sent, "{:.2f}%", True)
    if run.lat:
        for q in (0.5, 0.9, 0.99):
            rows[f"targeted p{int(q * 100)} (ms)"] = (_pct(run.lat, q), "{:.1f}", False)
    return rows


def _report(runs: list[Run], devices: int) -> None:
    """One table: a column per target and, with two, the first's figure against the second's
    (above 1: the first does better)."""
    tables = [_rows(r) for r in runs]
    print(f"\n{'measure at ' + format(devices, ',') + ' devices':<42}" + "".join(f"{r.name:>16}" for r in runs), end="")
    print(f"{'ratio':>10}" if len(runs) == 2 else "")
    for key in dict.fromkeys(k for t in tables for k in t):
        cells = [t.get(key) for t in tables]
        line = f"{key:<42}" + "".join(f"{c[1].format(c[0]) if c else '-':>16}" for c in cells)
        if len(runs) == 2 and all(cells) and cells[0] and cells[1]:
            (a, _, up), (b, _, _) = cells  # type: ignore[misc]  # both present: checked above
            ratio = (a / b if up else b / a) if a and b else float("nan")
            line += f"{ratio:>9.2f}x"
        print(line)


def _plot(path: str, runs: list[Run]) -> None:
    """Both targets on the same axes: connections over time, the arrival CDF of each one's median
    broadcast, and pushgrid's targeted latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (conn, cdf, lat) = plt.subplots(1, 3, figsize=(18, 4.8))
    for run in runs:
        xs, ys = zip(*run.bench.curve, strict=True) if run.bench.curve else ((), ())
        conn.plot(xs, ys, label=f"{run.name}: {run.held:,} in {run.connect_s:.0f}s, {run.per_conn / 1024:.1f} KiB each")
        if run.casts:
            median = sorted(run.casts, key=lambda c: c["last_s"])[len(run.casts) // 2]
            curve = median["curve"]
            cdf.plot(
                curve,
                [(i + 1) / max(1, run.held) for i in range(len(curve))],
                label=f"{run.name}: last {median['last_s']:.2f}s",
            )
        if run.lat:
            lat.plot(run.lat, [i / len(run.lat) for i in range(len(run.lat))], label=run.name)
    conn.set_xlabel("seconds")
    conn.set_ylabel("devices connected")
    conn.set_title("connections over time")
    cdf.set_xlabel("seconds after the push")
    cdf.set_ylabel("fraction of held devices that have it")
    cdf.set_title("one broadcast's arrival times (median round)")
    lat.set_xscale("log")
    lat.set_xlabel("partner call to device (ms)")
    lat.set_ylabel("fraction of targeted pushes")
    lat.set_title("targeted pushes")
    for ax in (conn, cdf, lat):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
