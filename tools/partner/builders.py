"""Small builders for a PushRequest, so a partner never hand-builds Slice structs.

    from tools.partner import builders as b
    req = b.push_request(b.audience(tags=["vip"], tag_not=["muted"]),
                         notification=b.notification("Sale ends tonight", title="Shop"),
                         options=b.options(ttl=3600, sendno=7))

They check only what Python's types cannot (a lone string where a list belongs, an unknown
platform name) and raise ValueError; the rules of what a push may hold (sizes, limits, an
empty audience) are Push's, which answers them with named Slice errors (`validate` asks it
without sending).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.common import platforms as platform_names
from services.common.contract import PushGrid

Names = Iterable[str] | str


def _names(values: Names | None, what: str) -> list[str]:
    """A list of names; a lone string is one name (not its characters)."""
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise ValueError(f"{what} must be strings")
    return out


def _extras(values: Mapping[str, str] | None, what: str) -> dict[str, str]:
    out = dict(values or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in out.items()):
        raise ValueError(f"{what} keys and values must be strings")
    return out


def audience(
    *,
    tags: Names | None = None,
    tag_and: Names | None = None,
    tag_not: Names | None = None,
    aliases: Names | None = None,
    registration_ids: Names | None = None,
    all: bool = False,  # noqa: A002 - JPush's name for a broadcast
) -> PushGrid.Audience:
    """JPush's audience: the given parts combine with AND (see slice/Types.ice); all=True alone
    is a broadcast."""
    return PushGrid.Audience(
        all=bool(all),
        tags=_names(tags, "tags"),
        tagsAnd=_names(tag_and, "tag_and"),
        tagsNot=_names(tag_not, "tag_not"),
        aliases=_names(aliases, "aliases"),
        registrationIds=_names(registration_ids, "registration_ids"),
    )


def broadcast() -> PushGrid.Audience:
    """Every device of the app."""
    return audience(all=True)


def notification(alert: str, title: str = "", extras: Mapping[str, str] | None = None) -> PushGrid.Notification:
    """What the device shows in its notification bar."""
    return PushGrid.Notification(alert=alert, title=title, extras=_extras(extras, "notification extras"))


def message(
    content: str, title: str = "", content_type: str = "", extras: Mapping[str, str] | None = None
) -> PushGrid.Message:
    """A pass-through message handed to the app, not shown."""
    return PushGrid.Message(
        content=content, title=title, contentType=content_type, extras=_extras(extras, "message extras")
    )


def options(
    sendno: int = 0, ttl: int | None = None, override_msg_id: int = 0, big_push_duration: int = 0
) -> PushGrid.PushOptions:
    """sendno is echoed back; ttl in seconds (None: the default, one day; 0: online only);
    override_msg_id replaces an earlier message; big_push_duration spreads it over minutes."""
    return PushGrid.PushOptions(
        sendno=sendno,
        timeToLive=-1 if ttl is None else ttl,
        overrideMsgId=override_msg_id,
        bigPushDuration=big_push_duration,
    )


def platforms(values: Iterable[str | PushGrid.Platform] | str | None) -> list[PushGrid.Platform]:
    """Platform names (android, ios, web, any case) or Platform values; none means every platform."""
    out = []
    for v in [values] if isinstance(values, str) else list(values or []):
        if isinstance(v, PushGrid.Platform):
            out.append(v)
        elif isinstance(v, str) and v.lower() in platform_names.BY_NAME:
            out.append(platform_names.parse(v))
        else:
            raise ValueError(f"unknown platform {v!r}: one of {', '.join(platform_names.NAMES)}")
    return out


# push_request's keyword names shadow the builders above; it reaches them through these.
_notification, _message, _platforms = notification, message, platforms


def push_request(
    audience: PushGrid.Audience,
    *,
    notification: PushGrid.Notification | str | None = None,
    message: PushGrid.Message | str | None = None,
    platforms: Iterable[str | PushGrid.Platform] | str | None = None,
    options: PushGrid.PushOptions | None = None,
) -> PushGrid.PushRequest:
    """A whole request; a plain string stands for a notification alert or a message content."""
    if isinstance(notification, str):
        notification = _notification(notification)
    if isinstance(message, str):
        message = _message(message)
    return PushGrid.PushRequest(
        audience=audience,
        platforms=_platforms(platforms),
        notification=notification or PushGrid.Notification(alert="", title="", extras={}),
        message=message or PushGrid.Message(content="", title="", contentType="", extras={}),
        options=options or PushGrid.PushOptions(),
    )
