"""Login checks on threads of their own: verifyApp's scrypt (16 MiB, tens of ms) must not take
the threads every other DBAgent call is served on.

At most LOGIN_CHECKS_AT_ONCE checks run in a process and LOGIN_CHECKS_WAITING wait; a login
beyond that is answered Unavailable at once ("try again"), so a flood of logins costs at most
those threads and a bounded queue, never the server's thread pool. The checking threads run at
a lower priority (LOGIN_CHECKS_NICE): on a busy machine, a login waits for the CPU, not the
calls of the rest of the grid.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from services.common import limits
from services.common.contract import PushGrid

T = TypeVar("T")


def _lower_priority() -> None:
    """Linux schedules threads one by one: this one (its thread id) gets a higher nice value."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), limits.LOGIN_CHECKS_NICE)


class LoginChecks:
    """A bounded pool: submit() returns a future, or raises Unavailable when the queue is full."""

    def __init__(self, at_once: int = limits.LOGIN_CHECKS_AT_ONCE, waiting: int = limits.LOGIN_CHECKS_WAITING) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=at_once, thread_name_prefix="login-check", initializer=_lower_priority
        )
        self._room = threading.BoundedSemaphore(at_once + waiting)

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        if not self._room.acquire(blocking=False):
            raise PushGrid.Unavailable(reason="too many logins are being checked; try again shortly", backend="dbagent")
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda _: self._room.release())
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
