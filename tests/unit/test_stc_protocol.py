"""Device frames: what parses, and the close code every kind of garbage maps to."""

from __future__ import annotations

import json

import pytest

from services.common import limits
from services.stc import protocol
from services.stc.protocol import Close

GOOD_HELLO = {"op": "hello", "app_key": "k", "registration_id": "r", "device_token": "t", "sdk": "x/1"}


def test_valid_frames_parse() -> None:
    assert protocol.parse('{"op":"ping"}') == protocol.Ping()
    assert protocol.parse(json.dumps(GOOD_HELLO)) == protocol.Hello("k", "r", "t", "x/1")
    assert protocol.parse('{"op":"hello","app_key":"k","registration_id":"r","device_token":"t"}') == protocol.Hello(
        "k", "r", "t", ""
    )
    assert protocol.parse('{"op":"register","app_key":"k","platform":"web"}') == protocol.Register("k", "web")
    assert protocol.parse('{"op":"ack","msg_ids":[1,2,3]}') == protocol.Ack((1, 2, 3))
    assert protocol.parse('{"op":"ack","msg_ids":[],"extra":{"ignored":true}}') == protocol.Ack(())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1,2]",
        '"hello"',
        "42",
        "null",
        "{",
        "{}",
        '{"op": 7}',
        '{"op": "nope"}',
        '{"op": null}',
        '{"op": ["ping"]}',
        '{"op": "hello", "app_key": 1, "registration_id": "r", "device_token": "t"}',
        '{"op": "hello", "app_key": "k", "registration_id": "r"}',
        '{"op": "hello", "app_key": "k", "registration_id": "r", "device_token": "t", "sdk": 5}',
        '{"op": "register", "app_key": "k", "platform": "windows"}',
        '{"op": "register", "app_key": "k"}',
        '{"op": "ack", "msg_ids": "1,2"}',
        '{"op": "ack"}',
        '{"op": "ack", "msg_ids": [true]}',
        '{"op": "ack", "msg_ids": [1.5]}',
        '{"op": "ack", "msg_ids": [0]}',
        '{"op": "ack", "msg_ids": [-3]}',
        '{"op": "ack", "msg_ids": ["1"]}',
        '{"op": "ack", "msg_ids": [9223372036854775808]}',
        "[" * 5000 + "]" * 5000,
        '{"op": "ack", "msg_ids": [' + "9" * 5000 + "]}",
        "NaN",
        '{"op": "hello", "app_key": "\\ud800", "registration_id": "r", "device_token": "t"}',  # lone surrogates
        '{"op": "hello", "app_key": "k\\udc00", "registration_id": "r", "device_token": "t"}',
        '{"op": "register", "app_key": "\\ud800\\u0041", "platform": "android"}',
    ],
)
def test_garbage_is_a_bad_frame(text: str) -> None:
    with pytest.raises(protocol.BadFrame) as err:
        protocol.parse(text)
    assert err.value.code == Close.BAD_FRAME


def test_too_many_acks_in_one_frame() -> None:
    with pytest.raises(protocol.BadFrame):
        protocol.parse(json.dumps({"op": "ack", "msg_ids": list(range(1, limits.ACKS_PER_FRAME + 2))}))
    most = tuple(range(1, limits.ACKS_PER_FRAME + 1))
    assert protocol.parse(json.dumps({"op": "ack", "msg_ids": list(most)})) == protocol.Ack(most)


def test_close_codes_match_the_protocol() -> None:
    assert [
        e.code
        for e in (
            protocol.BadFrame("x"),
            protocol.AuthFailed("x"),
            protocol.AuthTimeout("x"),
            protocol.OutOfOrder("x"),
            protocol.HeartbeatTimeout("x"),
            protocol.RateLimited("x"),
            protocol.InternalError("x"),
        )
    ] == [4000, 4001, 4002, 4003, 4005, 4008, 4011]
    assert len(protocol.BadFrame("x" * 500).reason) <= 123  # a close reason fits a control frame


def test_bodies_and_replays() -> None:
    body = '{"op":"msg","msg_id":7,"replay":false,"notification":{"alert":"hé"},"override_msg_id":0}'
    protocol.check_body(body, 7)
    for bad, msg_id in [(body, 8), ("{}", 7), ("[]", 7), ("nope", 7), ('{"op":"ping","msg_id":7}', 7)]:
        with pytest.raises(protocol.BadBody):
            protocol.check_body(bad, msg_id)
    replay = json.loads(protocol.as_replay(body))
    assert replay["replay"] is True and replay["notification"] == {"alert": "hé"} and replay["msg_id"] == 7


def test_outgoing_frames() -> None:
    assert json.loads(protocol.welcome(30, "STC-node1-1", 5)) == {
        "op": "welcome",
        "heartbeat": 30,
        "stc": "STC-node1-1",
        "server_time": 5,
    }
    assert json.loads(protocol.registered("r", "t")) == {
        "op": "registered",
        "registration_id": "r",
        "device_token": "t",
    }
    assert json.loads(protocol.PONG) == {"op": "pong"}
