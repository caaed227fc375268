"""Every server's own metrics, kept in Prometheus' client library and served in its text format.

One registry per process (prometheus_client's default, which also reports the process's CPU,
memory and open files). What every server measures the same way lives here: each Slice
operation it dispatches (services.common.servants times them all, from locate() to finished(),
so an asynchronous answer is timed to when it was sent), by operation and outcome. A service's
own counters are declared in its own modules through counter(), gauge() and histogram() here.

Each server serves them over HTTP on its internal address (PushGrid.Metrics.Host, the address
its adapters listen on; an OS-picked port) and says where in its own property
PushGrid.Metrics.Url, which IceGrid's admin reads: `pushgrid metrics` collects every server's.

Operators can turn metrics off (`pushgrid up --metrics off`, the descriptor's variable
`metrics`), for a measurement of what they cost or to spare the work. One switch, read once at
import: the environment variable PUSHGRID_METRICS, which the descriptor sets in every Python
server's <env> (the same variable disables Ice's own IceMX view, IceMX.Metrics.PushGrid.Disabled).
It must be known at import, as the services declare their counters as module globals then.
With it "off" the factories below hand out NOOP, which takes every call a metric takes (labels,
inc, dec, set, set_function, observe, clear) and keeps nothing; the ServantTable times no
dispatch; and serve_until_shutdown serves no HTTP, so PushGrid.Metrics.Url stays empty. Unset
(tools, tests, a server started by hand) means on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram, start_http_server

ENV = "PUSHGRID_METRICS"
HOST_PROPERTY = "PushGrid.Metrics.Host"
URL_PROPERTY = "PushGrid.Metrics.Url"

# Dispatch latency buckets, in seconds: a cache hit takes tens of µs, a page of an audience or a
# scrypt check tens of ms, anything past a few seconds is a stuck backend.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
OK = "ok"
UNREADABLE = "unreadable"  # the parameters could not be read (servants.py answers InvalidArgument)


def switched_on(value: str | None) -> bool:
    """Whether PUSHGRID_METRICS's value keeps metrics: anything but "off" (unset included)."""
    return (value or "on").strip().lower() != "off"


ENABLED = switched_on(os.environ.get(ENV))


class CounterLike(Protocol):
    """What the services call on a counter (prometheus_client's Counter, or NOOP)."""

    def labels(self, *labelvalues: Any) -> CounterLike: ...
    def inc(self, amount: float = 1) -> None: ...


class GaugeLike(Protocol):
    """What the services call on a gauge (prometheus_client's Gauge, or NOOP)."""

    def labels(self, *labelvalues: Any) -> GaugeLike: ...
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...
    def set(self, value: float) -> None: ...
    def set_function(self, f: Callable[[], float]) -> None: ...
    def clear(self) -> None: ...


class HistogramLike(Protocol):
    """What the services call on a histogram (prometheus_client's Histogram, or NOOP)."""

    def labels(self, *labelvalues: Any) -> HistogramLike: ...
    def observe(self, amount: float) -> None: ...


class Noop:
    """A metric, or a labelled child of one, that keeps nothing: what the factories hand out
    while metrics are off, so the services' calls stay as they are and cost one call each."""

    __slots__ = ()

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Noop:
        return self

    def inc(self, amount: float = 1, exemplar: Any = None) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def set_function(self, f: Callable[[], float]) -> None:
        pass

    def observe(self, amount: float, exemplar: Any = None) -> None:
        pass

    def clear(self) -> None:
        pass

    def remove(self, *labelvalues: Any) -> None:
        pass


NOOP = Noop()


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> CounterLike:
    """A counter in the default registry, or NOOP while metrics are off."""
    return Counter(name, documentation, labelnames) if ENABLED else NOOP


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> GaugeLike:
    """A gauge in the default registry, or NOOP while metrics are off."""
    return Gauge(name, documentation, labelnames) if ENABLED else NOOP


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
) -> HistogramLike:
    """A histogram in the default registry, or NOOP while metrics are off."""
    return Histogram(name, documentation, labelnames, buckets=buckets) if ENABLED else NOOP


DISPATCHES = counter(
    "pushgrid_dispatches",
    "Slice operations dispatched by this server, by operation and outcome "
    "(ok, the name of the exception raised, or unreadable)",
    ["operation", "outcome"],
)
DISPATCH_SECONDS = histogram(
    "pushgrid_dispatch_seconds",
    "Time from a request's dispatch to its answer, by Slice operation",
    ["operation"],
)


# The labelled children dispatched() counts into, by (operation, outcome): looked up once each, as
# labels() takes a lock and builds a key on every call. Bounded: a servant's operations times the
# outcomes its operations can have.
_dispatch_children: dict[tuple[str, str], tuple[CounterLike, HistogramLike]] = {}


def dispatched(operation: str, outcome: str, seconds: float) -> None:
    children = _dispatch_children.get((operation, outcome))
    if children is None:
        children = (DISPATCHES.labels(operation, outcome), DISPATCH_SECONDS.labels(operation))
        _dispatch_children[(operation, outcome)] = children  # a race makes the same children twice
    count, timing = children
    count.inc()
    timing.observe(seconds)


def serve(host: str) -> str:
    """Serves this process's metrics on host (an OS-picked port, a thread of its own); their URL,
    or "" while metrics are off (nothing is served)."""
    if not ENABLED:
        return ""
    server, _ = start_http_server(0, addr=host)
    return f"http://{host}:{server.server_port}/metrics"
