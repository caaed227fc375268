"""`pushgrid metrics`: every server's metrics, collected through IceGrid, as one Prometheus text.

Each active server says where it serves its metrics (its property PushGrid.Metrics.Url, read
through IceGrid's admin, services/common/metrics.py); each is read over HTTP and its samples
are labelled with the server's id, the families of all servers merged, so the output is what a
Prometheus server scraping them all would hold.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

import IceGrid
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.common import metrics
from tools.grid import icegrid
from tools.grid.rundir import RunDir

FETCH_SECONDS = 5.0


class _Collected:
    """A collector of families already read (prometheus_client renders collectors)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def urls(run: RunDir) -> dict[str, str]:
    """Where each active server serves its metrics, by server id."""
    out = {}
    with icegrid.admin_session(run) as admin:
        for sid, state in icegrid.server_states(admin).items():
            if state == IceGrid.ServerState.Active:
                url = icegrid.server_property(admin, sid, metrics.URL_PROPERTY)
                if url:
                    out[sid] = url
    return out


def merged(texts: dict[str, str]) -> bytes:
    """The servers' texts as one, every sample labelled server=<id>."""
    families: dict[tuple[str, str], Metric] = {}
    for sid, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            into = families.setdefault(
                (family.name, family.type), Metric(family.name, family.documentation, family.type, family.unit)
            )
            into.samples += [
                Sample(s.name, {**s.labels, "server": sid}, s.value, s.timestamp, s.exemplar) for s in family.samples
            ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(list(families.values())))
    return generate_latest(registry)


def collect(run: RunDir) -> tuple[bytes, list[str]]:
    """Every active server's metrics as one text, and the servers that did not answer."""
    texts, silent = {}, []
    for sid, url in urls(run).items():
        try:
            with urllib.request.urlopen(url, timeout=FETCH_SECONDS) as answer:
                texts[sid] = answer.read().decode("utf-8")
        except OSError:
            silent.append(sid)
    return merged(texts), silent
