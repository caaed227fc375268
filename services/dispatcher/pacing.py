"""big_push_duration for targeted pushes: pages go out evenly over the duration.

Each page goes out when its share of the estimated audience begins: the page that starts after
`sent` of `estimate` targets is due at started + duration * sent / estimate. The estimate comes
from sizes known before resolving (see estimate_targets); if the audience turns out larger, the
pages past the estimate go out at the end of the duration, if smaller, the push ends early.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.contract import PushGrid


def due_at(started: int, duration_ms: int, sent: int, estimate: int) -> int:
    """When the page after `sent` targets is due (ms)."""
    if duration_ms <= 0 or estimate <= 0:
        return started
    return started + duration_ms * min(sent, estimate) // estimate


def estimate_targets(
    audience: PushGrid.Audience, tag_sizes: Sequence[int], and_sizes: Sequence[int], device_count: int
) -> int:
    """An upper-bound guess of a targeted audience's size (at least 1).

    Named devices count one per registration id and alias; otherwise the union of tags counts as
    the sum of their sizes, or every device of the app when no base is named. tag_and can only
    narrow it, to its smallest tag.
    """
    named = len(audience.registrationIds or []) + len(audience.aliases or [])
    if named:
        base = named
    elif audience.tags:
        base = sum(tag_sizes)
    else:
        base = device_count
    if and_sizes:
        base = min(base, min(and_sizes))
    return max(base, 1)
