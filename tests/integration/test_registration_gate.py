"""Registration buckets in the real Redis Cluster: a burst per address and per app, then one
registration per refill, each refusal saying when to retry; Redis down lets registrations pass."""

from __future__ import annotations

import uuid

from services.common import redis_client
from services.stc.registration import Rate, RegistrationGate

PER_ADDRESS, PER_APP = Rate(2.0, 3), Rate(100.0, 5)  # small, so a test reaches them


def gate(redis_settings, now: list[int]) -> RegistrationGate:
    return RegistrationGate(redis_client.cluster(redis_settings), PER_ADDRESS, PER_APP, clock=lambda: now[0])


def test_an_address_gets_its_burst_then_one_per_refill(redis_settings) -> None:
    now, app, addr = [1_000_000], uuid.uuid4().hex[:24], f"10.9.{uuid.uuid4().int % 250}.1"
    g = gate(redis_settings, now)
    verdicts = g.admit([(addr, app)] * 4)
    assert verdicts[:3] == [None, None, None]
    assert verdicts[3] is not None and verdicts[3].what == "from this address"
    assert verdicts[3].retry_after_ms == 500 and "retry in 1 s" in verdicts[3].reason
    assert g.admit([("10.9.0.200", app)]) == [None]  # another address is not held up
    now[0] += 500  # one token back
    assert g.admit([(addr, app)] * 2)[0] is None and g.admit([(addr, app)])[0] is not None


def test_an_app_is_limited_across_addresses(redis_settings) -> None:
    now, app = [2_000_000], uuid.uuid4().hex[:24]
    verdicts = gate(redis_settings, now).admit([(f"10.8.0.{i}", app) for i in range(7)])
    assert [v is None for v in verdicts] == [True] * 5 + [False] * 2
    assert all(v.what == "for this app" for v in verdicts[5:] if v is not None)


def test_registrations_pass_while_redis_is_down() -> None:
    broken = RegistrationGate(_DeadRedis(), Rate(1.0, 1), Rate(1.0, 1))  # type: ignore[arg-type]
    assert broken.admit([("10.0.0.1", "a" * 24)] * 3) == [None, None, None]


class _DeadRedis:
    def eval(self, *args: object) -> object:
        from redis.exceptions import ConnectionError as RedisConnectionError

        raise RedisConnectionError("down")
