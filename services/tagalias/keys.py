"""The Redis key layout of TagAlias; no other module formats a key.

Why hash tags: a Lua script and SINTERSTORE/SUNIONSTORE/SDIFFSTORE work only on keys of one slot,
yet one app with millions of devices must spread over the whole cluster. So every device falls
into one of BUCKETS buckets by crc32 of its registration id, and everything a set operation or a
device script combines lives under the bucket's hash tag ``{<appKey>:<bucket>}``:

    ta:{app:b}:all              devices of the app in bucket b (addDevice)
    ta:{app:b}:p:<platform>     those devices by platform (Platform enum value)
    ta:{app:b}:t:<tag>          devices in bucket b that have <tag>
    ta:{app:b}:names            names of the tags with at least one member in bucket b
    ta:{app:b}:dt:<regid>       the device's tags (reverse index)
    ta:{app:b}:da:<regid>       the device's alias (string)
    ta:{app:b}:q:<id>           a resolve's temporary result for bucket b (+ ":u", ":p" scratch)

Alias forward sets (alias -> registration ids) live under ``{<appKey>:a<crc32(alias) % BUCKETS>}``:

    ta:{app:aN}:al:<alias>

Names (tags, aliases) are validated before they get here and can never hold a brace, so they
cannot break a hash tag; they always come last in a key, so a ':' inside a name is harmless.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from services.common import platforms

BUCKETS = 32  # fixed for the life of the data: changing it means migrating every key
PREFIX = "ta"


def bucket(registration_id: str) -> int:
    """The bucket a device belongs to (stable across processes: crc32, not hash())."""
    return zlib.crc32(registration_id.encode("utf-8")) % BUCKETS


def by_bucket(registration_ids: Iterable[str]) -> dict[int, list[str]]:
    """Registration ids grouped by bucket, in their order within each bucket."""
    out: dict[int, list[str]] = defaultdict(list)
    for rid in registration_ids:
        out[bucket(rid)].append(rid)
    return out


def alias_bucket(alias: str) -> int:
    """The bucket whose slot holds an alias's forward set."""
    return zlib.crc32(alias.encode("utf-8")) % BUCKETS


def _b(app: str, b: int) -> str:
    return f"{PREFIX}:{{{app}:{b}}}"


def all_devices(app: str, b: int) -> str:
    return f"{_b(app, b)}:all"


def platform(app: str, b: int, value: int) -> str:
    return f"{_b(app, b)}:p:{value}"


def platform_sets(app: str, b: int) -> list[str]:
    """The bucket's platform sets, one per platform in enumerator order (platforms.ALL), the order
    add_devices.lua and forget_device.lua take them in."""
    return [platform(app, b, p.value) for p in platforms.ALL]


def tag(app: str, b: int, name: str) -> str:
    return f"{_b(app, b)}:t:{name}"


def tag_names(app: str, b: int) -> str:
    return f"{_b(app, b)}:names"


def device_tags(app: str, b: int, registration_id: str) -> str:
    return f"{_b(app, b)}:dt:{registration_id}"


def device_alias(app: str, b: int, registration_id: str) -> str:
    return f"{_b(app, b)}:da:{registration_id}"


def temp(app: str, b: int, query_id: str) -> str:
    """A resolve's per-bucket result; query_id names the audience and the resolve (hex only)."""
    return f"{_b(app, b)}:q:{query_id}"


def temp_scratch(app: str, b: int, query_id: str, part: str) -> str:
    """Scratch sets a resolve step builds and drops within one script (part: 'u' or 'p')."""
    return f"{temp(app, b, query_id)}:{part}"


def temp_pattern(app: str, b: int) -> str:
    """SCAN pattern of a bucket's temporary keys (for operators and tests)."""
    return f"{PREFIX}:{{{app}:{b}}}:q:*"


def alias_devices(app: str, alias: str) -> str:
    return f"{PREFIX}:{{{app}:a{alias_bucket(alias)}}}:al:{alias}"


@dataclass(frozen=True)
class DeviceKeys:
    """The keys one device's scripts touch, all in the device's bucket slot."""

    app: str
    registration_id: str
    bucket: int

    @property
    def tags(self) -> str:
        return device_tags(self.app, self.bucket, self.registration_id)

    @property
    def alias(self) -> str:
        return device_alias(self.app, self.bucket, self.registration_id)

    @property
    def all(self) -> str:
        return all_devices(self.app, self.bucket)

    @property
    def names(self) -> str:
        return tag_names(self.app, self.bucket)

    def tag(self, name: str) -> str:
        return tag(self.app, self.bucket, name)

    def platform(self, value: int) -> str:
        return platform(self.app, self.bucket, value)


def device(app: str, registration_id: str) -> DeviceKeys:
    return DeviceKeys(app=app, registration_id=registration_id, bucket=bucket(registration_id))
