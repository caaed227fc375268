"""Leases in the real Redis Cluster: one holder leads, the others follow; a release or a lapse
hands the lease on."""

from __future__ import annotations

import time
import uuid

from services.common import redis_client
from services.common.lease import Lease


def test_one_holder_leads_until_it_releases_or_its_lease_lapses(redis_settings) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"

    def lease(holder: str) -> Lease:
        return Lease(lambda: redis_client.cluster(redis_settings), name, holder, ttl_ms=500)

    a, b = lease("dispatcher-1"), lease("dispatcher-2")
    assert a.held() and not b.held()
    assert a.held() and not b.held()  # renewed, still a's
    a.release()
    assert b.held() and not a.held()  # released: the next to ask takes it
    time.sleep(0.7)  # b stops renewing (hung or dead): its lease lapses
    assert a.held() and not b.held()


def test_every_candidate_leads_while_redis_cannot_say(redis_settings) -> None:
    from redis.cluster import ClusterNode, RedisCluster

    def dead() -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", 1)], socket_connect_timeout=0.2)

    assert Lease(dead, "x", "a").held() and Lease(dead, "x", "b").held()
