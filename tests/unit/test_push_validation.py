"""validation.push_request and friends: every rule of a push, each failure named."""

from __future__ import annotations

import pytest

from services.common import limits, validation
from services.common.contract import PushGrid
from tests.unit.push_fakes import request

P = PushGrid.Platform


def _with(**change):
    """A valid request with parts replaced: notification=, message=, audience=, platforms= or options."""
    req = request()
    for name in ("notification", "message", "audience", "platforms"):
        if name in change:
            setattr(req, name, change.pop(name))
    for name, value in change.items():
        setattr(req.options, name, value)
    return req


N = PushGrid.Notification
M = PushGrid.Message
A = PushGrid.Audience

BAD = [  # (request, exception, field or limit)
    (_with(audience=A()), PushGrid.InvalidArgument, "audience"),
    (_with(audience=A(all=True, tags=["t"])), PushGrid.InvalidArgument, "audience"),
    (_with(audience=A(tags=["bad tag"])), PushGrid.InvalidArgument, "audience.tags"),
    (_with(audience=A(tags=[f"t{i}" for i in range(21)])), PushGrid.LimitExceeded, "audience.tags"),
    (
        _with(audience=A(registrationIds=[f"r{i}" for i in range(1001)])),
        PushGrid.LimitExceeded,
        "audience.registrationIds",
    ),
    (_with(platforms=["android"]), PushGrid.InvalidArgument, "platforms"),
    (_with(notification=N(alert=""), message=M(content="")), PushGrid.InvalidArgument, "request"),
    (_with(notification=N(alert="x" * limits.PAYLOAD_MAX_BYTES)), PushGrid.LimitExceeded, "payload"),
    (_with(notification=N(alert="x", extras={"k": "v" * limits.PAYLOAD_MAX_BYTES})), PushGrid.LimitExceeded, "payload"),
    (_with(notification=N(alert="x", extras={"k": 1})), PushGrid.InvalidArgument, "notification.extras"),
    (_with(message=M(content="x", extras={2: "v"})), PushGrid.InvalidArgument, "message.extras"),
    (_with(notification=N(alert=5)), PushGrid.InvalidArgument, "notification.alert"),
    (_with(timeToLive=-2), PushGrid.InvalidArgument, "options.timeToLive"),
    (_with(timeToLive=limits.TTL_MAX_SECONDS + 1), PushGrid.InvalidArgument, "options.timeToLive"),
    (_with(overrideMsgId=-1), PushGrid.InvalidArgument, "options.overrideMsgId"),
    (_with(bigPushDuration=-1), PushGrid.InvalidArgument, "options.bigPushDuration"),
    (_with(bigPushDuration=limits.BIG_PUSH_MAX_MINUTES + 1), PushGrid.InvalidArgument, "options.bigPushDuration"),
    (_with(sendno=2**31), PushGrid.InvalidArgument, "options.sendno"),
    (None, PushGrid.InvalidArgument, "request"),
]


@pytest.mark.parametrize("req,exc,name", BAD, ids=[name for _, _, name in BAD])
def test_bad_requests_are_named(req, exc, name) -> None:
    with pytest.raises(exc) as info:
        validation.push_request(req)
    assert (info.value.field if exc is PushGrid.InvalidArgument else info.value.limit) == name
    assert info.value.reason


GOOD = [
    _with(),
    _with(notification=N(alert=""), message=M(content="only a message")),
    _with(audience=A(all=True), platforms=[P.Ios, P.Ios, P.Web]),
    _with(timeToLive=-1),
    _with(timeToLive=0),
    _with(timeToLive=limits.TTL_MAX_SECONDS),
    _with(bigPushDuration=limits.BIG_PUSH_MAX_MINUTES),
    _with(sendno=-5),
    _with(overrideMsgId=123),
    _with(notification=N(alert="é" * 100, extras={"ключ": "值"})),
]


@pytest.mark.parametrize("req", GOOD)
def test_good_requests_pass_cleaned(req) -> None:
    clean = validation.push_request(req)
    assert clean.platforms == list(dict.fromkeys(req.platforms))
    assert clean.options.timeToLive == req.options.timeToLive


def test_payload_limit_is_exact() -> None:
    req = _with(notification=N(alert="", title="", extras={}))
    base = validation.payload_bytes(_with(notification=N(alert="x", title="", extras={})))
    req.notification.alert = "x" * (limits.PAYLOAD_MAX_BYTES - base + 1)
    assert validation.payload_bytes(req) == limits.PAYLOAD_MAX_BYTES
    validation.push_request(req)
    req.notification.alert += "x"
    with pytest.raises(PushGrid.LimitExceeded):
        validation.push_request(req)


def test_none_parts_read_as_empty() -> None:
    req = request()
    req.message = None
    req.notification.extras = None
    clean = validation.push_request(req)
    assert clean.message.content == "" and clean.notification.extras == {}


def test_ttl_default_and_send_at() -> None:
    assert validation.ttl_seconds(PushGrid.PushOptions(timeToLive=-1)) == limits.TTL_DEFAULT_SECONDS
    assert validation.ttl_seconds(PushGrid.PushOptions(timeToLive=0)) == 0
    now = 1_800_000_000_000
    assert validation.send_at(now + 1, now) == now + 1
    assert validation.send_at(now + limits.SCHEDULE_MAX_AHEAD_SECONDS * 1000, now)
    for bad in (now, now - 1, now + limits.SCHEDULE_MAX_AHEAD_SECONDS * 1000 + 1):
        with pytest.raises(PushGrid.InvalidArgument) as e:
            validation.send_at(bad, now)
        assert e.value.field == "sendAt"
