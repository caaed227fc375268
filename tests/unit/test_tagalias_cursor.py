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
        cursors.Cursor(0, 0, "", CHECK),
        cursors.Cursor(BUCKETS - 1, 2**64 - 1, "00ff00ff00ff", CHECK),
        cursors.Cursor(7, 123456, "abcdefabcdef", CHECK),
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
        raw("1:0:0::0a1b2c3d:extra"),  # too many fields
        raw("1:0:0:0a1b2c3d"),  # too few
        raw("2:0:0::0a1b2c3d"),  # unknown version
        raw(f"1:{BUCKETS}:0::0a1b2c3d"),  # bucket out of range
        raw("1:-1:0::0a1b2c3d"),
        raw("1:0:-5::0a1b2c3d"),
        raw(f"1:0:{2**64}::0a1b2c3d"),  # not a 64-bit sscan cursor
        raw("1:x:0::0a1b2c3d"),
        raw("1:0:0:ABCDEFABCDEF:0a1b2c3d"),  # run must be lowercase hex
        raw("1:0:0:abc:0a1b2c3d"),  # run of the wrong length
        raw("1:0:0::0A1B2C3D"),
        "A" * 500,  # oversized
        base64.urlsafe_b64encode(b"\xff\xfe:0:0::0a1b2c3d").decode(),  # not ascii
    ],
)
def test_garbage_is_invalid_argument(text: str) -> None:
    with pytest.raises(PushGrid.InvalidArgument) as e:
        cursors.decode(text, CHECK)
    assert e.value.field == "cursor"


def test_cursor_of_another_query_is_refused() -> None:
    text = cursors.encode(cursors.Cursor(3, 10, "", "ffffffff"))
    with pytest.raises(PushGrid.InvalidArgument) as e:
        cursors.decode(text, CHECK)
    assert "another" in e.value.reason


@pytest.mark.parametrize("text", ["", None, 5])
def test_empty_or_non_string_is_refused_by_decode(text: object) -> None:
    with pytest.raises(PushGrid.InvalidArgument):
        cursors.decode(text, CHECK)  # type: ignore[arg-type]  # what a careless caller passes
