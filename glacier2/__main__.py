"""The PartnerGateway server: `python -m glacier2 --Ice.Config=...` (IceGrid passes the config).

Serves the router's permissions verifier (PartnerVerifier) and session manager
(PartnerSessionManager) on adapter PartnerGateway, and the objects of every session it creates.
"""

from __future__ import annotations

import sys

import Ice

from glacier2 import metrics
from glacier2.partner import Backends
from glacier2.sessions import SessionManagerI, SessionTable, SharedSessions, Sweeper
from glacier2.throttle import LoginThrottle
from glacier2.verifier import PartnerVerifierI
from services.common import ice, logs, redis_client
from services.common.config import CallTimeouts, RedisSettings
from services.common.lazy import Lazy

VERIFIER = "PartnerVerifier"
SESSION_MANAGER = "PartnerSessionManager"


def main() -> int:
    with Ice.initialize(sys.argv) as communicator:
        logs.setup(communicator)
        props = communicator.getProperties()
        timeouts = CallTimeouts.from_properties(props)
        # every partner's pushes pass through this one proxy: spread them over all Push replicas
        push = (
            ice.push(communicator)
            .ice_connectionCached(False)
            .ice_endpointSelection(Ice.EndpointSelectionType.Random)
            .ice_invocationTimeout(timeouts.push_ms)
        )
        backends = Backends(
            push=push,
            tagalias=ice.tagalias(communicator).ice_invocationTimeout(timeouts.tagalias_ms),
            dbagent=ice.dbagent(communicator).ice_invocationTimeout(timeouts.dbagent_ms),
        )
        redis_settings = RedisSettings.from_properties(props)
        redis = Lazy(lambda: redis_client.cluster(redis_settings))  # one client, made on first use
        throttle = LoginThrottle(redis)
        adapter = communicator.createObjectAdapter("PartnerGateway")
        shared = SharedSessions(redis)
        manager = SessionManagerI(adapter, backends, SessionTable(shared=shared))
        metrics.SESSIONS.set_function(manager.table.count)
        # found through the manager's ServantTable too: a login whose strings are not UTF-8 is refused
        manager.objects.add(Ice.stringToIdentity(VERIFIER), PartnerVerifierI(backends.dbagent, throttle))
        manager.objects.add(Ice.stringToIdentity(SESSION_MANAGER), manager)
        adapter.activate()
        sweeper = Sweeper(manager)
        sweeper.start()
        try:
            ice.serve_until_shutdown(communicator)
        finally:
            sweeper.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
