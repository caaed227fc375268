"""The PushRequest <-> JSON codec: exact round trips, JPush field names, clear errors."""

from __future__ import annotations

import json

import pytest

from services.common import codec
from services.common.contract import PushGrid

P = PushGrid.Platform


def req(audience=None, platforms=(), notification=None, message=None, options=None) -> PushGrid.PushRequest:
    return PushGrid.PushRequest(
        audience=audience
        or PushGrid.Audience(all=True, tags=[], tagsAnd=[], tagsNot=[], aliases=[], registrationIds=[]),
        platforms=list(platforms),
        notification=notification or PushGrid.Notification(alert="", title="", extras={}),
        message=message or PushGrid.Message(content="", title="", contentType="", extras={}),
        options=options or PushGrid.PushOptions(),
    )


def aud(
    all=False,  # noqa: A002 - the Slice field's name
    tags=(),
    tagsAnd=(),
    tagsNot=(),
    aliases=(),
    registrationIds=(),
) -> PushGrid.Audience:
    return PushGrid.Audience(
        all=all,
        tags=list(tags),
        tagsAnd=list(tagsAnd),
        tagsNot=list(tagsNot),
        aliases=list(aliases),
        registrationIds=list(registrationIds),
    )


CASES = {
    "broadcast": req(notification=PushGrid.Notification(alert="hi", title="", extras={})),
    "targeted": req(
        audience=aud(
            tags=["vip", "北京"], tagsAnd=["beta"], tagsNot=["gone"], aliases=["alice"], registrationIds=["abc123"]
        ),
        platforms=[P.Ios, P.Android, P.Web],
        notification=PushGrid.Notification(alert='Hé "ho" \n🎉', title="T", extras={"k": "v", "": ""}),
        message=PushGrid.Message(content='{"json": 1}', title="m", contentType="application/json", extras={"x": "y"}),
        options=PushGrid.PushOptions(sendno=-(2**31), timeToLive=0, overrideMsgId=2**63 - 1, bigPushDuration=1440),
    ),
    "tag_not alone": req(audience=aud(tagsNot=["x"]), platforms=[P.Web]),
    "all with lists": req(audience=aud(all=True, tags=["a"])),
    "empty audience": req(audience=aud()),
    "message only": req(message=PushGrid.Message(content="c", title="", contentType="", extras={})),
    "title without alert": req(notification=PushGrid.Notification(alert="", title="t", extras={})),
    "extras only": req(message=PushGrid.Message(content="", title="", contentType="", extras={"a": "b"})),
}


@pytest.mark.parametrize("request_", CASES.values(), ids=CASES.keys())
def test_round_trip_is_exact(request_):
    assert codec.loads(codec.dumps(request_)) == request_
    assert codec.request_from_dict(codec.request_to_dict(request_)) == request_


def test_ice_none_fields_encode_as_empty():
    loose = PushGrid.PushRequest()  # Ice leaves sequences and dictionaries None
    loose.audience.all = True
    assert codec.loads(codec.dumps(loose)) == req()


def test_uses_jpush_field_names_and_enum_names():
    data = json.loads(codec.dumps(CASES["targeted"]))
    assert data["platform"] == ["ios", "android", "web"]
    assert data["audience"] == {
        "tag": ["vip", "北京"],
        "tag_and": ["beta"],
        "tag_not": ["gone"],
        "alias": ["alice"],
        "registration_id": ["abc123"],
    }
    assert data["message"]["msg_content"] == '{"json": 1}'
    assert data["options"] == {
        "sendno": -(2**31),
        "time_to_live": 0,
        "override_msg_id": 2**63 - 1,
        "big_push_duration": 1440,
    }
    broadcast = json.loads(codec.dumps(CASES["broadcast"]))
    assert broadcast["platform"] == "all" and broadcast["audience"] == "all" and "message" not in broadcast


def test_equal_requests_encode_to_equal_text():
    a = req(notification=PushGrid.Notification(alert="a", title="", extras={"x": "1", "y": "2"}))
    b = req(notification=PushGrid.Notification(alert="a", title="", extras={"y": "2", "x": "1"}))
    assert codec.dumps(a) == codec.dumps(b)


def test_unknown_keys_are_ignored():
    data = codec.request_to_dict(CASES["broadcast"])
    data["future_field"] = {"anything": 1}
    data["options"]["future_option"] = True
    assert codec.request_from_dict(data) == CASES["broadcast"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(platform=["symbian"]),
        lambda d: d.update(platform="android"),
        lambda d: d.update(audience="everyone"),
        lambda d: d.pop("audience"),
        lambda d: d.update(audience={"tag": "notalist"}),
        lambda d: d.update(audience={"tag": [1]}),
        lambda d: d.update(audience={"all": "yes"}),
        lambda d: d.update(notification={"alert": 5}),
        lambda d: d.update(message={"extras": {"k": 1}}),
        lambda d: d.update(options={"sendno": True}),
        lambda d: d.update(options={"sendno": 2**31}),
        lambda d: d.update(options={"override_msg_id": 2**63}),
        lambda d: d.update(options={"time_to_live": 1.5}),
        lambda d: d.update(options=[]),
    ],
    ids=[
        "unknown platform",
        "platform string",
        "audience string",
        "no audience",
        "tag not list",
        "tag not str",
        "all not bool",
        "alert not str",
        "extras value",
        "bool int",
        "int32 overflow",
        "int64 overflow",
        "float",
        "options list",
    ],
)
def test_malformed_json_raises_value_error(mutate):
    data = codec.request_to_dict(CASES["targeted"])
    mutate(data)
    with pytest.raises(ValueError):
        codec.request_from_dict(data)


@pytest.mark.parametrize("text", ["", "[]", "null", "{", '"all"'])
def test_malformed_text_raises_value_error(text):
    with pytest.raises(ValueError):
        codec.loads(text)
