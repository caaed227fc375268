"""Splitting long lists into calls of bounded size, and gathering single requests into batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")
In = TypeVar("In")
Out = TypeVar("Out")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """items in consecutive slices of at most size (none for an empty sequence)."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def packs(items: Iterable[tuple[K, Sequence[T]]], limit: int) -> list[list[tuple[K, Sequence[T]]]]:
    """(key, values) pairs packed, in order, into calls of at most limit values in all; a pair
    with more values than that is split over as many calls as it needs."""
    calls: list[list[tuple[K, Sequence[T]]]] = []
    size = limit
    for key, values in items:
        for part in chunks(values, limit):
            if size + len(part) > limit:
                calls.append([])
                size = 0
            calls[-1].append((key, part))
            size += len(part)
    return calls


class Batcher(Generic[In, Out]):
    """Gathers single requests made on one event loop into calls of many (group commit).

    submit() queues an item and waits for its answer. Items that arrive while a batch is being
    answered wait for the next one, so under load each call carries many items and at rest an item
    goes out on the loop's next turn. `call` is blocking (it runs in `executor`) and answers every
    item, in order, with a value or with the exception that item's submit() raises; if `call` itself
    raises, every item of that batch raises it.
    """

    def __init__(
        self,
        call: Callable[[list[In]], Sequence[Out | BaseException]],
        executor: Executor | None,
        max_items: int,
        in_flight: int = 2,
    ) -> None:
        if max_items <= 0 or in_flight <= 0:
            raise ValueError("a batch needs room for an item and a call in flight")
        self._call = call
        self._executor = executor
        self._max = max_items
        self._slots = in_flight
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._scheduled = False

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Out] = loop.create_future()
        self._waiting.append((item, answer))
        if not self._scheduled and self._slots:
            self._scheduled = True
            loop.call_soon(self._launch)
        return await answer

    def _launch(self) -> None:
        self._scheduled = False
        while self._waiting and self._slots:
            batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
            self._slots -= 1
            asyncio.get_running_loop().create_task(self._answer(batch))

    async def _answer(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        try:
            items = [item for item, _ in batch]
            try:
                results: Sequence[Out | BaseException] = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._call, items
                )
                if len(results) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} got {len(results)} answers")
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                log.warning("a batch of %d failed: %r", len(batch), exc)
                results = [exc] * len(batch)
            for (_, answer), result in zip(batch, results, strict=True):
                if answer.done():  # its caller stopped waiting
                    continue
                if isinstance(result, BaseException):
                    answer.set_exception(result)
                else:
                    answer.set_result(result)
        finally:
            self._slots += 1
            self._launch()
