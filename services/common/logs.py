"""Every server's log: one line per event, the same shape everywhere, so one grep follows a push.

A line is `time level server logger: message`. IceGrid's node writes each server's output to a
file of its own (IceGrid.Node.Output), which `pushgrid logs` reads through IceGrid's admin. A
line about one message says which with `about()`: `msg=<id> app=<key>`, the same words in Push,
the dispatchers, STC and DBAgent, so `pushgrid logs --grep msg=<id>` shows its whole path.
"""

from __future__ import annotations

import logging

import Ice

SERVER_PROPERTY = "Ice.Admin.ServerId"  # set by the IceGrid node for every server it starts
FORMAT = "%(asctime)s %(levelname)s {server} %(name)s: %(message)s"


def setup(communicator: Ice.Communicator) -> None:
    """Sends INFO and above to stderr, each line naming this server (its IceGrid id, else the
    program's name); the Kafka client's own INFO lines (one per connection and rebalance) are left
    out."""
    props = communicator.getProperties()
    server = props.getProperty(SERVER_PROPERTY) or props.getPropertyWithDefault("Ice.ProgramName", "-")
    logging.basicConfig(level=logging.INFO, format=FORMAT.format(server=server.replace("%", "%%")), force=True)
    logging.getLogger("kafka").setLevel(logging.WARNING)


def about(msg_id: int, app_key: str) -> str:
    """How a line names the message it is about."""
    return f"msg={msg_id} app={app_key}"
