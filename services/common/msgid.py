"""Msg ids: unique, time-ordered 63-bit integers (ms since 2026-01-01, worker, sequence).

Time-ordered ids let a broadcast log be ordered by id, and let a device's registration time be
turned into the first broadcast id it is owed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from services.common.clock import now_ms

EPOCH_MS = 1767225600000  # 2026-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
_SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
_TIME_SHIFT = WORKER_BITS + SEQUENCE_BITS


def floor_for_time(ms: int) -> int:
    """The smallest msg id any worker can assign at time ms."""
    return max(ms - EPOCH_MS, 0) << _TIME_SHIFT


def time_of(msg_id: int) -> int:
    """When msg_id was assigned, in ms since the Unix epoch."""
    return (msg_id >> _TIME_SHIFT) + EPOCH_MS


class MsgIdGenerator:
    """Snowflake-style ids; each Push replica has its own worker number (0..1023)."""

    def __init__(self, worker: int, clock: Callable[[], int] = now_ms) -> None:
        if not 0 <= worker <= MAX_WORKER:
            raise ValueError(f"worker must be 0..{MAX_WORKER}")
        self._worker = worker
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = 0
        self._seq = 0

    def next(self) -> int:
        with self._lock:
            now = max(self._clock(), self._last_ms)  # a clock stepping back never repeats an id
            if now == self._last_ms:
                self._seq = (self._seq + 1) & _SEQUENCE_MASK
                if self._seq == 0:  # 4096 ids in one ms: borrow the next millisecond
                    now += 1
            else:
                self._seq = 0
            self._last_ms = now
            return ((now - EPOCH_MS) << _TIME_SHIFT) | (self._worker << SEQUENCE_BITS) | self._seq
