"""The one Kafka client factory: producers that wait for the broker, consumers that commit by hand.

Push answers a partner only after its task is on the broker (acks=all), and consumers commit an
offset only after the work it covers is done, so a crash replays tasks rather than losing them.
Nothing here depends on which Kafka-compatible broker runs.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.serializer import Deserializer, Serializer

from services.common.config import KafkaSettings

log = logging.getLogger(__name__)


def decode_json(raw: bytes | None) -> Any:
    """A record's JSON value, or None when it is not JSON: one bad record must not wedge a consumer."""
    try:
        return orjson.loads(raw) if raw is not None else None
    except ValueError:  # orjson.JSONDecodeError, invalid UTF-8 included
        log.warning("skipping a record that is not JSON (%d bytes)", len(raw or b""))
        return None


class _Text(Serializer):
    """Record keys: app keys as UTF-8."""

    def serialize(self, topic: str, headers: Any, data: str) -> bytes:
        return data.encode("utf-8")


class _Json(Serializer):
    """Record values: compact JSON (orjson: a broadcast's receipts are 100,000 acks to encode)."""

    def serialize(self, topic: str, headers: Any, data: Any) -> bytes:
        return orjson.dumps(data)


class _JsonOrNone(Deserializer):
    """Record values read back: decode_json."""

    def deserialize(self, topic: str, headers: Any, data: bytes | None) -> Any:
        return decode_json(data)


def producer(settings: KafkaSettings, client_id: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.bootstrap,
        client_id=client_id,
        acks="all",
        retries=5,
        linger_ms=2,
        request_timeout_ms=10000,
        max_block_ms=10000,
        key_serializer=_Text(),
        value_serializer=_Json(),
    )


def consumer(
    settings: KafkaSettings,
    group: str,
    topic: str,
    client_id: str,
    listener: ConsumerRebalanceListener | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A member of group on topic that commits by hand; listener hears of partitions moving."""
    options: dict[str, Any] = dict(
        bootstrap_servers=settings.bootstrap,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=50,
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        value_deserializer=_JsonOrNone(),
    )
    options.update(overrides)
    c = KafkaConsumer(**options)
    c.subscribe([topic], listener=listener)
    return c


def leave(c: KafkaConsumer) -> None:
    """Closes a group member at shutdown. A member holding partitions leaves the group (the
    others take its partitions at once); one in the middle of a rebalance just goes away and the
    broker drops it after the session timeout: some Kafka-compatible brokers (the local one among
    them) never finish a rebalance during which a member closed its consumer, and on Kafka this
    costs at most one session timeout."""
    if c.assignment():
        c.close(autocommit=False)


def reader(settings: KafkaSettings, topic: str, client_id: str) -> KafkaConsumer:
    """A consumer of every partition of topic outside any group, placed at the end: for tools and
    tests that watch what gets published without taking part in a group."""
    c = KafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        value_deserializer=_JsonOrNone(),
    )
    partitions = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
    c.assign(partitions)
    c.seek_to_end(*partitions)
    for tp in partitions:
        c.position(tp)  # resolve "end" now, so records published from here on are all seen
    return c
