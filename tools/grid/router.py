"""The Glacier2 router as the local grid runs it: what it needs before a deploy (its certificate,
the partners' config) and whether it answers partners where they dial it.

The router itself is deployed by IceGrid from glacier2/router.xml like every other server; this
module only prepares its files and probes it from outside, as a partner would.
"""

from __future__ import annotations

import time

import Glacier2
import Ice

from services.common import limits
from services.common.ice import client_communicator
from tools.grid import certs, procs
from tools.grid.rundir import ROUTER_INSTANCE_NAME, RunDir

SERVER_ID = "Glacier2Router"


class RouterNotAnswering(procs.StartError):
    """The router did not answer on one of its client endpoints in time; the message says which."""


def prepare(run: RunDir) -> str:
    """Makes sure the router's certificate covers the partner host and writes partner.cfg; says
    what it did. Idempotent, so a grid already up keeps its router running."""
    did = certs.ensure(run.certs_dir, run.partner_host)
    run.write_partner_config()
    return f"{did}; {run.partner_config}"


def endpoints(run: RunDir) -> list[str]:
    """Each client endpoint of the router on its own (SSL first), as partners dial them."""
    return run.partner_endpoints.split(":")


def probe(run: RunDir, communicator: Ice.Communicator | None = None) -> dict[str, int]:
    """Asks the router for its session timeout on every client endpoint, through TLS checked
    against the grid CA with the name check on, exactly as partner.cfg sets it up; returns the
    answer per endpoint. Raises the Ice exception of the first endpoint that fails."""
    own = communicator is None
    # partner.cfg without its default router: these calls go to the router object itself
    comm = communicator or client_communicator(
        run.partner_config, "--Ice.Default.Router=", "--Ice.RetryIntervals=-1", "--Ice.Default.Timeout=3000"
    )
    try:
        answers = {}
        for endpoint in endpoints(run):
            prx = comm.stringToProxy(f"{ROUTER_INSTANCE_NAME}/router:{endpoint}")
            router = Glacier2.RouterPrx.uncheckedCast(prx.ice_connectionCached(False).ice_invocationTimeout(5000))
            answers[endpoint] = router.getSessionTimeout()
        return answers
    finally:
        if own:
            comm.destroy()


def wait_answering(run: RunDir, timeout: float = 60) -> str:
    """Waits until the router answers on every client endpoint of the run directory (after a
    deploy that moved it, the old router may still be stopping); says where it answers."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            answers = probe(run)
        except Ice.Exception as e:
            last = e
            time.sleep(0.3)
            continue
        wrong = {ep: t for ep, t in answers.items() if t != limits.PARTNER_SESSION_TIMEOUT_SECONDS}
        if not wrong:
            return " and ".join(endpoints(run))
        last = RuntimeError(f"session timeout {wrong}, expected {limits.PARTNER_SESSION_TIMEOUT_SECONDS}")
        time.sleep(0.3)
    raise RouterNotAnswering(
        f"Glacier2 router not answering on {run.partner_endpoints} after {timeout:.0f}s: "
        f"{type(last).__name__}: {str(last).strip()[:300]} "
        f"(log: {run.path}/icegrid/node1/logs/{SERVER_ID}.out)"
    )
