"""Msg ids: increasing and unique per worker, also when the clock steps back or one ms overflows."""

from __future__ import annotations

import threading

import pytest

from services.common import msgid
from services.common.msgid import MsgIdGenerator


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_increasing_across_time_and_within_one_ms() -> None:
    clock = Clock(msgid.EPOCH_MS + 1000)
    gen = MsgIdGenerator(worker=3, clock=clock)
    ids = [gen.next() for _ in range(10)]
    clock.ms += 1
    ids += [gen.next() for _ in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert msgid.time_of(ids[0]) == msgid.EPOCH_MS + 1000 and msgid.time_of(ids[-1]) == msgid.EPOCH_MS + 1001


def test_clock_going_back_never_repeats() -> None:
    clock = Clock(msgid.EPOCH_MS + 50_000)
    gen = MsgIdGenerator(worker=1, clock=clock)
    before = [gen.next() for _ in range(5)]
    clock.ms -= 10_000  # NTP steps the clock back ten seconds
    after = [gen.next() for _ in range(5)]
    assert before + after == sorted(before + after)
    assert len(set(before + after)) == 10


def test_more_than_4096_in_one_ms_borrows_the_next() -> None:
    gen = MsgIdGenerator(worker=0, clock=Clock(msgid.EPOCH_MS + 7))
    ids = [gen.next() for _ in range(3 * 4096)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_workers_never_collide() -> None:
    clock = Clock(msgid.EPOCH_MS + 99)
    a, b = MsgIdGenerator(worker=1, clock=clock), MsgIdGenerator(worker=2, clock=clock)
    assert not {a.next() for _ in range(100)} & {b.next() for _ in range(100)}


def test_threads_share_a_generator_safely() -> None:
    gen = MsgIdGenerator(worker=5)
    out: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        got = [gen.next() for _ in range(2000)]
        with lock:
            out.extend(got)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 8000


def test_floor_for_time_bounds_every_worker() -> None:
    t = msgid.EPOCH_MS + 123_456
    ids = [MsgIdGenerator(worker=w, clock=Clock(t)).next() for w in (0, msgid.MAX_WORKER)]
    assert all(msgid.floor_for_time(t) <= i < msgid.floor_for_time(t + 1) for i in ids)


def test_worker_out_of_range() -> None:
    with pytest.raises(ValueError):
        MsgIdGenerator(worker=msgid.MAX_WORKER + 1)
