"""A message's receipt curve: its receipts counted in buckets of time after its send time.

Fine where receipts change fast and coarse where they trickle, so a curve stays a few hundred
rows at most however long a message lives: a bucket a second wide for the first 5 minutes, a
minute wide up to the first hour, an hour wide after that. A bucket is stored by its start
(receipt_curve.offset_s, seconds after messages.send_at); its width follows from the start.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.common.contract import PushGrid

PER_SECOND_UNTIL = 300  # seconds after the send time counted second by second
PER_MINUTE_UNTIL = 3600  # ... then minute by minute, then hour by hour
MINUTE = 60
HOUR = 3600
# The latest bucket start: receipt_curve.offset_s is an INT, and a receipt stamped by a clock
# far in the future must land somewhere rather than fail its whole batch.
LAST_OFFSET = (2**31 - 1) // HOUR * HOUR


def bucket(received_at_ms: int, send_at_ms: int) -> int:
    """The start of the bucket of a receipt received at received_at_ms, in seconds after the send
    time; a receipt stamped before the send time (clocks of two hosts) counts in the first."""
    offset = max(0, (received_at_ms - send_at_ms) // 1000)
    if offset < PER_SECOND_UNTIL:
        return offset
    if offset < PER_MINUTE_UNTIL:
        return offset // MINUTE * MINUTE
    return min(offset // HOUR * HOUR, LAST_OFFSET)


def width(offset_s: int) -> int:
    """The width in seconds of the bucket that starts offset_s after the send time."""
    if offset_s < PER_SECOND_UNTIL:
        return 1
    if offset_s < PER_MINUTE_UNTIL:
        return MINUTE
    return HOUR


def points(rows: Iterable[tuple[int, int]]) -> list[PushGrid.CurvePoint]:
    """CurvePoints of (bucket start, received) rows, oldest first, empty buckets left out."""
    return [
        PushGrid.CurvePoint(offsetSeconds=offset, widthSeconds=width(offset), received=received)
        for offset, received in sorted(rows)
        if received
    ]
