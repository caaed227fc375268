"""The one Kafka client factory: producers that wait for the broker, consumers that commit by hand.

Push answers a partner only after its task is on the broker (acks=all), and consumers commit an
offset only after the work it covers is done, so a crash replays tasks rather than losing them.
Nothing here depends on which Kafka-compatible broker runs.
"""
from __future__ import annotations

import json
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from services.common.config import KafkaSettings


def producer(settings: KafkaSettings, client_id: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.bootstrap,
        client_id=client_id,
        acks="all",
        retries=5,
        linger_ms=2,
        request_timeout_ms=10000,
        max_block_ms=10000,
        key_serializer=lambda k: k.encode("utf-8"),
        value_serializer=lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"),
    )


def consumer(settings: KafkaSettings, group: str, topic: str, client_id: str, **overrides: Any) -> KafkaConsumer:
    options: dict[str, Any] = dict(
        bootstrap_servers=settings.bootstrap,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=50,
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        value_deserializer=lambda b: json.loads(b.decode("utf-8")),
    )
    options.update(overrides)
    c = KafkaConsumer(**options)
    c.subscribe([topic])
    return c
