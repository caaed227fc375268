"""Calls per second through the DBAgent and TagAlias replica groups of a running grid.

Each client process opens its own communicator and keeps `--window` asynchronous calls in
flight for `--seconds`, resolving the well-known objects through the replicated registry with a
short locator cache so both replicas serve. Prints calls/s and latency percentiles per operation
(medians over --repeat runs) and saves a bar plot.

    .venv/bin/python -m tools.bench_grid --run-dir run --clients 2 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import Ice

from services.common.contract import PushGrid
from services.common.ice import client_communicator, dbagent, tagalias
from tools.grid.rundir import RunDir


def _setup(config: str) -> dict[str, Any]:
    """One app with a device and a few tags, shared by every client process."""
    comm = client_communicator(config)
    try:
        db, ta = dbagent(comm), tagalias(comm)
        creds = db.createApp("bench-" + uuid.uuid4().hex[:8], 600)
        dev = db.registerDevice(creds.appKey, PushGrid.Platform.Android)
        ta.addDevice(creds.appKey, dev.registrationId, PushGrid.Platform.Android)
        ta.addTags(creds.appKey, dev.registrationId, ["bench", "vip"])
        return {"app": creds.appKey, "regid": dev.registrationId, "token": dev.deviceToken}
    finally:
        comm.destroy()


def _operation(name: str, comm: Ice.Communicator, ctx: dict[str, str]) -> Callable[[], Ice.Future]:
    db = dbagent(comm).ice_locatorCacheTimeout(2)
    ta = tagalias(comm).ice_locatorCacheTimeout(2)
    ops = {
        "DBAgent.getApp": lambda: db.getAppAsync(ctx["app"]),
        "DBAgent.verifyDevice": lambda: db.verifyDeviceAsync(ctx["app"], ctx["regid"], ctx["token"]),
        "TagAlias.getTags": lambda: ta.getTagsAsync(ctx["app"], ctx["regid"]),
        "TagAlias.isMember": lambda: ta.isMemberAsync(ctx["app"], "bench", ctx["regid"]),
    }
    return ops[name]


def _client(config: str, op: str, ctx: dict[str, str], seconds: float, window: int, out: mp.Queue[Any]) -> None:
    comm = client_communicator(config, "--Ice.ThreadPool.Client.Size=2")
    call = _operation(op, comm, ctx)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    slots = threading.Semaphore(window)
    deadline = time.monotonic() + seconds

    def done(started: float, fut: Ice.Future) -> None:
        nonlocal errors
        with lock:
            if fut.exception() is None:
                latencies.append(time.monotonic() - started)
            else:
                errors += 1
        slots.release()

    call().result()  # connect and warm up outside the measurement
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        slots.acquire()
        started = time.monotonic()
        call().add_done_callback(lambda fut, s=started: done(s, fut))
    for _ in range(window):
        slots.acquire()
    elapsed = time.monotonic() - t0
    comm.destroy()
    out.put((len(latencies), errors, elapsed, latencies))


def run_once(config: str, op: str, ctx: dict[str, Any], clients: int, seconds: float, window: int) -> dict[str, Any]:
    out: mp.Queue[Any] = mp.Queue()
    procs = [mp.Process(target=_client, args=(config, op, ctx, seconds, window, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    calls = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[3])
    return {
        "calls_per_s": calls / max(r[2] for r in results),
        "errors": sum(r[1] for r in results),
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else 0,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="run")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--window", type=int, default=16, help="calls in flight per client")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ops", default="DBAgent.getApp,DBAgent.verifyDevice,TagAlias.getTags,TagAlias.isMember")
    parser.add_argument("--plot", default="bench-grid.png")
    args = parser.parse_args()

    config = RunDir(args.run_dir).client_config
    ctx = _setup(config)
    summary = {}
    for op in args.ops.split(","):
        runs = []
        for i in range(args.repeat):
            r = run_once(config, op, ctx, args.clients, args.seconds, args.window)
            runs.append(r)
            print(
                f"  {op:<22} run {i + 1}/{args.repeat}: {r['calls_per_s']:8.0f} calls/s  "
                f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  errors {r['errors']}",
                flush=True,
            )
        summary[op] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"\nmedian of {args.repeat} runs, {args.clients} client processes x {args.window} calls in flight:")
    print(f"{'operation':<22} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for op, s in summary.items():
        print(f"{op:<22} {s['calls_per_s']:9.0f} {s['p50_ms']:8.2f} {s['p99_ms']:8.2f} {s['errors']:7.0f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(summary)
    ax.bar(names, [summary[n]["calls_per_s"] for n in names], color="#4477aa")
    ax.set_ylabel("calls per second (median)")
    ax.set_title(f"pushgrid replica groups: {args.clients} clients x {args.window} in flight")
    for i, n in enumerate(names):
        ax.text(i, summary[n]["calls_per_s"], f"p99 {summary[n]['p99_ms']:.1f} ms", ha="center", va="bottom")
    fig.tight_layout()
    fig.savefig(args.plot)
    print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
