"""Sending to STC: each device through exactly the process that holds it, broadcasts through all.

An STC that does not answer (dead process, stale presence) only means its devices are not sent
online now: targeted messages wait in their queues and broadcasts in the app's log, and devices
get them when they reconnect.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import Ice

from services.common import limits
from services.common.contract import PushGrid
from services.common.mailbox import Mailbox

log = logging.getLogger(__name__)

DELIVER_TIMEOUT_MS = 10_000
BROADCAST_GRACE_MS = 60_000  # a broadcast call may take its spread plus this


def _start(call: Callable[[], Ice.Future]) -> Callable[[], object]:
    """Starts an async call; the result is read later, so a failure to even send shows up there."""
    try:
        future = call()
    except Ice.Exception as exc:

        def fail(exc: Ice.Exception = exc) -> object:
            raise exc

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
        by_stc: dict[str, list[str]] = defaultdict(list)
        for rid, stc_id in self._mailbox.where(list(rids)).items():
            by_stc[stc_id].append(rid)
        calls = []
        for stc_id, held in by_stc.items():
            prx = self._proxy(stc_id)
            for i in range(0, len(held), limits.DELIVER_BATCH):
                batch = held[i : i + limits.DELIVER_BATCH]
                calls.append((stc_id, batch, _start(lambda prx=prx, batch=batch: prx.deliverAsync(env, batch))))
        sent = 0
        for stc_id, batch, future in calls:
            try:
                sent += len(set(future()) & set(batch))
            except Ice.Exception as exc:
                log.warning("STC %s did not take %d devices of message %d: %s", stc_id, len(batch), env.msgId, exc)
        return sent

    def broadcast(self, env: PushGrid.Envelope, platforms: Sequence[PushGrid.Platform], spread_ms: int) -> int:
        """Hands env to every STC process, each spreading it over spread_ms; returns the sum sent."""
        try:
            stcs = self._all_stcs()
        except Ice.Exception as exc:
            log.warning("no STC list for broadcast %d: %s", env.msgId, exc)
            return 0
        timeout = spread_ms + BROADCAST_GRACE_MS
        calls = [
            (p, _start(lambda p=p: p.ice_invocationTimeout(timeout).broadcastAsync(env, list(platforms), spread_ms)))
            for p in stcs
        ]
        sent = 0
        for prx, future in calls:
            try:
                sent += future()
            except Ice.Exception as exc:
                log.warning("STC %s did not take broadcast %d: %s", prx.ice_getIdentity().name, env.msgId, exc)
        return sent

    def _proxy(self, stc_id: str) -> PushGrid.STCPrx:
        prx = self._proxies.get(stc_id)
        if prx is None:
            prx = self._proxies[stc_id] = self._stc(stc_id).ice_invocationTimeout(DELIVER_TIMEOUT_MS)
        return prx
