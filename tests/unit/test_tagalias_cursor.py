"""Cursor encode/decode: round trips, and garbage from a client is InvalidArgument."""

from __future__ import annotations

import base64

import pytest

from services.common.contract import PushGrid
from services.tagalias import cursor as cursors
from services.tagalias.keys import BUCKETS

CHECK = "0a1b2c3d"


def raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "c",
    [
        cursors.Cursor(0, "", "abcdefabcdef", CHECK),
        cursors.Cursor(BUCKETS - 1, "Z" * 64, "00ff00ff00ff", CHECK),
        cursors.Cursor(7, "dev123", "abcdefabcdef", CHECK),
    ],
)
def test_round_trip(c: cursors.Cursor) -> None:
    text = cursors.encode(c)
    assert text.isascii() and "=" not in text
    assert cursors.decode(text, CHECK) == c


@pytest.mark.parametrize(
    "text",
    [
        "garbage!!",  # not base64
        "%%%%",
        raw("2:0::abcdefabcdef:0a1b2c3d:extra"),  # too many fields
        raw("2:0::0a1b2c3d"),  # too few
        raw("1:0:0::0a1b2c3d"),  # the SSCAN cursors of an older release
        raw(f"2:{BUCKETS}::abcdefabcdef:0a1b2c3d"),  # bucket out of range
        raw("2:-1::abcdefabcdef:0a1b2c3d"),
        raw("2:x::abcdefabcdef:0a1b2c3d"),
        raw("2:0:dev-1:abcdefabcdef:0a1b2c3d"),  # not a registration id
        raw("2:0:)+:abcdefabcdef:0a1b2c3d"),  # a lex range's syntax smuggled in
        raw(f"2:0:{'a' * 65}:abcdefabcdef:0a1b2c3d"),  # longer than any registration id
        raw("2:0::ABCDEFABCDEF:0a1b2c3d"),  # run must be lowercase hex
        raw("2:0::abc:0a1b2c3d"),  # run of the wrong length
        raw("2:0:::0a1b2c3d"),  # no run
        raw("2:0::abcdefabcdef:0A1B2C3D"),
        "A" * 500,  # oversized
        base64.urlsafe_b64encode(b"\xff\xfe:0::abcdefabcdef:0a1b2c3d").decode(),  # not ascii
    ],
)
def test_garbage_is_invalid_argument(text: str) -> None:
    with pytest.raises(PushGrid.InvalidArgument) as e:
        cursors.decode(text, CHECK)
    assert e.value.field == "cursor"


def test_cursor_of_another_query_is_refused() -> None:
    text = cursors.encode(cursors.Cursor(3, "dev9", "abcdefabcdef", "ffffffff"))
    with pytest.raises(PushGrid.InvalidArgument) as e:
        cursors.decode(text, CHECK)
    assert "another" in e.value.reason


@pytest.mark.parametrize("text", ["", None, 5])
def test_empty_or_non_string_is_refused_by_decode(text: object) -> None:
    with pytest.raises(PushGrid.InvalidArgument):
        cursors.decode(text, CHECK)  # type: ignore[arg-type]  # what a careless caller passes
