"""The retention loop over a fake DBAgent: it purges what expired before the retention, a call's
worth at a time until a call finds fewer, and reads the operator's days from the properties."""

from __future__ import annotations

import threading

import Ice
import pytest

from services.common import limits
from services.common.config import DispatcherSettings
from services.common.contract import PushGrid
from services.dispatcher.retention import DAY_MS, Retention


class PurgingDB:
    def __init__(self, expired: int) -> None:
        self.expired = expired
        self.calls: list[tuple[int, int]] = []

    def purgeExpired(self, before: int, limit: int) -> PushGrid.Purged:
        self.calls.append((before, limit))
        n = min(limit, self.expired)
        self.expired -= n
        return PushGrid.Purged(messages=n, receipts=10 * n, statBatches=n)


def test_it_purges_what_expired_before_the_retention_until_a_call_finds_fewer() -> None:
    db = PurgingDB(expired=2 * limits.PURGE_PER_CALL + 5)
    now = 100 * DAY_MS
    total = Retention(db, threading.Event(), keep_days=7, clock=lambda: now).purge()  # type: ignore[arg-type]
    assert (total.messages, total.receipts) == (2 * limits.PURGE_PER_CALL + 5, 10 * (2 * limits.PURGE_PER_CALL + 5))
    assert db.calls == [(93 * DAY_MS, limits.PURGE_PER_CALL)] * 3
    assert Retention(db, threading.Event(), keep_days=7, clock=lambda: now).purge().messages == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("days,expected", [(None, limits.REPORT_RETENTION_DAYS), ("2", 2.0), ("0.5", 0.5)])
def test_the_operator_sets_the_days(days: str | None, expected: float) -> None:
    props = Ice.createProperties()
    if days is not None:
        props.setProperty("PushGrid.Retention.ReportDays", days)
    assert DispatcherSettings.from_properties(props).report_days == expected


@pytest.mark.parametrize("days", ["0", "-1", "a week", "nan"])
def test_a_retention_that_is_not_a_positive_number_is_refused(days: str) -> None:
    props = Ice.createProperties()
    props.setProperty("PushGrid.Retention.ReportDays", days)
    with pytest.raises(ValueError, match="ReportDays"):
        DispatcherSettings.from_properties(props)
