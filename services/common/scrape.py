"""Servers' metrics as read back from Prometheus' text format, and what counters grew by.

Counters only mean something as a difference between two readings, and a server that restarted
begins its counters at 0 again; the arithmetic for that is here, once, for every reader of the
servers' metrics (`pushgrid top`, the console's charts).
"""

from __future__ import annotations

import dataclasses

from prometheus_client.parser import text_string_to_metric_families

# A series: sample name and its labels but the server's.
Key = tuple[str, tuple[tuple[str, str], ...]]
Series = dict[Key, float]


@dataclasses.dataclass(frozen=True)
class Sample:
    """Every server's series, as one collection found them, and when (time.monotonic())."""

    at: float
    servers: dict[str, Series]


def parse(text: str, at: float) -> Sample:
    """A collection's text (every sample labelled server=<id>) as each server's series."""
    servers: dict[str, Series] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            server = labels.pop("server", None)
            if server is not None:
                servers.setdefault(server, {})[(s.name, tuple(sorted(labels.items())))] = s.value
    return Sample(at, servers)


def series(text: str) -> Series:
    """One server's own text (no server label) as its series."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def named(values: Series, name: str) -> Series:
    """The series of one sample name."""
    return {k: v for k, v in values.items() if k[0] == name}


def increase(before: Series, after: Series, name: str) -> Series:
    """How much each counter series called name grew, never less than 0: a series smaller than it
    was has restarted from 0 (the server restarted), so all of its value is new."""
    out = {}
    for key, value in named(after, name).items():
        was = before.get(key, 0.0)
        out[key] = value - was if value >= was else value
    return out
