"""Device receipts to Kafka: records {"acks": [[msg_id, app_key, registration_id], ...]} keyed by
app key, so one app's receipts stay in order on one partition for the statistics consumer."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaProducer

from services.common import kafka_client
from services.common.config import KafkaSettings

log = logging.getLogger(__name__)


class KafkaReceipts:
    """Blocking, so the engine calls it in its pool. The producer is made on first use: STC serves
    devices while Kafka is away, and only the receipts of that time are lost (logged)."""

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: KafkaProducer | None = None

    def _get(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = kafka_client.producer(self._settings, self._client_id)
        return self._producer

    def publish(self, app_key: str, acks: list[list[Any]]) -> None:
        """Hands one record to the producer, which sends it in the background."""
        self._get().send(self._settings.receipts_topic, key=app_key, value={"acks": acks}).add_errback(
            lambda exc: log.warning("lost a receipts record of %d acks: %s", len(acks), exc)
        )

    def flush(self) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=10)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
