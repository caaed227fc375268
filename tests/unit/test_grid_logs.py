"""pushgrid logs' merge: what several servers wrote, put in time order, tracebacks kept whole."""

from __future__ import annotations

from tools.grid.logs import in_time_order, matching

PUSH = [
    "2026-12-01 10:00:00,100 INFO Push-1 services.push.servant: msg=7 app=a accepted for 1 tags",
    "2026-12-01 10:00:02,000 ERROR Push-1 services.push.servant: boom",
    "Traceback (most recent call last):",
    '  File "x.py", line 1',
]
DISPATCHER = [
    "2026-12-01 10:00:00,300 INFO Dispatcher-1 services.dispatcher.worker: msg=7 app=a task done",
    "2026-12-01 10:00:01,000 INFO Dispatcher-1 services.dispatcher.worker: msg=8 app=a task done",
]


def test_lines_of_several_servers_are_merged_by_time_and_a_traceback_stays_under_its_line() -> None:
    merged = in_time_order([PUSH, DISPATCHER])
    assert merged == [PUSH[0], DISPATCHER[0], DISPATCHER[1], PUSH[1], PUSH[2], PUSH[3]]


def test_grep_keeps_only_the_lines_naming_the_message() -> None:
    assert matching(PUSH + DISPATCHER, "msg=7 ") == [PUSH[0], DISPATCHER[0]]
    assert matching(DISPATCHER, "") == DISPATCHER
