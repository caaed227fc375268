"""`pushgrid metrics`: every server's metrics, collected through IceGrid, as one Prometheus text.

Two sources, both read through IceGrid's admin. Each Python server says where it serves its own
metrics (its property PushGrid.Metrics.Url, services/common/metrics.py), read over HTTP. And
every server, the C++ router and IcePatch2 included, keeps Ice's own metrics (IceMX) in the view
the descriptor enables (ICEMX_VIEW: dispatches per operation, connections per adapter), read from
its admin's Metrics facet and turned into pushgrid_icemx_* families. Every sample is labelled
with its server's id and the families of all servers merged, so the output is what a Prometheus
server scraping them all would hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import Ice
import IceGrid
import IceMX
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.common import gridadmin
from tools.grid import icegrid
from tools.grid.rundir import RunDir

ICEMX_VIEW = "PushGrid"  # icegrid/pushgrid.xml, properties "IceMX"
ICEMX_TIMEOUT_MS = 5000


class _Collected:
    """A collector of families already read (prometheus_client renders collectors)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def urls(run: RunDir) -> dict[str, str]:
    """Where each active server serves its metrics, by server id."""
    with icegrid.admin_session(run) as admin:
        return gridadmin.metrics_urls(admin)


def icemx_families(
    sid: str, view: Mapping[str, Sequence[IceMX.Metrics]], failures: Mapping[str, Mapping[str, int]]
) -> list[Metric]:
    """One server's IceMX view as Prometheus families, labelled server=sid. failures: for each
    operation that had any, the count by local exception (IceMX keeps them apart from the view)."""
    server = {"server": sid}
    out = []

    def family(name: str, doc: str, kind: str, samples: list[tuple[str, dict[str, str], float]]) -> None:
        metric = Metric(name, doc, kind)
        metric.samples = [Sample(n, {**labels, **server}, value) for n, labels, value in samples]
        out.append(metric)

    dispatches = sorted(view.get("Dispatch", ()), key=lambda m: m.id)
    ops = [({"operation": m.id}, m) for m in dispatches]
    family(
        "pushgrid_icemx_dispatches",
        "Requests dispatched, by operation (Ice's own count)",
        "counter",
        [("pushgrid_icemx_dispatches_total", labels, m.total) for labels, m in ops],
    )
    family(
        "pushgrid_icemx_dispatches_current",
        "Requests being dispatched now, by operation",
        "gauge",
        [("pushgrid_icemx_dispatches_current", labels, m.current) for labels, m in ops],
    )
    family(
        "pushgrid_icemx_dispatch_seconds",
        "Time spent dispatching, by operation (its sum over requests)",
        "counter",
        [("pushgrid_icemx_dispatch_seconds_total", labels, m.totalLifetime / 1e6) for labels, m in ops],
    )
    family(
        "pushgrid_icemx_dispatch_user_exceptions",
        "Requests answered with a Slice exception, by operation",
        "counter",
        [
            ("pushgrid_icemx_dispatch_user_exceptions_total", labels, getattr(m, "userException", 0))
            for labels, m in ops
        ],
    )
    family(
        "pushgrid_icemx_dispatch_failures",
        "Requests that failed with an Ice local exception, by operation and exception",
        "counter",
        [
            ("pushgrid_icemx_dispatch_failures_total", {"operation": op, "exception": exc}, count)
            for op, by_exc in sorted(failures.items())
            for exc, count in sorted(by_exc.items())
        ],
    )
    conns = [({"adapter": m.id}, m) for m in sorted(view.get("Connection", ()), key=lambda m: m.id)]
    family(
        "pushgrid_icemx_connections",
        "Open Ice connections, by object adapter (Communicator: the server's own outgoing ones)",
        "gauge",
        [("pushgrid_icemx_connections", labels, m.current) for labels, m in conns],
    )
    family(
        "pushgrid_icemx_connections_opened",
        "Ice connections opened, by object adapter",
        "counter",
        [("pushgrid_icemx_connections_opened_total", labels, m.total) for labels, m in conns],
    )
    return [f for f in out if f.samples]


def read_icemx(admin: IceGrid.AdminPrx, sid: str) -> list[Metric]:
    """The server's IceMX view, through IceGrid's admin; [] if it has none to give (not running,
    or a release whose descriptor did not enable the view)."""
    try:
        facet = IceMX.MetricsAdminPrx.uncheckedCast(admin.getServerAdmin(sid), "Metrics")
        mx = facet.ice_invocationTimeout(ICEMX_TIMEOUT_MS)
        view, _ = mx.getMetricsView(ICEMX_VIEW)
        failures = {
            m.id: dict(mx.getMapMetricsFailures(ICEMX_VIEW, "Dispatch", m.id).failures)
            for m in view.get("Dispatch", ())
            if m.failures
        }
    except (Ice.Exception, IceMX.UnknownMetricsView):
        return []
    return icemx_families(sid, view, failures)


def merged(texts: dict[str, str], more: Iterable[Metric] = ()) -> bytes:
    """The servers' texts as one, every sample labelled server=<id>, with more families (already
    labelled) merged in."""
    families: dict[tuple[str, str], Metric] = {}
    for sid, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            into = families.setdefault(
                (family.name, family.type), Metric(family.name, family.documentation, family.type, family.unit)
            )
            into.samples += [
                Sample(s.name, {**s.labels, "server": sid}, s.value, s.timestamp, s.exemplar) for s in family.samples
            ]
    for family in more:
        into = families.setdefault((family.name, family.type), Metric(family.name, family.documentation, family.type))
        into.samples += family.samples
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(list(families.values())))
    return generate_latest(registry)


def collect(run: RunDir) -> tuple[bytes, list[str]]:
    """Every active server's metrics as one text, and the servers whose own metrics did not
    answer: one admin session, the servers' states read once for both sources."""
    with icegrid.admin_session(run) as admin:
        active = gridadmin.active_servers(admin)
        texts, silent = gridadmin.fetch_metrics(gridadmin.metrics_urls(admin, active))
        icemx = [family for sid in active for family in read_icemx(admin, sid)]
    return merged(texts, icemx), silent
