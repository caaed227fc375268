"""How fast devices may register: token buckets per address and per app, in Redis, shared by
every STC process. An app key is public, so without them anyone could fill an app's audience
with devices as fast as MySQL takes rows; a whole carrier's NAT shares an address, so the
address's bucket is generous (limits.REGISTRATIONS_PER_ADDRESS), and an operator can change
both (PushGrid.STC.Registrations* properties). If Redis does not answer, registrations pass:
the app's device limit (DBAgent) still holds.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.cluster import RedisCluster

from services.common.backends import REDIS
from services.common.clock import now_ms
from services.common.lua import load_scripts
from services.common.redis_client import digest

log = logging.getLogger(__name__)

_BUCKET = load_scripts("services.stc", ["token_bucket"])["token_bucket"]


@dataclass(frozen=True)
class Rate:
    """per_second tokens a second, at most burst at once."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class Refusal:
    """Why a registration waits: the address's or the app's bucket, and for how long."""

    what: str
    retry_after_ms: int

    @property
    def reason(self) -> str:
        return f"too many registrations {self.what}; retry in {-(-self.retry_after_ms // 1000)} s"


class RegistrationGate:
    def __init__(
        self, redis: RedisCluster, per_address: Rate, per_app: Rate, clock: Callable[[], int] = now_ms
    ) -> None:
        self._redis = redis
        self._rates = {"addr": per_address, "app": per_app}
        self._clock = clock

    def admit(self, wanted: Sequence[tuple[str, str]]) -> list[Refusal | None]:
        """For each (address, app key) in order: None if it may register now, else its Refusal."""
        now = self._clock()
        granted: dict[tuple[str, str], tuple[int, int]] = {}
        try:
            for kind, position in (("addr", 0), ("app", 1)):
                for value, count in Counter(w[position] for w in wanted).items():
                    rate = self._rates[kind]
                    got, wait = self._redis.eval(_BUCKET, 1, _key(kind, value), rate.per_second, rate.burst, now, count)
                    granted[(kind, value)] = (int(got), int(wait))
        except REDIS.errors as exc:
            log.warning("registrations not counted, redis failed: %r", exc)
            return [None] * len(wanted)
        taken: Counter[tuple[str, str]] = Counter()
        out: list[Refusal | None] = []
        for address, app in wanted:
            refusal = None
            for kind, value, what in (("addr", address, "from this address"), ("app", app, "for this app")):
                got, wait = granted[(kind, value)]
                taken[(kind, value)] += 1
                if refusal is None and taken[(kind, value)] > got:
                    refusal = Refusal(what, max(wait, 1))
            out.append(refusal)
        return out


def _key(kind: str, value: str) -> str:
    return f"pg:reg:{kind}:{{{digest(value)}}}"
