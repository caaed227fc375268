"""The DBAgent server: `python -m services.dbagent --Ice.Config=...` (IceGrid passes the config)."""
from __future__ import annotations

import sys

import Ice

from services.common.config import MySQLSettings
from services.common.ice import serve_until_shutdown
from services.dbagent.servant import DBAgentI
from services.dbagent.store import Store


def main() -> int:
    with Ice.initialize(sys.argv) as communicator:
        properties = communicator.getProperties()
        store = Store(MySQLSettings.from_properties(properties))
        try:
            adapter = communicator.createObjectAdapter("DBAgent")
            identity = Ice.stringToIdentity(properties.getPropertyWithDefault("DBAgent.Identity", "DBAgent"))
            adapter.add(DBAgentI(store), identity)
            adapter.activate()
            serve_until_shutdown(communicator)
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
