"""Every server's own metrics, kept in Prometheus' client library and written in its text format.

One registry per process (prometheus_client's default, which also reports the process's CPU,
memory and open files). What every server measures the same way lives here: each Slice
operation it dispatches (services.common.servants times them all, from locate() to finished(),
so an asynchronous answer is timed to when it was sent), by operation and outcome. A service's
own counters are declared in its own modules with the same library.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram, generate_latest

# Dispatch latency buckets, in seconds: a cache hit takes tens of µs, a page of an audience or a
# scrypt check tens of ms, anything past a few seconds is a stuck backend.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
OK = "ok"
UNREADABLE = "unreadable"  # the parameters could not be read (servants.py answers InvalidArgument)

DISPATCHES = Counter(
    "pushgrid_dispatches",
    "Slice operations dispatched by this server, by operation and outcome "
    "(ok, the name of the exception raised, or unreadable)",
    ["operation", "outcome"],
)
DISPATCH_SECONDS = Histogram(
    "pushgrid_dispatch_seconds",
    "Time from a request's dispatch to its answer, by Slice operation",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)


def dispatched(operation: str, outcome: str, seconds: float) -> None:
    DISPATCHES.labels(operation, outcome).inc()
    DISPATCH_SECONDS.labels(operation).observe(seconds)


def text() -> bytes:
    """Everything this process measures, in Prometheus' text exposition format."""
    return generate_latest(REGISTRY)
