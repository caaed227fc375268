"""canaries.Watch: asks Redis at most once a second, however many messages finish meanwhile."""

from __future__ import annotations

from services.common import canaries, limits


class FakeRedis:
    def __init__(self) -> None:
        self.present = set(canaries.KEYS)
        self.asked = 0

    def mget_nonatomic(self, keys: list[str]) -> list[str | None]:
        self.asked += 1
        return ["1" if k in self.present else None for k in keys]


def test_watch_shares_one_answer_a_second() -> None:
    redis, now = FakeRedis(), [0.0]
    watch = canaries.Watch(redis, clock=lambda: now[0])  # type: ignore[arg-type]  # the one call it makes
    assert watch.missing() == 0
    redis.present -= set(canaries.KEYS[:5])
    assert [watch.missing() for _ in range(100)] == [0] * 100 and redis.asked == 1
    now[0] += canaries.CHECK_SECONDS
    assert watch.missing() == 5 and redis.asked == 2


def test_the_error_says_what_was_lost() -> None:
    text = canaries.lost_data_error(4)
    assert "4 of 32" in text and "devices may have been missed" in text
    assert len(text) <= limits.MESSAGE_ERROR_MAX_CHARS  # fits message_stats.error
