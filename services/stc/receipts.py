"""Device receipts to Kafka: records {"app": app_key, "receipts": [[msg_id, [registration_id, ...]],
...], "at": ms} keyed by the app key, so one app's receipts stay in order on one partition for the
statistics consumer. Grouped by message: a broadcast's acks name its msg id and app once per
record, not once per device. "at" (ms since the epoch) is when the record was published: the
receipts' time on their messages' receipt curves, however late the consumer reads them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer

from services.common import kafka_client
from services.common.clock import now_ms
from services.common.config import KafkaSettings
from services.common.lazy import Lazy

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_SECONDS = 10


def _close(producer: KafkaProducer) -> None:
    producer.close(timeout=FLUSH_TIMEOUT_SECONDS)


class KafkaReceipts:
    """Blocking, so the engine calls it in its pool. The producer is made on first use: STC serves
    devices while Kafka is away, and only the receipts of that time are lost (logged)."""

    def __init__(self, settings: KafkaSettings, client_id: str, clock: Callable[[], int] = now_ms) -> None:
        self._topic = settings.receipts_topic
        self._clock = clock
        self._producer: Lazy[KafkaProducer] = Lazy(lambda: kafka_client.producer(settings, client_id), _close)

    def publish(self, app_key: str, receipts: list[list[Any]]) -> None:
        """Hands one record to the producer, which sends it in the background."""
        value = {"app": app_key, "receipts": receipts, "at": self._clock()}
        self._producer().send(self._topic, key=app_key, value=value).add_errback(
            lambda exc: log.warning("lost a receipts record of %d messages: %s", len(receipts), exc)
        )

    def flush(self) -> None:
        """Waits for the records handed over so far (none to wait for if no producer was made)."""
        producer = self._producer.made
        if producer is not None:
            producer.flush(timeout=FLUSH_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._producer.close()
