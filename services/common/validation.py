"""Checks for values that arrive from partners and devices; each failure is a named Slice error.

Never trust a value a partner or device sends: every servant runs its inputs through these
before touching storage, so bad input fails before anything is changed.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from services.common import limits
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
        raise PushGrid.LimitExceeded(reason=f"{field}: at most {max_count} tags in one call", limit=field, max=max_count)
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
        raise PushGrid.LimitExceeded(reason=f"at most {limits.AUDIENCE_MAX_ALIASES} aliases in one push",
                                     limit="audience.aliases", max=limits.AUDIENCE_MAX_ALIASES)
    if len(clean.registrationIds) > limits.AUDIENCE_MAX_REGIDS:
        raise PushGrid.LimitExceeded(reason=f"at most {limits.AUDIENCE_MAX_REGIDS} registration ids in one push",
                                     limit="audience.registrationIds", max=limits.AUDIENCE_MAX_REGIDS)
    clean.aliases = list(dict.fromkeys(alias(a, "audience.aliases") for a in clean.aliases))
    clean.registrationIds = list(dict.fromkeys(registration_id(r, "audience.registrationIds")
                                               for r in clean.registrationIds))
    targeted = clean.tags or clean.tagsAnd or clean.tagsNot or clean.aliases or clean.registrationIds
    if clean.all and targeted:
        raise invalid("audience", "all cannot be combined with tags, aliases or registration ids")
    if not clean.all and not targeted:
        raise invalid("audience", "audience is empty: set all or name tags, aliases or registration ids")
    return clean
