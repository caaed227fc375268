"""Waiting for a condition in tests: poll with a deadline, never sleep blindly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def until(cond: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Polls cond until it returns something true, and returns that; fails with what after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def answered(call: Callable[[], Any], timeout: float = 30.0) -> Any:
    """call's answer, calling again while it raises Unavailable (a backend failing over); the
    last Unavailable after timeout."""
    from services.common.contract import PushGrid

    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except PushGrid.Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def until_async(cond: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    """As until, inside an event loop."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
