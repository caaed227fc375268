"""What the console's JSON endpoints answer: the grid, a push's report, an upgrade's progress.

Pure shaping of what IceGrid's admin, DBAgent and the upgrade record give, so the page gets
plain JSON and the tests can check it without servers. Msg ids go out as strings: they are
above 2**53, which a JavaScript number cannot hold.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import Ice

from services.common import upgrades, validation
from services.common.contract import PushGrid

MSG_ID_MAX = 2**63 - 1


class BadRequest(Exception):
    """A request the console cannot act on (a malformed msg id); the message says why."""


# ---------------------------------------------------------------- the grid


def grid(status: Mapping[str, Any], node_infos: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """services.common.gridadmin.status, as lists the page renders, with each node's host."""
    servers = list(status["servers"])
    return {
        "registries": [{"name": n, "up": up} for n, up in sorted(status["registries"].items())],
        "nodes": [{"name": n, "up": up, "info": node_infos.get(n)} for n, up in sorted(status["nodes"].items())],
        "replica_groups": [{"id": gid, **g} for gid, g in sorted(status["replica_groups"].items())],
        "servers": servers,
        "active": sum(1 for s in servers if s["state"] == "Active"),
    }


# ---------------------------------------------------------------- a push


def msg_id(text: str | None) -> int:
    """A msg id typed by an operator; BadRequest unless it is a positive 64-bit number."""
    text = (text or "").strip()
    if not text.isdigit() or len(text) > 19 or not 0 < int(text) <= MSG_ID_MAX:
        raise BadRequest("a msg id is a positive number of at most 19 digits")
    return int(text)


def audience(request: PushGrid.PushRequest) -> dict[str, Any]:
    """Who the push was for: kinds and sizes, never names (as the logs say it), and platforms."""
    sizes = validation.audience_sizes(request.audience)
    return {
        "everyone": bool(request.audience.all) and not sizes,
        "parts": [{"kind": kind, "count": count} for kind, count in sizes],
        "platforms": [str(p) for p in request.platforms or ()],
    }


def message(
    record: PushGrid.MessageRecord,
    stats: PushGrid.MessageStats | None,
    curve: Sequence[PushGrid.CurvePoint],
    error: str,
) -> dict[str, Any]:
    """A push's record, report and delivery curve (cumulative: devices reached by each offset)."""
    request = record.request
    total = 0
    points = []
    for p in sorted(curve, key=lambda p: p.offsetSeconds):
        total += p.received
        points.append({"offset": p.offsetSeconds, "width": p.widthSeconds, "received": p.received, "total": total})
    return {
        "msg_id": str(record.msgId),
        "app": record.appKey,
        "state": str(record.state),
        "created_at": record.createdAt,
        "send_at": record.sendAt,
        "expires_at": record.expiresAt,
        "kind": "notification" if request.notification and request.notification.alert else "message",
        "audience": audience(request),
        "report": {
            "targets": stats.targets if stats else 0,
            "sent_online": stats.sentOnline if stats else 0,
            "stored_offline": stats.storedOffline if stats else 0,
            "received": stats.received if stats else 0,
            "error": error,
        },
        "curve": points,
    }


def lookup(db: PushGrid.DBAgentPrx, msg: int) -> dict[str, Any]:
    """The push msg through DBAgent: findMessage (an operator knows no app key), then the app's
    report, errors and curve. UnknownMessage and Unavailable reach the caller."""
    record = db.findMessage(msg)
    stats = next(iter(db.getStats(record.appKey, [msg])), None)
    errors = db.getMessageErrors(record.appKey, [msg])
    try:
        curve = db.getCurve(record.appKey, msg)
    except Ice.OperationNotExistException:  # a DBAgent of a release before receipt curves
        curve = []
    return message(record, stats, curve, errors[0].error if errors else "")


# ---------------------------------------------------------------- an upgrade


def upgrade(
    servers: Sequence[Mapping[str, Any]], progress: upgrades.Progress | None, error: str = ""
) -> dict[str, Any]:
    """Which release each server runs now and, from the rollout's record, where it is going and
    each server's step. The summary says "upgrade in progress: N of M servers on <release>"
    whenever servers run different releases (or the record says one runs)."""
    ours = [s for s in servers if s.get("distributed")]
    on = collections.Counter(s["release"] for s in ours if s["release"] and s["release"] != "?")
    running = progress is not None and progress.phase in (upgrades.UPGRADING, upgrades.ROLLING_BACK)
    target = progress.target if progress is not None and running else (on.most_common(1)[0][0] if on else "")
    mixed = len(on) > 1
    if running or mixed:
        summary = f"upgrade in progress: {on[target]} of {len(ours)} servers on {target}"
    elif not on:
        summary = "no server says which release it runs"
    elif on[target] == len(ours):
        summary = f"every server on {target} ({len(ours)} servers)"
    else:
        summary = f"{on[target]} of {len(ours)} servers on {target}; the others are not running"
    steps = progress.servers if progress is not None else {}
    record = None
    if progress is not None:
        record = {
            "target": progress.target,
            "previous": progress.previous,
            "phase": progress.phase,
            "note": progress.note,
            "started_at": progress.started_at,
            "updated_at": progress.updated_at,
            "steps": [{"server": sid, "step": step} for sid, step in progress.servers.items()],
        }
    return {
        "summary": summary,
        "in_progress": running or mixed,
        "target": target,
        "releases": [{"release": r, "servers": n} for r, n in sorted(on.items())],
        "servers": [
            {
                "id": s["id"],
                "node": s["node"],
                "state": s["state"],
                "release": s["release"],
                "step": steps.get(s["id"], ""),
            }
            for s in ours
        ],
        "record": record,
        "record_error": error,
    }
