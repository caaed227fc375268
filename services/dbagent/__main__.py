"""The DBAgent server: `python -m services.dbagent --Ice.Config=...` (IceGrid passes the config)."""

from __future__ import annotations

import sys

import Ice

from services.common import logs
from services.common.config import MySQLSettings
from services.common.ice import serve
from services.dbagent.servant import DBAgentI
from services.dbagent.store import Store


def main() -> int:
    with Ice.initialize(sys.argv) as communicator:
        logs.setup(communicator)
        store = Store(MySQLSettings.from_properties(communicator.getProperties()))
        try:
            serve(communicator, "DBAgent", DBAgentI(store))
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
