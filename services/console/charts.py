"""The console's live charts: device connections and push rates, sampled from every server.

Every 2 s the sampler reads each server's own metrics (the URL it publishes, found through
IceGrid's admin: services.common.gridadmin) and keeps one point: the device connections all STC
processes hold (pushgrid_stc_connections) and, per second since the point before, the pushes
Push accepted, the message frames STC wrote to devices and the acks devices sent back (the
receipts). Points are kept in a ring of the last 10 minutes, which the page reads as JSON.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import Ice

from services.common import gridadmin, scrape
from services.common.clock import now_ms

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 2.0
WINDOW_SECONDS = 600.0
URLS_REFRESH_SECONDS = 15.0  # how often the sampler asks IceGrid again where servers serve metrics

CONNECTIONS = "pushgrid_stc_connections"
# what each rate counts: the chart's name -> the counter (summed over labels and servers)
RATES = {
    "accepted": "pushgrid_push_accepted_total",
    "deliveries": "pushgrid_stc_deliveries_total",
    "receipts": "pushgrid_stc_acks_total",
}


@dataclass(frozen=True)
class Point:
    """One sample: when (ms since the epoch), connections held, and each rate per second (None
    for the first sample, which has nothing to differ from)."""

    at: int
    connections: float
    rates: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        return {"t": self.at, "connections": self.connections, **self.rates}


def point(before: scrape.Sample | None, after: scrape.Sample, at_ms: int) -> Point:
    """The point of after: connections summed over every server; rates from before, counting
    only servers read both times (a server just found would count all its past as now)."""
    connections = sum(v for s in after.servers.values() for v in scrape.named(s, CONNECTIONS).values())
    seconds = after.at - before.at if before is not None else 0.0
    rates: dict[str, float | None] = {}
    for name, counter in RATES.items():
        if before is None or seconds <= 0:
            rates[name] = None
            continue
        grown = sum(
            v
            for sid, now in after.servers.items()
            if sid in before.servers
            for v in scrape.increase(before.servers[sid], now, counter).values()
        )
        rates[name] = grown / seconds
    return Point(at_ms, connections, rates)


class Ring:
    """The last `size` points, oldest first; safe to read while the sampler adds."""

    def __init__(self, size: int = int(WINDOW_SECONDS / INTERVAL_SECONDS)) -> None:
        self._points: collections.deque[Point] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, p: Point) -> None:
        with self._lock:
            self._points.append(p)

    def points(self) -> list[Point]:
        with self._lock:
            return list(self._points)

    def to_json(self, interval: float = INTERVAL_SECONDS) -> dict[str, Any]:
        return {
            "interval": interval,
            "window": (self._points.maxlen or 0) * interval,
            "points": [p.to_json() for p in self.points()],
        }


Fetch = Callable[[Mapping[str, str]], tuple[dict[str, str], list[str]]]


class Sampler:
    """Reads every server's metrics every interval into the ring, on a thread of its own.

    Where servers serve them is asked of IceGrid through a logged-in operator's admin session
    (admin() gives one, or None): with nobody logged in yet there is nothing to sample; once the
    servers are known they are sampled whether anyone is logged in or not (only the list goes
    stale, and it is asked again with the next login)."""

    def __init__(
        self,
        admin: Callable[[], Any | None],
        ring: Ring,
        interval: float = INTERVAL_SECONDS,
        fetch: Fetch = gridadmin.fetch_metrics,
        urls: Callable[[Any], dict[str, str]] = gridadmin.metrics_urls,
    ) -> None:
        self._admin, self.ring, self._interval, self._fetch, self._urls = admin, ring, interval, fetch, urls
        self._known: dict[str, str] = {}
        self._known_at = -URLS_REFRESH_SECONDS
        self._last: scrape.Sample | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sample_once(self) -> Point | None:
        """One reading into the ring (what the thread does every interval); None if no server is
        known yet."""
        urls = self._servers()
        if not urls:
            return None
        texts, silent = self._fetch(urls)
        if silent:  # restarted elsewhere, or gone: ask again where at the next chance
            self._known_at = -URLS_REFRESH_SECONDS
        sample = scrape.Sample(time.monotonic(), {sid: scrape.series(text) for sid, text in texts.items()})
        p = point(self._last, sample, now_ms())
        self._last = sample
        self.ring.add(p)
        return p

    def _servers(self) -> dict[str, str]:
        if time.monotonic() - self._known_at >= URLS_REFRESH_SECONDS:
            admin = self._admin()
            if admin is not None:
                try:
                    self._known = self._urls(admin)
                    self._known_at = time.monotonic()
                except Ice.Exception as exc:  # a lapsed session or a registry away: keep the last list
                    log.info("cannot ask where servers serve metrics: %r", exc)
        return self._known

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # one bad reading must not end the charts
                log.warning("sampling metrics failed", exc_info=True)
            next_at += self._interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - self._interval)
