"""The one Ice bootstrap for clients: a communicator from a config file, and well-known proxies.

Servers follow ice-demos and call `Ice.initialize(sys.argv)` in their own short main (IceGrid
passes `--Ice.Config` on the command line); what they share is `serve_until_shutdown`.
"""
from __future__ import annotations

import signal
from typing import TypeVar

import Ice

from services.common.contract import PushGrid

P = TypeVar("P")

# Well-known object identities, resolved through the replicated registry.
DBAGENT = "DBAgent"
TAGALIAS = "TagAlias"
PUSH = "Push"


def client_communicator(config_path: str, *extra: str) -> Ice.Communicator:
    """A communicator for a tool or test, configured by the run directory's pushgrid.cfg."""
    init = Ice.InitializationData()
    init.properties = Ice.createProperties(["--Ice.Config=" + config_path, *extra])
    return Ice.initialize(init)


def well_known(communicator: Ice.Communicator, identity: str, prx_class: type[P]) -> P:
    """A proxy to a well-known object; the locator resolves it to a replica when it is used."""
    return prx_class.uncheckedCast(communicator.stringToProxy(identity))


def dbagent(communicator: Ice.Communicator) -> PushGrid.DBAgentPrx:
    return well_known(communicator, DBAGENT, PushGrid.DBAgentPrx)


def tagalias(communicator: Ice.Communicator) -> PushGrid.TagAliasPrx:
    return well_known(communicator, TAGALIAS, PushGrid.TagAliasPrx)


def serve_until_shutdown(communicator: Ice.Communicator) -> None:
    """Blocks until the node (through the Process admin facet) or a signal shuts the server down.

    SIGTERM and SIGINT shut the communicator down gracefully so requests being dispatched finish
    and clients see a clean close they can retry on another replica.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: communicator.shutdown())
    communicator.waitForShutdown()
