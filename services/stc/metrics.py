"""STC's own counters: what its devices do, beside the Slice operations every server counts.

Declared once per process in Prometheus' default registry, which services.common.metrics serves
(or stand-ins that keep nothing, with metrics off). Labels have few values by construction: a
close code a device sends is counted under its own number only if PROTOCOL.md knows it, so a
device cannot grow the table.
"""

from __future__ import annotations

from services.common.metrics import counter, gauge
from services.stc.protocol import Close

CONNECTIONS = gauge("pushgrid_stc_connections", "Open device connections, before and after hello")
DEVICES = gauge("pushgrid_stc_devices", "Devices with a verified session on this STC")
HELLOS = counter(
    "pushgrid_stc_hellos",
    "Hellos answered, by outcome (ok, or the error that closed the connection)",
    ["outcome"],
)
REGISTRATIONS = counter(
    "pushgrid_stc_registrations",
    "Device registrations answered, by outcome (ok, or the error that closed the connection)",
    ["outcome"],
)
DELIVERIES = counter(
    "pushgrid_stc_deliveries",
    "Message frames written to devices: live (a dispatcher's deliver), broadcast, or replay (after hello)",
    ["kind"],
)
ACKS = counter("pushgrid_stc_acks", "Acks of messages sent on the same connection (others are ignored)")
REPLAYS = counter("pushgrid_stc_replays", "Hellos whose device was sent what it had missed")
CLOSES = counter(
    "pushgrid_stc_closes",
    "Device connections closed, by close code and by whom: stc, device, or network (no close frame)",
    ["code", "by"],
)

LIVE = DELIVERIES.labels("live")
BROADCAST = DELIVERIES.labels("broadcast")
REPLAYED = DELIVERIES.labels("replay")
ABNORMAL = 1006  # RFC 6455: the connection ended without a close frame
# RFC 6455's own codes (1001 going away, 1005 no code, ...) and PROTOCOL.md's.
_KNOWN_CODES = frozenset(range(1000, 1016)) | frozenset(int(c) for c in Close)


def closed(code: int, by: str) -> None:
    """Counts one close; a code neither RFC 6455 nor PROTOCOL.md defines is counted as "other"."""
    CLOSES.labels(str(code) if code in _KNOWN_CODES else "other", by).inc()


def outcome(exc: BaseException | None) -> str:
    """The label of how a hello or registration ended: ok, or its error's name."""
    return "ok" if exc is None else type(exc).__name__
