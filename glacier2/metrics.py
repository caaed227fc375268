"""The gateway's own counters: partner sessions, and logins by how they were answered.

Declared once per process in Prometheus' default registry, which services.common.metrics serves
(or stand-ins that keep nothing, with metrics off).
"""

from __future__ import annotations

from services.common.metrics import counter, gauge

SESSIONS = gauge("pushgrid_gateway_sessions", "Partner sessions this gateway holds")
LOGINS = counter(
    "pushgrid_gateway_logins",
    "Logins answered: ok, wrong (key or secret), throttled (too many failures), unchecked (DBAgent out of reach)",
    ["outcome"],
)
SESSIONS_REFUSED = counter(
    "pushgrid_gateway_sessions_refused", "Sessions refused after a good login: the app held its most sessions"
)
