"""The STC servant: PushGrid::STC over the engine.

Ice dispatch threads check the inputs, then hand the work to the engine's event loop and return
its future (Ice's AMD), so no dispatch thread waits while a broadcast is spread over minutes.
Every call is bounded: a delivery that has not finished in DELIVER_TIMEOUT_SECONDS (a broadcast:
its spread plus that) fails instead of hanging the dispatcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from services.common import limits, validation
from services.common.contract import PushGrid
from services.stc import protocol
from services.stc.engine import Engine

DELIVER_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Identity:
    """What info() says about this process."""

    stc_id: str
    node: str
    device_endpoint: str


def _envelope(env: PushGrid.Envelope) -> PushGrid.Envelope:
    if env is None:
        raise validation.invalid("env", "envelope is required")
    validation.app_key(env.appKey)
    if not 0 < env.msgId < 2**63:
        raise validation.invalid("env.msgId", "msg id must be positive")
    try:
        protocol.check_body(env.body or "", env.msgId)
    except protocol.BadBody as exc:
        raise validation.invalid("env.body", str(exc)) from None
    return env


def _platforms(values: list[PushGrid.Platform] | None) -> list[str]:
    return [p.name.lower() for p in validation.platforms(values)]


class STCI(PushGrid.STC):
    """PushGrid::STC of one STC process."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, identity: Identity) -> None:
        self._engine = engine
        self._loop = loop
        self._identity = identity

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float = DELIVER_TIMEOUT_SECONDS) -> Future:
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)

    def deliver(self, env: PushGrid.Envelope, registrationIds: list[str], current: Any = None) -> Future:
        env = _envelope(env)
        rids = list(registrationIds or [])
        if len(rids) > limits.DELIVER_BATCH:
            raise validation.invalid("registrationIds", f"at most {limits.DELIVER_BATCH} registration ids per call")
        for rid in rids:
            validation.registration_id(rid, "registrationIds")
        return self._run(self._engine.deliver(env, rids))

    def broadcast(
        self, env: PushGrid.Envelope, platforms: list[PushGrid.Platform], spreadMs: int, current: Any = None
    ) -> Future:
        env = _envelope(env)
        if not 0 <= spreadMs <= limits.BIG_PUSH_MAX_MINUTES * 60_000:
            raise validation.invalid("spreadMs", f"spread must be 0-{limits.BIG_PUSH_MAX_MINUTES} minutes in ms")
        return self._run(
            self._engine.broadcast(env, _platforms(platforms), spreadMs), DELIVER_TIMEOUT_SECONDS + spreadMs / 1000
        )

    def onlineCount(self, appKey: str, current: Any = None) -> Future:
        return self._run(self._count(appKey or ""))

    def info(self, current: Any = None) -> Future:
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
