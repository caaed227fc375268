"""Checks for values that arrive from partners and devices; each failure is a named Slice error.

Never trust a value a partner or device sends: every servant runs its inputs through these
before touching storage, so bad input fails before anything is changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from services.common import limits
from services.common.codec import request_to_dict
from services.common.contract import PushGrid

# JPush's rule: letters (any script), digits, _ and these: @ ! # $ & * + = . | (plus - and :)
_NAME_RE = re.compile(r"^[\w@!#$&*+=.|:\-]+$")
_REGID_RE = re.compile(r"^[0-9A-Za-z]+$")
_APPKEY_RE = re.compile(r"^[0-9a-f]{24}$")


def invalid(field: str, reason: str) -> PushGrid.InvalidArgument:
    return PushGrid.InvalidArgument(reason=reason, field=field)


def app_key(value: str) -> str:
    if not isinstance(value, str) or not _APPKEY_RE.fullmatch(value):
        raise invalid("appKey", "app key must be 24 lowercase hex characters")
    return value


def registration_id(value: str, field: str = "registrationId") -> str:
    if not isinstance(value, str) or not value or len(value) > limits.REGID_MAX_BYTES or not _REGID_RE.fullmatch(value):
        raise invalid(field, f"registration id must be 1-{limits.REGID_MAX_BYTES} letters or digits")
    return value


def _name(value: str, field: str, kind: str, max_bytes: int) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(field, f"{kind} must not be empty")
    if len(value.encode("utf-8")) > max_bytes:
        raise invalid(field, f"{kind} {value[:50]!r} is longer than {max_bytes} bytes")
    if not _NAME_RE.fullmatch(value):
        raise invalid(field, f"{kind} {value[:50]!r} may hold only letters, digits and _@!#$&*+=.|:-")
    return value


def tag(value: str, field: str = "tag") -> str:
    return _name(value, field, "tag", limits.TAG_MAX_BYTES)


def alias(value: str, field: str = "alias") -> str:
    return _name(value, field, "alias", limits.ALIAS_MAX_BYTES)


def tags(values: Sequence[str] | None, field: str = "tags", max_count: int = limits.TAGS_PER_CALL) -> list[str]:
    values = list(values or [])
    if len(values) > max_count:
        raise PushGrid.LimitExceeded(
            reason=f"{field}: at most {max_count} tags in one call", limit=field, max=max_count
        )
    return list(dict.fromkeys(tag(v, field) for v in values))


def page_limit(value: int) -> int:
    if value < 0:
        raise invalid("limit", "limit must not be negative")
    return min(value or limits.PAGE_DEFAULT, limits.PAGE_MAX)


def platforms(values: Sequence[PushGrid.Platform] | None) -> list[PushGrid.Platform]:
    out = []
    for p in values or []:
        if not isinstance(p, PushGrid.Platform):
            raise invalid("platforms", "unknown platform")
        out.append(p)
    return list(dict.fromkeys(out))


def audience(aud: PushGrid.Audience) -> PushGrid.Audience:
    """Checks an audience against the format rules and JPush's size limits; returns it cleaned."""
    if aud is None:
        raise invalid("audience", "audience is required")
    clean = PushGrid.Audience(
        all=bool(aud.all),
        tags=tags(aud.tags, "audience.tags", limits.AUDIENCE_MAX_TAGS),
        tagsAnd=tags(aud.tagsAnd, "audience.tagsAnd", limits.AUDIENCE_MAX_TAGS),
        tagsNot=tags(aud.tagsNot, "audience.tagsNot", limits.AUDIENCE_MAX_TAGS),
        aliases=list(aud.aliases or []),
        registrationIds=list(aud.registrationIds or []),
    )
    if len(clean.aliases) > limits.AUDIENCE_MAX_ALIASES:
        raise PushGrid.LimitExceeded(
            reason=f"at most {limits.AUDIENCE_MAX_ALIASES} aliases in one push",
            limit="audience.aliases",
            max=limits.AUDIENCE_MAX_ALIASES,
        )
    if len(clean.registrationIds) > limits.AUDIENCE_MAX_REGIDS:
        raise PushGrid.LimitExceeded(
            reason=f"at most {limits.AUDIENCE_MAX_REGIDS} registration ids in one push",
            limit="audience.registrationIds",
            max=limits.AUDIENCE_MAX_REGIDS,
        )
    clean.aliases = list(dict.fromkeys(alias(a, "audience.aliases") for a in clean.aliases))
    clean.registrationIds = list(
        dict.fromkeys(registration_id(r, "audience.registrationIds") for r in clean.registrationIds)
    )
    targeted = clean.tags or clean.tagsAnd or clean.tagsNot or clean.aliases or clean.registrationIds
    if clean.all and targeted:
        raise invalid("audience", "all cannot be combined with tags, aliases or registration ids")
    if not clean.all and not targeted:
        raise invalid("audience", "audience is empty: set all or name tags, aliases or registration ids")
    return clean


# ---------------------------------------------------------------- push requests


def audience_sizes(aud: PushGrid.Audience) -> list[tuple[str, int]]:
    """Each kind of an audience and how many it names, never the names (what logs and the
    console show of a push); empty for everyone."""
    kinds = [
        ("tags", aud.tags),
        ("tags_and", aud.tagsAnd),
        ("tags_not", aud.tagsNot),
        ("aliases", aud.aliases),
        ("registration_ids", aud.registrationIds),
    ]
    return [(kind, len(values)) for kind, values in kinds if values]


def _text(value: str | None, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    return value


def _extras(values: dict[str, Any] | None, field: str) -> dict[str, str]:
    out = {}
    for k, v in (values or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise invalid(field, f"{field} keys and values must be strings")
        out[k] = v
    return out


def _int_in(value: int, field: str, low: int, high: int, reason: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(field, reason)
    return value


def payload_bytes(req: PushGrid.PushRequest) -> int:
    """The size of notification plus message as JSON, as JPush counts it against its 4000 bytes."""
    d = request_to_dict(req)
    body = {k: d[k] for k in ("notification", "message") if k in d}
    return len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def push_request(req: PushGrid.PushRequest) -> PushGrid.PushRequest:
    """Checks a whole push request (everything but what needs storage); returns it cleaned.

    Pure, so Push runs it before any call: a bad request is refused before anything is recorded.
    """
    if req is None:
        raise invalid("request", "request is required")
    n = req.notification or PushGrid.Notification()
    m = req.message or PushGrid.Message()
    o = req.options or PushGrid.PushOptions()
    clean = PushGrid.PushRequest(
        audience=audience(req.audience),
        platforms=platforms(req.platforms),
        notification=PushGrid.Notification(
            alert=_text(n.alert, "notification.alert"),
            title=_text(n.title, "notification.title"),
            extras=_extras(n.extras, "notification.extras"),
        ),
        message=PushGrid.Message(
            content=_text(m.content, "message.content"),
            title=_text(m.title, "message.title"),
            contentType=_text(m.contentType, "message.contentType"),
            extras=_extras(m.extras, "message.extras"),
        ),
        options=PushGrid.PushOptions(
            sendno=_int_in(o.sendno, "options.sendno", -(2**31), 2**31 - 1, "sendno must be a 32-bit integer"),
            timeToLive=_int_in(
                o.timeToLive,
                "options.timeToLive",
                -1,
                limits.TTL_MAX_SECONDS,
                f"time_to_live must be -1 (default) or 0-{limits.TTL_MAX_SECONDS} seconds",
            ),
            overrideMsgId=_int_in(
                o.overrideMsgId, "options.overrideMsgId", 0, 2**63 - 1, "override_msg_id must be 0 (none) or a msg id"
            ),
            bigPushDuration=_int_in(
                o.bigPushDuration,
                "options.bigPushDuration",
                0,
                limits.BIG_PUSH_MAX_MINUTES,
                f"big_push_duration must be 0-{limits.BIG_PUSH_MAX_MINUTES} minutes",
            ),
        ),
    )
    if not clean.notification.alert and not clean.message.content:
        raise invalid("request", "a push needs notification.alert or message.content")
    size = payload_bytes(clean)
    if size > limits.PAYLOAD_MAX_BYTES:
        raise PushGrid.LimitExceeded(
            reason=f"notification plus message is {size} bytes as JSON, at most {limits.PAYLOAD_MAX_BYTES}",
            limit="payload",
            max=limits.PAYLOAD_MAX_BYTES,
        )
    return clean


def ttl_seconds(options: PushGrid.PushOptions) -> int:
    """A validated time_to_live in seconds: -1 means the default (one day), 0 online only."""
    return limits.TTL_DEFAULT_SECONDS if options.timeToLive < 0 else options.timeToLive


def send_at(value: int, now_ms: int) -> int:
    """A schedule's send time: in the future, and not further ahead than the schedule limit."""
    latest = now_ms + limits.SCHEDULE_MAX_AHEAD_SECONDS * 1000
    if isinstance(value, bool) or not isinstance(value, int) or not now_ms < value <= latest:
        raise invalid(
            "sendAt",
            f"sendAt must be in the future and at most "
            f"{limits.SCHEDULE_MAX_AHEAD_SECONDS // 86400} days ahead (ms since the epoch)",
        )
    return value
