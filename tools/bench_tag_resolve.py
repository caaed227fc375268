"""Benchmark: resolve one big tag page by page, through the TagAlias store and through the grid.

Loads --devices devices (default 1,000,000) into one tag of a fresh app with the bulk loader of
tools/tagalias_load.py (pipelined scripts, progress shown), then walks the whole tag with resolve() --repeat
times: directly through the store (Redis Cluster at --redis, or the grid's own Redis), again as
"tag OR an empty tag" so every bucket is first computed from the tags, and, with
--grid-config pointing at a run directory's pushgrid.cfg, through the TagAlias well-known proxy.
Prints load rate, resolve time and devices/s (median of the runs), saves a plot to --plot, and
finally deletes the tag through the store (timed too) so the cluster is left as it was.

    python tools/bench_tag_resolve.py --redis 127.0.0.1:7000
    python tools/bench_tag_resolve.py --grid-config run/pushgrid.cfg --devices 200000
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.cluster import RedisCluster

from services.common import limits
from services.common.config import RedisSettings, load_properties
from services.common.contract import PushGrid
from services.common.redis_client import cluster
from services.tagalias.store import TagAliasStore
from tools import tagalias_load

TAG = "bench"
Fetch = Callable[[str], PushGrid.AudiencePage]


@dataclass
class Run:
    """One walk over the tag: time, ids seen, and the (seconds, ids so far) curve for the plot."""

    mode: str
    seconds: float = 0.0
    seen: int = 0
    unique: int = 0
    pages: int = 0
    curve: list[tuple[float, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.seen / self.seconds if self.seconds else 0.0


def parse_redis(text: str, timeout: float) -> RedisSettings:
    try:
        return RedisSettings(nodes=RedisSettings.parse_nodes(text), timeout=timeout)
    except ValueError as exc:
        raise SystemExit(f"--redis: {exc}") from None


def load(client: RedisCluster, app: str, n: int, batch: int) -> tuple[float, list[tuple[float, int]]]:
    """Tags n devices with the bulk loader; answers seconds and a progress curve."""
    curve = [(0.0, 0)]
    started = time.monotonic()
    next_report = 0
    for first in range(0, n, batch):
        rids = [f"b{i:011x}" for i in range(first, min(n, first + batch))]
        refused = tagalias_load.tag_devices(client, app, TAG, rids)
        if refused:
            raise SystemExit(f"{len(refused)} devices refused the tag (device tag limit?)")
        done = first + len(rids)
        elapsed = time.monotonic() - started
        curve.append((elapsed, done))
        if done >= next_report or done == n:
            print(f"  loaded {done:>10,} / {n:,}  {done / elapsed:>10,.0f} devices/s", flush=True)
            next_report += max(n // 10, 1)
    return time.monotonic() - started, curve


def walk(mode: str, fetch: Fetch, check_unique: bool) -> Run:
    """Pages through the whole tag, timing it."""
    run = Run(mode=mode)
    seen_ids: set[str] = set()
    cursor = ""
    started = time.monotonic()
    while True:
        page = fetch(cursor)
        run.pages += 1
        run.seen += len(page.registrationIds)
        if check_unique:
            seen_ids.update(page.registrationIds)
        run.curve.append((time.monotonic() - started, run.seen))
        if page.done:
            break
        cursor = page.cursor
    run.seconds = time.monotonic() - started
    run.unique = len(seen_ids) if check_unique else run.seen
    return run


def runs_of(mode: str, fetch: Fetch, repeat: int, n: int) -> list[Run]:
    out = []
    for i in range(repeat):
        run = walk(mode, fetch, check_unique=(i == 0))
        print(
            f"  {mode} run {i + 1}: {run.seen:,} ids in {run.pages} pages, {run.seconds:.2f} s, "
            f"{run.rate:,.0f} devices/s",
            flush=True,
        )
        if i == 0 and run.unique != n:
            raise SystemExit(f"{mode}: resolved {run.unique:,} distinct devices, expected {n:,}")
        out.append(run)
    return out


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


def plot(path: str, n: int, load_s: float, load_curve: list[tuple[float, int]], results: dict[str, list[Run]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_load, ax_res) = plt.subplots(1, 2, figsize=(12, 4.8))
    ax_load.plot([t for t, _ in load_curve], [d / 1e6 for _, d in load_curve], marker=".")
    ax_load.set_title(f"load {n:,} devices into one tag: {n / load_s:,.0f}/s")
    ax_load.set_xlabel("seconds")
    ax_load.set_ylabel("devices (millions)")
    ax_load.grid(alpha=0.3)
    colors = {"store": "tab:blue", "store-built": "tab:green", "grid": "tab:orange"}
    for mode, runs in results.items():
        med = median_run(runs)
        for run in runs:
            label = f"{mode}: median {med.seconds:.2f} s, {med.rate:,.0f}/s" if run is med else None
            ax_res.plot(
                [t for t, _ in run.curve],
                [d / 1e6 for _, d in run.curve],
                color=colors.get(mode),
                alpha=1.0 if run is med else 0.35,
                label=label,
            )
    ax_res.set_title("resolve the tag page by page")
    ax_res.set_xlabel("seconds")
    ax_res.set_ylabel("devices resolved (millions)")
    ax_res.grid(alpha=0.3)
    ax_res.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot saved to {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1_000_000, help="devices in the tag (default 1,000,000)")
    ap.add_argument("--redis", help="HOST:PORT[,HOST:PORT...] of the Redis Cluster (store mode)")
    ap.add_argument("--grid-config", help="a run dir's pushgrid.cfg: also resolve through the TagAlias proxy")
    ap.add_argument("--repeat", type=int, default=3, help="walks per mode; the median is reported")
    ap.add_argument("--limit", type=int, default=limits.PAGE_MAX, help="page size asked for")
    ap.add_argument("--batch", type=int, default=20000, help="devices per bulk-load call")
    ap.add_argument("--timeout", type=float, default=5.0, help="Redis socket timeout in seconds")
    ap.add_argument("--plot", default="bench-tag-resolve.png", help="where to save the plot (PNG)")
    ap.add_argument("--keep", action="store_true", help="leave the app's data in Redis")
    args = ap.parse_args(argv)
    if args.devices < 1 or args.repeat < 1 or not 1 <= args.limit <= limits.PAGE_MAX:
        ap.error(f"--devices and --repeat must be positive, --limit 1..{limits.PAGE_MAX}")
    if args.redis:
        settings = parse_redis(args.redis, args.timeout)
    elif args.grid_config:
        settings = RedisSettings.from_properties(load_properties(args.grid_config))
    else:
        ap.error("give --redis HOST:PORT[,...] or --grid-config PATH")

    store = TagAliasStore(settings)
    client = cluster(settings)
    app = secrets.token_hex(12)
    audience = PushGrid.Audience(tags=[TAG])
    print(f"app {app}, tag {TAG!r}, {args.devices:,} devices, Redis {settings.nodes}")
    communicator = None
    try:
        load_s, load_curve = load(client, app, args.devices, args.batch)
        size = store.tag_size(app, TAG)
        print(f"loaded in {load_s:.1f} s ({args.devices / load_s:,.0f} devices/s); tagSize = {size:,}")

        results: dict[str, list[Run]] = {}
        results["store"] = runs_of(
            "store", lambda c: store.resolve(app, audience, [], c, args.limit), args.repeat, args.devices
        )
        # The same devices as "tag OR an empty tag": built per bucket into temporary sets first.
        union = PushGrid.Audience(tags=[TAG, TAG + ".none"])
        results["store-built"] = runs_of(
            "store-built", lambda c: store.resolve(app, union, [], c, args.limit), args.repeat, args.devices
        )
        if args.grid_config:
            from services.common.ice import client_communicator, tagalias

            communicator = client_communicator(args.grid_config)
            # No cached connection and no cached endpoints: every page asks the locator again, so
            # the round-robin replica group spreads consecutive pages over the replicas, as the
            # dispatcher's pages may be.
            prx = tagalias(communicator).ice_connectionCached(False).ice_locatorCacheTimeout(0)
            results["grid"] = runs_of(
                "grid", lambda c: prx.resolve(app, audience, [], c, args.limit), args.repeat, args.devices
            )

        print("\nresults")
        print(f"  load:    {args.devices:,} devices in {load_s:.1f} s = {args.devices / load_s:,.0f} devices/s")
        for mode, runs in results.items():
            med = median_run(runs)
            times = ", ".join(f"{r.seconds:.2f}" for r in runs)
            print(
                f"  resolve ({mode}): median {med.seconds:.2f} s = {med.rate:,.0f} devices/s over "
                f"{med.pages} pages of <= {args.limit} (runs: {times} s)"
            )
        plot(args.plot, args.devices, load_s, load_curve, results)
    finally:
        if communicator is not None:
            communicator.destroy()
        if not args.keep:
            started = time.monotonic()
            store.delete_tag(app, TAG)
            print(f"  deleteTag of {args.devices:,} members: {time.monotonic() - started:.1f} s (cleanup)")
        store.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
