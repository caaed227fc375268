"""A client made on first use, for every backend client a server holds.

A server starts, and answers (Unavailable) while its backend is still coming up or is down, and
connects once it is back; the first callers racing to connect make one client between them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """connect() on the first call, the same client after; close() drops it (made anew if used again)."""

    def __init__(self, connect: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._connect = connect
        self._close = close
        self._lock = threading.Lock()
        self._client: T | None = None

    def __call__(self) -> T:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    @property
    def made(self) -> T | None:
        """The client if it was made, else None (for flushing without connecting)."""
        return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._close is not None:
            self._close(client)
