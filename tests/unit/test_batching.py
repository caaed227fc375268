"""Batcher: single requests made together become one call, each answered on its own."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.common.batching import Batcher, chunks


def test_chunks_cover_everything_in_order() -> None:
    assert [list(c) for c in chunks(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []
    with pytest.raises(ValueError):
        list(chunks([1], 0))


def test_requests_made_together_share_calls_of_at_most_max_items() -> None:
    calls: list[list[int]] = []

    def square(items: list[int]) -> list[int | BaseException]:
        calls.append(items)
        return [ValueError(f"{i} is odd") if i % 2 else i * i for i in items]

    async def t() -> None:
        batcher = Batcher(square, None, max_items=40, in_flight=1)
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(100)), return_exceptions=True)
        assert answers[:4] == [0, answers[1], 4, answers[3]]
        assert all(isinstance(a, ValueError) and str(a) == f"{i} is odd" for i, a in enumerate(answers) if i % 2)
        assert [len(c) for c in calls] == [40, 40, 20]
        assert [i for c in calls for i in c] == list(range(100))  # in the order submitted

    asyncio.run(t())


def test_items_arriving_during_a_call_go_in_the_next_one() -> None:
    release = threading.Event()
    calls: list[list[str]] = []

    def slow(items: list[str]) -> list[str | BaseException]:
        calls.append(items)
        release.wait(5)
        return [s.upper() for s in items]

    async def t() -> None:
        batcher = Batcher(slow, None, max_items=1000, in_flight=1)
        first = asyncio.ensure_future(batcher.submit("a"))
        await asyncio.sleep(0.05)  # the first call is under way
        later = [asyncio.ensure_future(batcher.submit(x)) for x in "bcd"]
        await asyncio.sleep(0.05)
        assert calls == [["a"]]
        release.set()
        assert await first == "A" and [await f for f in later] == ["B", "C", "D"]
        assert calls == [["a"], ["b", "c", "d"]]

    asyncio.run(t())


def test_a_failed_call_fails_each_item_of_its_batch_only() -> None:
    def flaky(items: list[int]) -> list[int | BaseException]:
        if 0 in items:
            raise ConnectionError("backend down")
        return list(items)

    async def t() -> None:
        batcher = Batcher(flaky, None, max_items=3, in_flight=1)
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)
        assert [type(a).__name__ for a in answers[:3]] == ["ConnectionError"] * 3
        assert answers[3:] == [3, 4, 5]
        short = Batcher(lambda items: [], None, max_items=3)  # a call that forgets an answer
        with pytest.raises(RuntimeError, match="got 0 answers"):
            await short.submit(1)

    asyncio.run(t())
