"""Sending to STC: each device through exactly the process that holds it, broadcasts through all.

An STC that does not answer (dead process, stale presence) only means its devices are not sent
online now: targeted messages wait in their queues and broadcasts in the app's log, and devices
get them when they reconnect. The calls wait as long as STC's side of STC.deliver promises
(limits.DELIVER_TIMEOUT_SECONDS; a broadcast its spread plus limits.BROADCAST_GRACE_SECONDS).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import Ice

from services.common import limits, logs
from services.common.batching import packs
from services.common.contract import PushGrid
from services.common.mailbox import Mailbox

log = logging.getLogger(__name__)


def _start(method: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """Starts an async call, method(*args), which returns an Ice future; the result is read later
    (by calling what this returns), so a failure to even send shows up there too."""
    try:
        future = method(*args)
    except Ice.Exception as exc:
        error = exc

        def fail() -> Any:
            raise error

        return fail
    return future.result


class Delivery:
    """Presence lookups and STC calls; several STC processes are called at once."""

    def __init__(
        self, mailbox: Mailbox, stc: Callable[[str], PushGrid.STCPrx], all_stcs: Callable[[], list[PushGrid.STCPrx]]
    ) -> None:
        self._mailbox = mailbox
        self._stc = stc
        self._all_stcs = all_stcs
        self._proxies: dict[str, PushGrid.STCPrx] = {}

    def deliver(self, env: PushGrid.Envelope, rids: Sequence[str]) -> int:
        """Sends env to those of rids that are online; returns how many STC says it sent to."""
        return self.deliver_many([(env, rids)])[0]

    def deliver_many(self, items: Sequence[tuple[PushGrid.Envelope, Sequence[str]]]) -> list[int]:
        """deliver for many messages: one presence lookup for all their devices, then one
        deliverMany per STC process (of at most DELIVER_BATCH ids), all at once. Answers, in
        order, how many devices STC says each message was sent to."""
        where = self._mailbox.where(list({rid for _, rids in items for rid in rids}))
        per_stc: dict[str, list[tuple[int, list[str]]]] = defaultdict(list)
        for i, (_, rids) in enumerate(items):
            held: dict[str, list[str]] = defaultdict(list)
            for rid in dict.fromkeys(rids):
                if rid in where:
                    held[where[rid]].append(rid)
            for stc_id, group in held.items():
                per_stc[stc_id].append((i, group))
        calls = []
        for stc_id, parts in per_stc.items():
            deliver_many = self._proxy(stc_id).deliverManyAsync
            for call in packs(parts, limits.DELIVER_BATCH):
                deliveries = [PushGrid.Delivery(items[i][0], list(rids)) for i, rids in call]
                calls.append((stc_id, call, _start(deliver_many, deliveries)))
        sent = [0] * len(items)
        for stc_id, call, future in calls:
            try:
                answers = future()
            except Ice.OperationNotExistException:  # an STC of the release before, mid-upgrade
                answers = self._one_by_one(stc_id, [(items[i][0], rids) for i, rids in call])
            except Ice.Exception as exc:
                log.warning("STC %s did not take %d messages: %s", stc_id, len(call), exc)
                continue
            for (i, rids), got in zip(call, answers, strict=True):
                sent[i] += len(set(got) & set(rids))
        return sent

    def _one_by_one(self, stc_id: str, deliveries: list[tuple[PushGrid.Envelope, Sequence[str]]]) -> list[list[str]]:
        """deliverMany's answer from STC.deliver calls, all at once, for an STC that lacks it."""
        prx = self._proxy(stc_id)
        futures = [_start(prx.deliverAsync, env, rids) for env, rids in deliveries]
        answers: list[list[str]] = []
        for (env, rids), future in zip(deliveries, futures, strict=True):
            try:
                answers.append(list(future()))
            except Ice.Exception as exc:
                log.warning(
                    "%s STC %s did not take %d devices: %s", logs.about(env.msgId, env.appKey), stc_id, len(rids), exc
                )
                answers.append([])
        return answers

    def broadcast(self, env: PushGrid.Envelope, platforms: Sequence[PushGrid.Platform], spread_ms: int) -> int:
        """Hands env to every STC process, each spreading it over spread_ms; returns the sum sent."""
        try:
            stcs = self._all_stcs()
        except Ice.Exception as exc:
            log.warning("%s no STC list for the broadcast: %s", logs.about(env.msgId, env.appKey), exc)
            return 0
        timeout = spread_ms + limits.BROADCAST_GRACE_SECONDS * 1000
        calls = [
            (p, _start(p.ice_invocationTimeout(timeout).broadcastAsync, env, list(platforms), spread_ms)) for p in stcs
        ]
        sent = 0
        for prx, future in calls:
            try:
                sent += future()
            except Ice.Exception as exc:
                log.warning(
                    "%s STC %s did not take the broadcast: %s",
                    logs.about(env.msgId, env.appKey),
                    prx.ice_getIdentity().name,
                    exc,
                )
        return sent

    def _proxy(self, stc_id: str) -> PushGrid.STCPrx:
        prx = self._proxies.get(stc_id)
        if prx is None:
            prx = self._proxies[stc_id] = self._stc(stc_id).ice_invocationTimeout(limits.DELIVER_TIMEOUT_SECONDS * 1000)
        return prx
