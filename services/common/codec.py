"""PushRequest <-> JSON, in JPush's field names: how DBAgent stores a request and Push publishes it.

The dict form is JPush-like: "platform" is "all" or a list of platform names, "audience" is "all"
or an object of tag / tag_and / tag_not / alias / registration_id lists. Enums travel by name so
stored rows and queued tasks survive a reordering of the Slice enums. Decoding is exact for
anything encoding produced and raises ValueError for anything malformed; unknown keys are
ignored so a reader one release behind (mid rolling upgrade) can read a newer writer's JSON.
"""

from __future__ import annotations

import json
from typing import Any

from services.common import platforms
from services.common.contract import PushGrid

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

_AUDIENCE_LISTS = (  # (JSON key, Audience field)
    ("tag", "tags"),
    ("tag_and", "tagsAnd"),
    ("tag_not", "tagsNot"),
    ("alias", "aliases"),
    ("registration_id", "registrationIds"),
)


# ---------------------------------------------------------------- encoding


def _strs(values: Any) -> list[str]:
    return list(values or [])


def _audience_to_json(aud: PushGrid.Audience | None) -> Any:
    aud = aud or PushGrid.Audience()
    lists = {key: _strs(getattr(aud, field)) for key, field in _AUDIENCE_LISTS}
    if aud.all and not any(lists.values()):
        return "all"
    out: dict[str, Any] = {key: values for key, values in lists.items() if values}
    if aud.all:  # not valid JPush, but kept so that encoding loses nothing
        out["all"] = True
    return out


def request_to_dict(req: PushGrid.PushRequest) -> dict[str, Any]:
    """The JPush-like dict form of a request; None fields (Ice's empty) are written as empty."""
    out: dict[str, Any] = {
        "platform": list(platforms.names(req.platforms)) or "all",
        "audience": _audience_to_json(req.audience),
    }
    n = req.notification
    if n is not None and (n.alert or n.title or n.extras):
        out["notification"] = {"alert": n.alert or "", "title": n.title or "", "extras": dict(n.extras or {})}
    m = req.message
    if m is not None and (m.content or m.title or m.contentType or m.extras):
        out["message"] = {
            "msg_content": m.content or "",
            "title": m.title or "",
            "content_type": m.contentType or "",
            "extras": dict(m.extras or {}),
        }
    o = req.options or PushGrid.PushOptions()
    out["options"] = {
        "sendno": o.sendno,
        "time_to_live": o.timeToLive,
        "override_msg_id": o.overrideMsgId,
        "big_push_duration": o.bigPushDuration,
    }
    return out


def dumps(req: PushGrid.PushRequest) -> str:
    """Compact JSON of a request (UTF-8 kept as is, keys sorted so equal requests give equal text)."""
    return json.dumps(request_to_dict(req), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------- decoding


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of strings")
    return [_str(v, where) for v in value]


def _str_map(value: Any, where: str) -> dict[str, str]:
    return {_str(k, where): _str(v, where) for k, v in _obj(value, where).items()}


def _int(value: Any, where: str, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{where} must be an integer in [{bounds[0]}, {bounds[1]}]")
    return value


def _platforms_from_json(value: Any) -> list[PushGrid.Platform]:
    if value == "all":
        return []
    out = []
    for name in _str_list(value, "platform"):
        if name not in platforms.BY_NAME:  # exactly as encoded: lowercase
            raise ValueError(f"platform {name!r} is not one of {sorted(platforms.BY_NAME)}")
        out.append(platforms.BY_NAME[name])
    return out


def _audience_from_json(value: Any) -> PushGrid.Audience:
    if value == "all":
        return PushGrid.Audience(all=True, tags=[], tagsAnd=[], tagsNot=[], aliases=[], registrationIds=[])
    obj = _obj(value, "audience")
    flag = obj.get("all", False)
    if not isinstance(flag, bool):
        raise ValueError("audience.all must be a boolean")
    aud = PushGrid.Audience(all=flag)
    for key, field in _AUDIENCE_LISTS:
        setattr(aud, field, _str_list(obj.get(key, []), f"audience.{key}"))
    return aud


def request_from_dict(data: Any) -> PushGrid.PushRequest:
    """The request a dict from request_to_dict describes; ValueError says what was malformed."""
    data = _obj(data, "request")
    n = _obj(data.get("notification", {}), "notification")
    m = _obj(data.get("message", {}), "message")
    o = _obj(data.get("options", {}), "options")
    return PushGrid.PushRequest(
        audience=_audience_from_json(data.get("audience")),
        platforms=_platforms_from_json(data.get("platform", "all")),
        notification=PushGrid.Notification(
            alert=_str(n.get("alert", ""), "notification.alert"),
            title=_str(n.get("title", ""), "notification.title"),
            extras=_str_map(n.get("extras", {}), "notification.extras"),
        ),
        message=PushGrid.Message(
            content=_str(m.get("msg_content", ""), "message.msg_content"),
            title=_str(m.get("title", ""), "message.title"),
            contentType=_str(m.get("content_type", ""), "message.content_type"),
            extras=_str_map(m.get("extras", {}), "message.extras"),
        ),
        options=PushGrid.PushOptions(
            sendno=_int(o.get("sendno", 0), "options.sendno", INT32),
            timeToLive=_int(o.get("time_to_live", -1), "options.time_to_live", INT32),
            overrideMsgId=_int(o.get("override_msg_id", 0), "options.override_msg_id", INT64),
            bigPushDuration=_int(o.get("big_push_duration", 0), "options.big_push_duration", INT32),
        ),
    )


def loads(text: str | bytes) -> PushGrid.PushRequest:
    """The request a JSON text from dumps describes; ValueError for bad JSON or bad fields."""
    return request_from_dict(json.loads(text))
