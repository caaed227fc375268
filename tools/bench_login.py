"""What a flood of logins costs everyone else: the latency of other DBAgent calls while wrong
secrets pour into `verifyApp`, against the same calls with no flood, as a ratio.

    .venv/bin/python -m tools.bench_login --run-dir run [--rounds 3] [--seconds 10]

A probe calls `DBAgent.getApp` (a one-row read) one call at a time, as DBAgent's other callers
do, in alternating phases: quiet, then flood. In a flood, worker processes (so their Python does
not share the probe's GIL) keep `--flooders` calls to `verifyApp` in flight with wrong secrets,
straight to DBAgent: what a botnet with an address per guess gets past the partner door. Each
login costs a scrypt (16 MiB, tens of ms) on DBAgent's own bounded login threads; logins beyond
their queue are answered Unavailable at once. Printed per phase: the probe's p50 and p99, logins
checked and logins told to try again; then the flood/quiet ratios (medians over rounds), and a
plot of the probe's latency distribution in each kind of phase.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import threading
import time
import uuid
from typing import Any

from services.common.contract import PushGrid
from services.common.ice import client_communicator, dbagent
from tools.bench_delivery import _pct
from tools.grid.rundir import RunDir

WRONG_SECRET = "0" * 32


def _flooder(config: str, app: str, in_flight: int, stop: Any, out: Any) -> None:
    """Keeps in_flight wrong logins going until stop is set; reports (checked, refused)."""
    counts = {"checked": 0, "refused": 0}
    with client_communicator(config) as comm:
        db = dbagent(comm)

        def loop() -> None:
            while not stop.is_set():
                try:
                    db.verifyApp(app, WRONG_SECRET)
                except PushGrid.AuthenticationFailed:
                    counts["checked"] += 1
                except PushGrid.Unavailable:
                    counts["refused"] += 1

        threads = [threading.Thread(target=loop) for _ in range(in_flight)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    out.put((counts["checked"], counts["refused"]))


def probe(db: PushGrid.DBAgentPrx, app: str, seconds: float) -> list[float]:
    """getApp one call at a time for seconds; the latency of each, in ms, sorted."""
    lat: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        db.getApp(app)
        lat.append((time.perf_counter() - started) * 1000)
    return sorted(lat)


def phase(run: RunDir, db: PushGrid.DBAgentPrx, app: str, flood: bool, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    workers = []
    if flood:
        per = max(1, args.flooders // args.processes)
        workers = [
            ctx.Process(target=_flooder, args=(run.client_config, app, per, stop, out)) for _ in range(args.processes)
        ]
        for w in workers:
            w.start()
        time.sleep(2.0)  # the flood is under way before the probe starts
    lat = probe(db, app, args.seconds)
    stop.set()
    checked = refused = 0
    for _ in workers:
        c, r = out.get(timeout=60)
        checked, refused = checked + c, refused + r
    for w in workers:
        w.join(timeout=30)
    return {"lat": lat, "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "checked": checked, "refused": refused}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10, help="probe time per phase")
    parser.add_argument("--flooders", type=int, default=32, help="wrong logins in flight during a flood")
    parser.add_argument("--processes", type=int, default=2, help="processes the flooders run in")
    parser.add_argument("--plot", default="bench-login.png")
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    with client_communicator(run.client_config) as comm:
        db = dbagent(comm)
        app = db.createApp("bench-login-" + uuid.uuid4().hex[:8], 0).appKey
        phases: dict[str, list[dict[str, Any]]] = {"quiet": [], "flood": []}
        for n in range(args.rounds):
            for kind in ("quiet", "flood"):
                p = phase(run, db, app, kind == "flood", args)
                phases[kind].append(p)
                print(
                    f"[round {n + 1}/{args.rounds}] {kind:<5}: getApp p50 {p['p50']:.2f} ms  p99 {p['p99']:.2f} ms "
                    f"({len(p['lat'])} calls); logins checked {p['checked']:,}, told to try again {p['refused']:,}",
                    flush=True,
                )
    med = {k: {q: statistics.median(p[q] for p in v) for q in ("p50", "p99")} for k, v in phases.items()}
    checked = statistics.median(p["checked"] / args.seconds for p in phases["flood"])
    print(f"\nmedians of {args.rounds} rounds, getApp one call at a time for {args.seconds:g} s a phase")
    print(f"{'phase':<7} {'p50 ms':>8} {'p99 ms':>8}")
    for kind in phases:
        print(f"{kind:<7} {med[kind]['p50']:8.2f} {med[kind]['p99']:8.2f}")
    print(
        f"flood/quiet: p50 x{med['flood']['p50'] / med['quiet']['p50']:.2f}, "
        f"p99 x{med['flood']['p99'] / med['quiet']['p99']:.2f}; logins checked during a flood {checked:,.0f}/s"
    )
    _plot(args.plot, phases)
    print(f"plot saved to {args.plot}")
    return 0


def _plot(path: str, phases: dict[str, list[dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, runs in phases.items():
        lat = sorted(x for p in runs for x in p["lat"])
        ax.plot(lat, [i / len(lat) for i in range(len(lat))], label=f"{kind}: p99 {_pct(lat, 0.99):.2f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("DBAgent.getApp latency (ms)")
    ax.set_ylabel("fraction of calls")
    ax.set_title("other DBAgent calls, without and during a login flood")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
