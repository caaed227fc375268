"""The one Ice bootstrap: client communicators and well-known proxies, and serving a servant.

Servers follow ice-demos and call `Ice.initialize(sys.argv)` in their own short main (IceGrid
passes `--Ice.Config` on the command line), then hand their servant to `serve`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

import Ice

from services.common import metrics, release
from services.common.backends import Backend
from services.common.contract import PushGrid
from services.common.servants import ServantTable

log = logging.getLogger(__name__)

# Well-known object identities, resolved through the replicated registry.
DBAGENT = "DBAgent"
TAGALIAS = "TagAlias"
PUSH = "Push"


def service(name: str) -> Backend:
    """Another pushgrid service as a backend: any Ice failure reaching it means Unavailable(name)."""
    return Backend(name, (Ice.LocalException,))


def backend(name: str) -> contextlib.AbstractContextManager[None]:
    """Turns an Ice failure reaching service `name` into Unavailable(name), the named error
    partners and internal callers can retry on."""
    return service(name).guard()


def client_communicator(config_path: str, *extra: str) -> Ice.Communicator:
    """A communicator for a tool or test, configured by the run directory's pushgrid.cfg."""
    init = Ice.InitializationData()
    init.properties = Ice.createProperties(["--Ice.Config=" + config_path, *extra])
    return Ice.initialize(init)


def well_known(communicator: Ice.Communicator, identity: str, prx_class: Any) -> Any:
    """A proxy to a well-known object; the locator resolves it to a replica when it is used."""
    return prx_class.uncheckedCast(communicator.stringToProxy(identity))


def dbagent(communicator: Ice.Communicator) -> PushGrid.DBAgentPrx:
    return well_known(communicator, DBAGENT, PushGrid.DBAgentPrx)


def tagalias(communicator: Ice.Communicator) -> PushGrid.TagAliasPrx:
    return well_known(communicator, TAGALIAS, PushGrid.TagAliasPrx)


def push(communicator: Ice.Communicator) -> PushGrid.PushServicePrx:
    return well_known(communicator, PUSH, PushGrid.PushServicePrx)


def stc(communicator: Ice.Communicator, stc_id: str) -> PushGrid.STCPrx:
    """Exactly the STC process stc_id (its own well-known identity, e.g. STC-node1-2)."""
    return well_known(communicator, stc_id, PushGrid.STCPrx)


def all_stcs(communicator: Ice.Communicator) -> list[PushGrid.STCPrx]:
    """Every STC process the registry knows, for broadcasts and online counts."""
    import IceGrid

    query = IceGrid.QueryPrx.uncheckedCast(communicator.stringToProxy(_instance(communicator) + "/Query"))
    return [PushGrid.STCPrx.uncheckedCast(p) for p in query.findAllObjectsByType(PushGrid.STC.ice_staticId())]


def _instance(communicator: Ice.Communicator) -> str:
    """The IceGrid instance name, from the default locator's identity (PushGrid/Locator)."""
    return communicator.getDefaultLocator().ice_getIdentity().category


def serve(communicator: Ice.Communicator, name: str, servant: Ice.Object, identity: str | None = None) -> None:
    """Serves servant on adapter `name` as `identity` (default: the well-known name) until shutdown.

    Endpoints and the replica group come from the adapter's properties, which IceGrid writes. The
    servant is found through a ServantTable, so parameters it cannot read are InvalidArgument.
    """
    adapter = communicator.createObjectAdapter(name)
    table = ServantTable()
    table.add(Ice.stringToIdentity(identity or name), servant)
    adapter.addServantLocator(table, "")
    adapter.activate()
    serve_until_shutdown(communicator)


def serve_until_shutdown(communicator: Ice.Communicator) -> None:
    """Blocks until the node (through the Process admin facet) or a signal shuts the server down.

    It first publishes which release this server runs (services.common.release), for IceGrid's
    admin and the upgrade tool, and serves its metrics unless they are off
    (services.common.metrics). SIGTERM and SIGINT shut the communicator down gracefully so
    requests being dispatched finish and clients see a clean close they can retry on another
    replica.
    """
    props = communicator.getProperties()
    version = release.running()
    props.setProperty(release.PROPERTY, version)
    host = props.getProperty(metrics.HOST_PROPERTY)
    if host and metrics.ENABLED:
        try:
            props.setProperty(metrics.URL_PROPERTY, metrics.serve(host))
        except OSError as exc:  # the server works without: say so, and serve Ice anyway
            log.error("cannot serve metrics on %s: %s", host, exc)
    where = props.getProperty(metrics.URL_PROPERTY) or ("-" if metrics.ENABLED else f"- ({metrics.ENV}=off)")
    log.info("serving, release %s, metrics at %s", version, where)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: communicator.shutdown())
    communicator.waitForShutdown()
