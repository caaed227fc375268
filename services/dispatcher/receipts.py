"""Device receipts: STC publishes acks to the receipts topic; this counts them into statistics.

Records look like {"app": app_key, "receipts": [[msg_id, [registration_id, ...]], ...]}. A
batch of records is grouped by msg id, recorded (DBAgent counts each receipt once, so a replayed
batch adds nothing) and only then committed; DBAgent checks the message is the acking app's.
Unknown msg ids and malformed entries are skipped, never fatal.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import Ice
from kafka import KafkaConsumer

from services.common import kafka_client, limits, validation
from services.common.backends import KAFKA
from services.common.batching import packs
from services.common.contract import PushGrid

log = logging.getLogger(__name__)

GROUP = "pushgrid-receipts"
POLL_MS = 500
RETRY_SECONDS = 2


def group_acks(values: Iterable[Any]) -> dict[tuple[str, int], list[str]]:
    """Registration ids per (app key, msg id) from record values, each once; malformed entries dropped.

    Reads STC's records, {"app": app, "receipts": [[msg_id, [rid, ...]], ...]}, and the
    one-row-per-ack records older STCs write, {"acks": [[msg_id, app, rid], ...]}, so receipts
    keep counting while a rolling upgrade has both."""
    out: dict[tuple[str, int], dict[str, None]] = defaultdict(dict)
    for value in values:
        if not isinstance(value, dict):
            continue
        for app, msg_id, rids in _groups(value):
            if isinstance(msg_id, bool) or not isinstance(msg_id, int) or msg_id <= 0:
                continue
            try:
                app = validation.app_key(app)
            except PushGrid.InvalidArgument:
                continue
            got = out[(app, msg_id)]
            for rid in rids:
                try:
                    got[validation.registration_id(rid)] = None
                except PushGrid.InvalidArgument:
                    continue
    return {key: list(rids) for key, rids in out.items() if rids}


def _groups(value: dict[str, Any]) -> Iterator[tuple[Any, Any, list[Any]]]:
    """(app, msg id, registration ids) of one record value, unchecked."""
    receipts, app = value.get("receipts"), value.get("app")
    for group in receipts if isinstance(receipts, list) else ():
        if isinstance(group, list) and len(group) == 2 and isinstance(group[1], list):
            yield app, group[0], group[1]
    acks = value.get("acks")
    for ack in acks if isinstance(acks, list) else ():
        if isinstance(ack, list) and len(ack) == 3:
            yield ack[1], ack[0], [ack[2]]


def record(db: PushGrid.DBAgentPrx, groups: dict[tuple[str, int], list[str]]) -> int:
    """Records every group with recordReceiptsMany, RECEIPTS_PER_CALL ids a call (the receipts of
    many messages share one); returns how many receipts were new. DBAgent skips a message unknown
    to it (or not the acking devices' app's)."""
    new = 0
    for call in packs(groups.items(), limits.RECEIPTS_PER_CALL):
        new += db.recordReceiptsMany([PushGrid.Receipts(app, msg_id, list(rids)) for (app, msg_id), rids in call])
    return new


class ReceiptsWorker:
    """Consumes the receipts topic as a member of GROUP until stop is set."""

    def __init__(self, connect: Callable[[], KafkaConsumer], db: PushGrid.DBAgentPrx, stop: threading.Event) -> None:
        self._connect = connect
        self._db = db
        self._stop = stop

    def run(self) -> None:
        consumer = self._connect()
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=POLL_MS)
                if not batch:
                    continue
                try:
                    record(self._db, group_acks(r.value for recs in batch.values() for r in recs))
                except (PushGrid.PushGridError, Ice.Exception) as exc:
                    log.warning("receipts not recorded, reading them again: %s", getattr(exc, "reason", exc))
                    for tp, recs in batch.items():
                        consumer.seek(tp, recs[0].offset)
                    self._stop.wait(RETRY_SECONDS)
                    continue
                try:
                    consumer.commit()
                except KAFKA.errors as exc:  # partitions moved: the new owner records them again, harmlessly
                    log.warning("receipts offsets not committed: %r", exc)
        finally:
            kafka_client.leave(consumer)
