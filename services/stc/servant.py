"""The STC servant: PushGrid::STC over the engine.

Ice dispatch threads check the inputs and turn the Slice Envelope into the engine's Outgoing,
then hand the work to the engine's event loop and return its future (Ice's AMD), so no dispatch
thread waits while a broadcast is spread over minutes. Every call is bounded by the contract the
dispatcher shares (services.common.limits): a delivery that has not finished in
DELIVER_TIMEOUT_SECONDS fails instead of hanging the dispatcher, and a broadcast gets its spread
plus that, inside the spread plus BROADCAST_GRACE_SECONDS its caller waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from services.common import limits, platforms, validation
from services.common.contract import PushGrid
from services.stc import protocol
from services.stc.engine import Engine, Outgoing


@dataclass(frozen=True)
class Identity:
    """What info() says about this process."""

    stc_id: str
    node: str
    device_endpoint: str


def _outgoing(env: PushGrid.Envelope) -> Outgoing:
    """The engine's message for a checked Envelope; InvalidArgument for a bad one."""
    if env is None:
        raise validation.invalid("env", "envelope is required")
    validation.app_key(env.appKey)
    if not 0 < env.msgId < 2**63:
        raise validation.invalid("env.msgId", "msg id must be positive")
    try:
        protocol.check_body(env.body or "", env.msgId)
    except protocol.BadBody as exc:
        raise validation.invalid("env.body", str(exc)) from None
    return Outgoing(
        msg_id=env.msgId,
        app_key=env.appKey,
        broadcast=env.broadcast,
        expires_at=env.expiresAt,
        override_msg_id=env.overrideMsgId,
        body=env.body,
    )


def _platforms(values: list[PushGrid.Platform] | None) -> tuple[str, ...]:
    return platforms.names(validation.platforms(values))


class STCI(PushGrid.STC):
    """PushGrid::STC of one STC process."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, identity: Identity) -> None:
        self._engine = engine
        self._loop = loop
        self._identity = identity

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float = limits.DELIVER_TIMEOUT_SECONDS) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)

    def deliver(self, env: PushGrid.Envelope, registrationIds: list[str], current: Any = None) -> Future[Any]:
        msg = _outgoing(env)
        rids = list(registrationIds or [])
        if len(rids) > limits.DELIVER_BATCH:
            raise validation.invalid("registrationIds", f"at most {limits.DELIVER_BATCH} registration ids per call")
        for rid in rids:
            validation.registration_id(rid, "registrationIds")
        return self._run(self._engine.deliver(msg, rids))

    def deliverMany(self, deliveries: list[PushGrid.Delivery], current: Any = None) -> Future[Any]:
        wanted = [
            (_outgoing(d.env if d is not None else None), list(d.registrationIds or [])) for d in deliveries or []
        ]
        if sum(len(rids) for _, rids in wanted) > limits.DELIVER_BATCH:
            raise validation.invalid("deliveries", f"at most {limits.DELIVER_BATCH} registration ids per call")
        for _, rids in wanted:
            for rid in rids:
                validation.registration_id(rid, "registrationIds")
        return self._run(self._deliver_many(wanted))

    async def _deliver_many(self, wanted: list[tuple[Outgoing, list[str]]]) -> list[list[str]]:
        return [await self._engine.deliver(msg, rids) for msg, rids in wanted]

    def broadcast(
        self, env: PushGrid.Envelope, wanted: list[PushGrid.Platform], spreadMs: int, current: Any = None
    ) -> Future[Any]:
        msg = _outgoing(env)
        if not 0 <= spreadMs <= limits.BIG_PUSH_MAX_MINUTES * 60_000:
            raise validation.invalid("spreadMs", f"spread must be 0-{limits.BIG_PUSH_MAX_MINUTES} minutes in ms")
        return self._run(
            self._engine.broadcast(msg, _platforms(wanted), spreadMs),
            limits.DELIVER_TIMEOUT_SECONDS + spreadMs / 1000,
        )

    def onlineCount(self, appKey: str, current: Any = None) -> Future[Any]:
        return self._run(self._count(appKey or ""))

    def info(self, current: Any = None) -> Future[Any]:
        return self._run(self._info())

    async def _count(self, app_key: str) -> int:
        return self._engine.online_count(app_key)

    async def _info(self) -> PushGrid.STCInfo:
        return PushGrid.STCInfo(
            id=self._identity.stc_id,
            node=self._identity.node,
            deviceEndpoint=self._identity.device_endpoint,
            connections=self._engine.connections,
        )
