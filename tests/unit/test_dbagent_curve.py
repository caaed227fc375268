"""Receipt curve buckets: a second wide for 5 minutes, a minute wide up to an hour, then an hour."""

from __future__ import annotations

import pytest

from services.common.contract import PushGrid
from services.dbagent import curve

SENT = 1_800_000_000_000  # ms


@pytest.mark.parametrize(
    "after_ms, start",
    [
        (0, 0),
        (999, 0),
        (1000, 1),
        (299_999, 299),  # the last second counted alone
        (300_000, 300),  # the first minute bucket: +5m
        (359_999, 300),
        (360_000, 360),
        (3_599_999, 3540),  # the last minute bucket
        (3_600_000, 3600),  # the first hour bucket: +1h
        (7_199_999, 3600),
        (7_200_000, 7200),
        (-1, 0),  # stamped before the send time (two hosts' clocks): the first bucket
        (-86_400_000, 0),
    ],
)
def test_a_receipt_lands_in_the_bucket_of_its_time(after_ms: int, start: int) -> None:
    assert curve.bucket(SENT + after_ms, SENT) == start


def test_a_receipt_from_a_clock_far_ahead_lands_in_the_last_bucket_an_int_holds() -> None:
    start = curve.bucket(2**63 - 1, SENT)
    assert start == curve.LAST_OFFSET <= 2**31 - 1 and start % curve.HOUR == 0


@pytest.mark.parametrize("start, width", [(0, 1), (299, 1), (300, 60), (3540, 60), (3600, 3600), (90000, 3600)])
def test_a_buckets_width_follows_from_its_start(start: int, width: int) -> None:
    assert curve.width(start) == width


def test_points_are_oldest_first_without_empty_buckets() -> None:
    assert curve.points([(3600, 2), (0, 5), (300, 0), (1, 1)]) == [
        PushGrid.CurvePoint(offsetSeconds=0, widthSeconds=1, received=5),
        PushGrid.CurvePoint(offsetSeconds=1, widthSeconds=1, received=1),
        PushGrid.CurvePoint(offsetSeconds=3600, widthSeconds=3600, received=2),
    ]
