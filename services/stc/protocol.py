"""The device protocol (PROTOCOL.md) apart from any transport: frames, close codes, errors.

`parse` turns what a device sent into a typed frame or raises the DeviceError whose close code
PROTOCOL.md names; the builders make what STC sends (the "msg" frame itself is built once per
message by the dispatcher: services.common.frames). Nothing a device sends is trusted: every
field is type-checked here before anything else sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from services.common import limits, platforms

MSG_ID_MAX = 2**63 - 1


class Close(IntEnum):
    """The close codes of PROTOCOL.md."""

    NORMAL = 1000
    INVALID_UTF8 = 1007
    TOO_LARGE = 1009
    RESTARTING = 1012
    BAD_FRAME = 4000
    AUTH_FAILED = 4001
    AUTH_TIMEOUT = 4002
    OUT_OF_ORDER = 4003
    REPLACED = 4004
    HEARTBEAT_TIMEOUT = 4005
    RATE_LIMITED = 4008
    TOO_SLOW = 4009
    INTERNAL = 4011
    REGISTRATION_REFUSED = 4029


class DeviceError(Exception):
    """A reason to close a device connection; code is its close code, str(self) the reason."""

    code: Close = Close.INTERNAL

    def __init__(self, reason: str) -> None:
        super().__init__(reason[:120])  # a close reason must fit in a control frame
        self.reason = reason[:120]


class BadFrame(DeviceError):
    code = Close.BAD_FRAME


class InvalidUtf8(DeviceError):
    code = Close.INVALID_UTF8


class AuthFailed(DeviceError):
    code = Close.AUTH_FAILED


class AuthTimeout(DeviceError):
    code = Close.AUTH_TIMEOUT


class OutOfOrder(DeviceError):
    code = Close.OUT_OF_ORDER


class HeartbeatTimeout(DeviceError):
    code = Close.HEARTBEAT_TIMEOUT


class RateLimited(DeviceError):
    code = Close.RATE_LIMITED


class RegistrationRefused(DeviceError):
    """Too many registrations from the address or for the app (the reason says when to retry),
    or the app has as many devices as its operator allows: 4029."""

    code = Close.REGISTRATION_REFUSED


class InternalError(DeviceError):
    """STC could not do what the device asked (its backends are unreachable): 4011, try again."""

    code = Close.INTERNAL


# ---------------------------------------------------------------- frames a device sends


@dataclass(frozen=True)
class Register:
    app_key: str
    platform: str


@dataclass(frozen=True)
class Hello:
    app_key: str
    registration_id: str
    device_token: str
    sdk: str


@dataclass(frozen=True)
class Ack:
    msg_ids: tuple[int, ...]


@dataclass(frozen=True)
class Ping:
    pass


Frame = Register | Hello | Ack | Ping


def _str(obj: dict[str, Any], field: str, required: bool = True) -> str:
    value = obj.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadFrame(f"{field} must be a string")
    return value


def _msg_ids(obj: dict[str, Any]) -> tuple[int, ...]:
    ids = obj.get("msg_ids")
    if not isinstance(ids, list):
        raise BadFrame("msg_ids must be a list of msg ids")
    if len(ids) > limits.ACKS_PER_FRAME:
        raise BadFrame(f"at most {limits.ACKS_PER_FRAME} msg ids in one ack")
    for m in ids:
        if isinstance(m, bool) or not isinstance(m, int) or not 0 < m <= MSG_ID_MAX:
            raise BadFrame("msg_ids must be positive 64-bit integers")
    return tuple(ids)


def parse(text: str) -> Frame:
    """The frame a text message holds; BadFrame for anything PROTOCOL.md does not allow."""
    try:
        obj = orjson.loads(text)  # every ack of every device passes here: the C parser
    except (ValueError, RecursionError):
        raise BadFrame("frame is not JSON") from None
    if not isinstance(obj, dict):
        raise BadFrame("frame is not a JSON object")
    op = obj.get("op")
    if op == "ack":
        return Ack(_msg_ids(obj))
    if op == "ping":
        return Ping()
    if op == "hello":
        return Hello(
            _str(obj, "app_key"),
            _str(obj, "registration_id"),
            _str(obj, "device_token"),
            _str(obj, "sdk", required=False),
        )
    if op == "register":
        platform = _str(obj, "platform")
        if platform not in platforms.NAMES:
            raise BadFrame(f"platform must be one of {', '.join(platforms.NAMES)}")
        return Register(_str(obj, "app_key"), platform)
    raise BadFrame("unknown op" if isinstance(op, str) else "op must be a string")


# ---------------------------------------------------------------- frames STC sends

PONG = '{"op":"pong"}'


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def registered(registration_id: str, device_token: str) -> str:
    return _dump({"op": "registered", "registration_id": registration_id, "device_token": device_token})


def welcome(heartbeat: int, stc_id: str, server_time_ms: int) -> str:
    return _dump({"op": "welcome", "heartbeat": heartbeat, "stc": stc_id, "server_time": server_time_ms})


class BadBody(ValueError):
    """An Envelope body that is not a message frame for its msg id."""


def check_body(body: str, msg_id: int) -> None:
    """Raises BadBody unless body is a msg frame (a JSON object) of msg_id: STC relays it as is."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError, TypeError):
        raise BadBody("body is not JSON") from None
    if not isinstance(obj, dict) or obj.get("op") != "msg" or obj.get("msg_id") != msg_id:
        raise BadBody('body must be a {"op": "msg"} frame with the envelope\'s msg id')


def as_replay(body: str) -> str:
    """The same message frame marked "replay": true, for what a device gets after its welcome."""
    obj = json.loads(body)
    obj["replay"] = True
    return _dump(obj)
