"""Device receipts: STC publishes acks to the receipts topic; this counts them into statistics.

Records look like {"app": app_key, "receipts": [[msg_id, [registration_id, ...]], ...], "at": ms},
"at" being when STC published the record. A batch of records is grouped by msg id and time,
recorded with recordTimedReceipts (DBAgent counts each receipt once, on the message's totals and
on its receipt curve, so a replayed batch adds nothing) and only then committed; DBAgent checks
the message is the acking app's. Unknown msg ids and malformed entries are skipped, never fatal.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import Ice
from kafka import KafkaConsumer

from services.common import kafka_client, limits, logs, validation
from services.common.backends import KAFKA
from services.common.batching import packs
from services.common.clock import now_ms
from services.common.contract import PushGrid

log = logging.getLogger(__name__)

GROUP = "pushgrid-receipts"
POLL_MS = 500
RETRY_SECONDS = 2
LATEST_MS = 2**63 - 1  # an "at" beyond a Slice long is no time at all

Group = tuple[str, int, int]  # app key, msg id, when its devices' receipts were received (ms)


def group_acks(values: Iterable[Any], now: int) -> dict[Group, list[str]]:
    """Registration ids per (app key, msg id, received at) from record values, each receipt once,
    at its earliest time; malformed entries dropped.

    Reads STC's records, {"app": app, "receipts": [[msg_id, [rid, ...]], ...], "at": ms}, and the
    one-row-per-ack records older STCs write, {"acks": [[msg_id, app, rid], ...]}, so receipts
    keep counting while a rolling upgrade has both. A record without a usable "at" (an older STC)
    was received `now`: it is being read now, moments after it was published."""
    first: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    for value in values:
        if not isinstance(value, dict):
            continue
        at = value.get("at")
        if isinstance(at, bool) or not isinstance(at, int) or not 0 < at <= LATEST_MS:
            at = now
        for app, msg_id, rids in _groups(value):
            if isinstance(msg_id, bool) or not isinstance(msg_id, int) or msg_id <= 0:
                continue
            try:
                app = validation.app_key(app)
            except PushGrid.InvalidArgument:
                continue
            got = first[(app, msg_id)]
            for rid in rids:
                try:
                    rid = validation.registration_id(rid)
                except PushGrid.InvalidArgument:
                    continue
                got[rid] = min(at, got.get(rid, at))
    out: dict[Group, list[str]] = defaultdict(list)
    for (app, msg_id), times in first.items():
        for rid, at in times.items():
            out[(app, msg_id, at)].append(rid)
    return dict(out)


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


def record(db: PushGrid.DBAgentPrx, groups: dict[Group, list[str]]) -> int:
    """Records every group with recordTimedReceipts, RECEIPTS_PER_CALL ids a call (the receipts
    of many messages share one); returns how many receipts were new. DBAgent skips a message
    unknown to it (or not the acking devices' app's). A DBAgent of a release before the receipt
    curves (a rolling upgrade) has no recordTimedReceipts: that call's receipts go to its
    recordReceiptsMany, counted in the totals only."""
    new = 0
    for call in packs(groups.items(), limits.RECEIPTS_PER_CALL):
        timed = [PushGrid.TimedReceipts(app, msg_id, list(rids), at) for (app, msg_id, at), rids in call]
        try:
            new += db.recordTimedReceipts(timed)
        except Ice.OperationNotExistException:
            new += db.recordReceiptsMany(_untimed(call))
    return new


def per_message(groups: dict[Group, list[str]]) -> dict[tuple[str, int], int]:
    """How many receipts (devices' acks, repeats included) each message has among groups."""
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for (app, msg_id, _at), rids in groups.items():
        counts[(app, msg_id)] += len(rids)
    return dict(counts)


def _untimed(call: Iterable[tuple[Group, Sequence[str]]]) -> list[PushGrid.Receipts]:
    """The receipts of a call without their times, one group per message."""
    merged: dict[tuple[str, int], list[str]] = defaultdict(list)
    for (app, msg_id, _at), rids in call:
        merged[(app, msg_id)].extend(rids)
    return [PushGrid.Receipts(app, msg_id, rids) for (app, msg_id), rids in merged.items()]


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
                groups = group_acks((r.value for recs in batch.values() for r in recs), now_ms())
                try:
                    record(self._db, groups)
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
                for (app, msg_id), count in sorted(per_message(groups).items()):
                    log.info("%s %d receipts recorded", logs.about(msg_id, app), count)
        finally:
            kafka_client.leave(consumer)
