"""The one clock: ms since the Unix epoch, the unit of every timestamp in the Slice contract."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
