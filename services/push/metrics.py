"""Push's own counters: messages accepted, rejected by error, and refused by an app's quota.

A batch counts each of its pushes, which fail alone. Declared once per process in Prometheus'
default registry, which services.common.metrics serves (or stand-ins that keep nothing, with
metrics off).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.common.contract import PushGrid
from services.common.metrics import counter

ACCEPTED = counter(
    "pushgrid_push_accepted", "Messages accepted, by operation (push, pushBatch, schedule)", ["operation"]
)
REJECTED = counter(
    "pushgrid_push_rejected",
    "Messages refused, by the error the partner was answered (RateLimited is counted apart)",
    ["error"],
)
RATE_LIMITED = counter("pushgrid_push_rate_limited", "Messages refused because their app pushed past its quota")


def refused(error: str) -> None:
    """Counts one message refused with the Slice exception named error."""
    if error == "RateLimited":
        RATE_LIMITED.inc()
    else:
        REJECTED.labels(error).inc()


@contextmanager
def counted(operation: str) -> Iterator[None]:
    """Counts the one message of push or schedule: accepted if the block ends, else its error."""
    try:
        yield
    except PushGrid.PushGridError as exc:
        refused(type(exc).__name__)
        raise
    ACCEPTED.labels(operation).inc()
