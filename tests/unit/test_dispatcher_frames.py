"""The device msg frame and the task format."""

from __future__ import annotations

import json

import pytest

from services.common import codec, frames, platforms
from services.common.contract import PushGrid
from services.common.tasks import Task
from tests.unit.fakes import APP
from tests.unit.push_fakes import request


def test_frame_has_what_the_push_had() -> None:
    req = request(overrideMsgId=9)
    req.notification = PushGrid.Notification(alert="Hi ☃", title="T", extras={"k": "v"})
    text = frames.message_frame(123, req)
    assert " " not in text.replace("Hi ☃", "")  # compact, UTF-8 kept
    assert json.loads(text) == {
        "op": "msg",
        "msg_id": 123,
        "replay": False,
        "notification": {"alert": "Hi ☃", "title": "T", "extras": {"k": "v"}},
        "override_msg_id": 9,
    }


def test_frame_with_message_only() -> None:
    req = request()
    req.notification = PushGrid.Notification(alert="", title="ignored", extras={})
    req.message = PushGrid.Message(content="c", title="t", contentType="text", extras={"a": "b"})
    frame = json.loads(frames.message_frame(1, req))
    assert "notification" not in frame
    assert frame["message"] == {"content": "c", "title": "t", "content_type": "text", "extras": {"a": "b"}}
    assert frame["override_msg_id"] == 0


def test_platform_names() -> None:
    assert platforms.names([PushGrid.Platform.Ios, PushGrid.Platform.Web]) == ("ios", "web")
    assert platforms.names([]) == ()
    assert platforms.parse("IOS") == PushGrid.Platform.Ios
    with pytest.raises(ValueError):
        platforms.parse("symbian")


def test_task_round_trip() -> None:
    task = Task(77, APP, request(timeToLive=5), 1000, 6000)
    back = Task.from_dict(json.loads(json.dumps(task.to_dict())))
    assert (back.msg_id, back.app_key, back.send_at, back.expires_at) == (77, APP, 1000, 6000)
    assert codec.dumps(back.request) == codec.dumps(task.request)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {},
        {"msgId": 1},
        {"msgId": "1", "appKey": APP, "sendAt": 1, "expiresAt": 1},
        {"msgId": 1, "appKey": APP, "sendAt": 1, "expiresAt": 1, "request": "x"},
    ],
)
def test_malformed_tasks_are_value_errors(bad) -> None:
    with pytest.raises(ValueError):
        Task.from_dict(bad)


def test_broadcasts_are_keyed_by_app_and_other_tasks_by_msg_id() -> None:
    """An app's broadcasts stay in order on one partition (replay marks assume it); its other
    pushes spread over the partitions; a duplicate of a task keeps the original's key."""
    assert Task(5, APP, request(audience=PushGrid.Audience(all=True)), 1000, 2000).key == APP
    assert Task(6, APP, request(), 1000, 2000).key == "6"
    assert Task(6, APP, request(), 1000, 2000).key == Task.from_dict(Task(6, APP, request(), 1000, 2000).to_dict()).key
