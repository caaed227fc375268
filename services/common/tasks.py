"""Dispatch tasks: what Push and the scheduler put on the tasks topic and the dispatchers take.

A task carries the whole request, so a dispatcher can act on it with one state check. Its
partition key (Task.key) keeps a duplicate task (the same msg id) behind the original, where it
finds it done, and one app's broadcasts in order; one app's other pushes spread over every
partition, so a busy app is not held to one dispatcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer

from services.common import codec, kafka_client, limits
from services.common.backends import KAFKA
from services.common.config import KafkaSettings
from services.common.contract import PushGrid
from services.common.lazy import Lazy

VERSION = 1


@dataclass(frozen=True)
class Task:
    """One message to fan out."""

    msg_id: int
    app_key: str
    request: PushGrid.PushRequest
    send_at: int  # ms
    expires_at: int  # ms; equal to send_at for time_to_live 0

    @property
    def key(self) -> str:
        """A broadcast is keyed by its app: an app's broadcasts are logged in msg-id order, as a
        device's replay mark (the last broadcast it acknowledged) assumes. Any other task by its
        msg id: it is queued per device, so its order among the app's pushes does not matter, and
        an override that overtakes what it overrides finds it marked Overridden already."""
        return self.app_key if self.request.audience.all else str(self.msg_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "msgId": self.msg_id,
            "appKey": self.app_key,
            "request": codec.request_to_dict(self.request),
            "sendAt": self.send_at,
            "expiresAt": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Task:
        """ValueError for anything that is not a task this release can run."""
        if not isinstance(data, dict):
            raise ValueError("task must be a JSON object")
        try:
            msg_id, app, send_at, expires_at = data["msgId"], data["appKey"], data["sendAt"], data["expiresAt"]
        except KeyError as exc:
            raise ValueError(f"task lacks {exc.args[0]}") from None
        for name, value in (("msgId", msg_id), ("sendAt", send_at), ("expiresAt", expires_at)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"task {name} must be a positive integer")
        if not isinstance(app, str) or not app:
            raise ValueError("task appKey must be a string")
        return cls(msg_id, app, codec.request_from_dict(data.get("request")), send_at, expires_at)

    @classmethod
    def from_record(cls, record: PushGrid.MessageRecord) -> Task:
        return cls(record.msgId, record.appKey, record.request, record.sendAt, record.expiresAt)


class TaskPublisher:
    """Publishes tasks and waits for the broker's ack; any Kafka failure is Unavailable("kafka").

    The producer is made on first use, so a server starts (and answers Unavailable) while the
    broker is down, and gets going once it is back.
    """

    def __init__(
        self, settings: KafkaSettings, client_id: str, timeout: float = limits.KAFKA_ACK_TIMEOUT_SECONDS
    ) -> None:
        self._settings = settings
        self._timeout = timeout
        self._producer: Lazy[KafkaProducer] = Lazy(
            lambda: kafka_client.producer(settings, client_id), lambda p: p.close(timeout=5)
        )

    def publish(self, task: Task) -> None:
        failure = self.publish_many([task])[0]
        if failure is not None:
            raise failure

    def publish_many(self, tasks: Sequence[Task]) -> list[PushGrid.Unavailable | None]:
        """Sends every task, then waits for the broker's acks together; answers, in order, None
        for a task the broker took and Unavailable("kafka") for one it did not."""
        out: list[PushGrid.Unavailable | None] = []
        try:
            producer = self._producer()
            futures = [producer.send(self._settings.tasks_topic, key=t.key, value=t.to_dict()) for t in tasks]
        except KAFKA.errors as exc:
            return [KAFKA.unavailable(exc)] * len(tasks)
        for future in futures:
            try:
                future.get(timeout=self._timeout)
                out.append(None)
            except KAFKA.errors as exc:
                out.append(KAFKA.unavailable(exc))
        return out

    def close(self) -> None:
        self._producer.close()
