"""Every server's own metrics, kept in Prometheus' client library and served in its text format.

One registry per process (prometheus_client's default, which also reports the process's CPU,
memory and open files). What every server measures the same way lives here: each Slice
operation it dispatches (services.common.servants times them all, from locate() to finished(),
so an asynchronous answer is timed to when it was sent), by operation and outcome. A service's
own counters are declared in its own modules with the same library.

Each server serves them over HTTP on its internal address (PushGrid.Metrics.Host, the address
its adapters listen on; an OS-picked port) and says where in its own property
PushGrid.Metrics.Url, which IceGrid's admin reads: `pushgrid metrics` collects every server's.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

HOST_PROPERTY = "PushGrid.Metrics.Host"
URL_PROPERTY = "PushGrid.Metrics.Url"

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


def serve(host: str) -> str:
    """Serves this process's metrics on host (an OS-picked port, a thread of its own); their URL."""
    server, _ = start_http_server(0, addr=host)
    return f"http://{host}:{server.server_port}/metrics"
