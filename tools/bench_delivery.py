"""Delivery benchmark: hold N device connections across the STC processes and measure.

    .venv/bin/python -m tools.bench_delivery --run-dir run --devices 100000

Figures printed (and plotted to --plot):
  * connections held, connect rate, and STC memory per connection (RSS growth / connections);
  * broadcast fan-out: deliveries per second and time until the last device has it (medians);
  * end-to-end latency of targeted pushes (registration id) at a steady rate: p50, p90, p99.

With --target nchan the same client workers subscribe to nginx's nchan module instead (the
reference C push server, started here on loopback with as many workers as STC processes) and
the same broadcast is published over HTTP: connections, memory per connection and fan-out are
measured the same way, side by side.

Devices are registered through DBAgent (the Ice call STC's register op makes), then held by
worker processes (each below the 20,000 open files a process may have here) whose connections
come from source addresses spread over 127.0.0.0/8, so no source address runs out of ports.
Each worker speaks the device protocol (services/stc/PROTOCOL.md) with a lean client: hello,
ack, ping. Everything stays on loopback and stops by itself.
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
from typing import Any

from services.common import batching, limits
from services.common.contract import PushGrid
from tools.grid.rundir import RunDir
from tools.partner import builders as b

PER_WORKER_MAX = 16000
DEVICES_PER_SOURCE = 5000  # connections from one source address (its ports run out near 28,000)


# ---------------------------------------------------------------- device side (worker processes)


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
        with ThreadPoolExecutor(16) as pool:

            def one(_: int) -> tuple[str, str]:
                c = self.db.registerDevice(app, PushGrid.Platform.Android)
                self.ta.addDevice(app, c.registrationId, PushGrid.Platform.Android)
                return c.registrationId, c.deviceToken

            for i, c in enumerate(pool.map(one, range(n)), 1):
                creds.append(c)
                if i % 5000 == 0 or i == n:
                    rate = i / (time.monotonic() - started)
                    print(f"  registered {i:,}/{n:,} devices ({rate:,.0f}/s)", flush=True)
        return app, creds

    def server_rss(self) -> dict[str, int]:
        """RSS in bytes of every STC server process, from the pids IceGrid reports."""
        from tools.grid import icegrid

        with icegrid.admin_session(self.run) as admin:
            return {sid: _rss(admin.getServerPid(sid)) for sid in admin.getAllServerIds() if sid.startswith("STC-")}

    def start_workers(self, app: str, creds: list[tuple[str, str]]) -> None:
        per = min(PER_WORKER_MAX, max(1, -(-len(creds) // self.args.workers)))
        for index, chunk in enumerate(batching.chunks(creds, per)):
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
        started = time.monotonic()
        last_print = 0.0
        while time.monotonic() - started < timeout:
            self.pump(0.5)
            total = sum(self.connected.values())
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

    def targeted(self, app: str, creds: list[tuple[str, str]], rate: float, seconds: float) -> list[float]:
        sent: dict[int, float] = {}
        interval = 1.0 / rate
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < seconds:
            rid = random.choice(creds)[0]
            t = time.time()
            mid = self.push.push(app, self.request(PushGrid.Audience(registrationIds=[rid]), "hi")).msgId
            sent[mid] = t
            i += 1
            sleep = started + i * interval - time.monotonic()
            self.pump(max(0.0, sleep))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(m not in self.received for m in sent):
            self.pump(0.5)
        return sorted((self.received[m][0] - t) * 1000 for m, t in sent.items() if m in self.received)

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="run")
    parser.add_argument("--devices", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=8, help="device-holding processes")
    parser.add_argument("--broadcasts", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50, help="targeted pushes per second")
    parser.add_argument("--seconds", type=float, default=20, help="duration of the targeted phase")
    parser.add_argument(
        "--target",
        choices=("pushgrid", "nchan"),
        default="pushgrid",
        help="measure pushgrid's STC, or nginx nchan as the reference",
    )
    parser.add_argument("--nchan-workers", type=int, default=6, help="nginx worker processes (nchan)")
    parser.add_argument("--plot", default="bench-delivery.png")
    args = parser.parse_args()
    _raise_nofile()
    b = NchanBench(args) if args.target == "nchan" else Bench(args)
    try:
        print(f"[1/4] registering {args.devices:,} devices", flush=True)
        app, creds = b.register(args.devices)
        rss_before = b.server_rss()
        print(
            f"[2/4] connecting them to {b.name} through {len(b.urls)} port(s) ({len(rss_before)} server processes)",
            flush=True,
        )
        b.start_workers(app, creds)
        connect_s = b.wait_connected(args.devices, timeout=max(120, args.devices / 200))
        held = sum(b.connected.values())
        time.sleep(2)
        rss_after = b.server_rss()
        grown = sum(rss_after.values()) - sum(rss_before.values())
        per_conn = grown / held if held else float("nan")
        print(
            f"  held {held:,} connections after {connect_s:.1f}s ({held / connect_s:,.0f}/s); "
            f"server RSS {sum(rss_after.values()) / 2**20:,.0f} MiB, {per_conn / 1024:.1f} KiB per connection",
            flush=True,
        )

        print(f"[3/4] {args.broadcasts} broadcasts to {held:,} devices", flush=True)
        casts = []
        for i in range(args.broadcasts):
            r = b.broadcast(app, held, timeout=120)
            casts.append(r)
            print(
                f"  broadcast {i + 1}: {r['got']:,} devices, last after {r['last_s']:.2f}s, "
                f"{r['per_s']:,.0f} deliveries/s; the load generator used {r['client_cpu_s']:.2f} CPU-s",
                flush=True,
            )
        lat: list[float] = []
        if args.target == "pushgrid":
            waited = b.settle(app, [r["msg_id"] for r in casts], held, timeout=600)
            print(f"  every broadcast's receipts counted {waited:.0f}s after the last one", flush=True)
            print(f"[4/4] targeted pushes at {args.rate:g}/s for {args.seconds:g}s", flush=True)
            lat = b.targeted(app, creds, args.rate, args.seconds)
        print(f"\n{b.name}:")
        print(f"connections held        {held:,} of {args.devices:,} ({len(rss_after)} server processes)")
        print(f"memory per connection   {per_conn / 1024:.1f} KiB (server RSS growth / connections)")
        print(f"broadcast deliveries/s  {statistics.median(r['per_s'] for r in casts):,.0f} (median)")
        print(f"broadcast last device   {statistics.median(r['last_s'] for r in casts):.2f} s (median)")
        cpu_per_k = statistics.median(1000 * r["client_cpu_s"] / max(1, r["got"]) for r in casts)
        print(f"load generator CPU      {cpu_per_k * 1000:.0f} ms per 1,000 deliveries (median; its own rusage)")
        if lat:
            print(
                f"targeted latency        p50 {_pct(lat, 0.5):.1f} ms  p90 {_pct(lat, 0.9):.1f} ms  "
                f"p99 {_pct(lat, 0.99):.1f} ms  ({len(lat)} pushes)"
            )
        _plot(args.plot, b.name, casts, lat, held, per_conn)
        print(f"plot saved to {args.plot}")
    finally:
        b.stop()
    return 0


def _plot(path: str, name: str, casts: list[dict[str, Any]], lat: list[float], held: int, per_conn: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, c) = plt.subplots(1, 2, figsize=(13, 4.5))
    for i, r in enumerate(casts):
        a.plot(r["curve"], range(1, len(r["curve"]) + 1), label=f"broadcast {i + 1}: last {r['last_s']:.2f}s")
    a.set_xlabel("seconds after push")
    a.set_ylabel("devices that have it")
    a.set_title(f"{name}: broadcast fan-out, {held:,} connections ({per_conn / 1024:.1f} KiB each)")
    a.legend()
    if lat:
        c.plot(lat, [i / len(lat) for i in range(len(lat))])
        c.set_xscale("log")
    c.set_xlabel("end-to-end latency (ms)")
    c.set_ylabel("fraction of targeted pushes")
    c.set_title(f"targeted latency: p50 {_pct(lat, 0.5):.1f} ms, p99 {_pct(lat, 0.99):.1f} ms")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
