"""The TagAlias server: `python -m services.tagalias --Ice.Config=...` (IceGrid passes the config)."""

from __future__ import annotations

import sys

import Ice

from services.common import logs
from services.common.config import RedisSettings
from services.common.ice import serve
from services.tagalias.servant import TagAliasI
from services.tagalias.store import TagAliasStore


def main() -> int:
    with Ice.initialize(sys.argv) as communicator:
        logs.setup(communicator)
        store = TagAliasStore(RedisSettings.from_properties(communicator.getProperties()))
        try:
            serve(communicator, "TagAlias", TagAliasI(store))
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
