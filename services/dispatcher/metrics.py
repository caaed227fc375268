"""The dispatcher's own counters: tasks, pages and how far each partition's tasks wait behind.

Declared once per process in Prometheus' default registry, which services.common.metrics serves
(or stand-ins that keep nothing, with metrics off).
"""

from __future__ import annotations

from services.common.metrics import counter, gauge

TASKS = counter(
    "pushgrid_dispatcher_tasks",
    "Tasks ended, by outcome: done, already done, skipped, stopped, dropped, "
    "interrupted (resumed by the partition's next owner) or failed (retried)",
    ["outcome"],
)
PAGES = counter("pushgrid_dispatcher_pages", "Audience pages sent (each one resolved, queued, delivered, counted)")
TARGETS = counter("pushgrid_dispatcher_targets", "Devices in the pages sent")
ONLINE = counter("pushgrid_dispatcher_sent_online", "Devices of those pages an STC had connected and sent to")
LAG = gauge(
    "pushgrid_dispatcher_lag",
    "Tasks on the partition not yet read by this dispatcher (its end offset minus its position)",
    ["partition"],
)
