"""The TagAlias server: `python -m services.tagalias --Ice.Config=...` (IceGrid runs it so).

Adapter "TagAlias" (endpoints and replica group come from the IceGrid descriptor); the servant's
identity is the property TagAlias.Identity, "TagAlias" by default; Redis from PushGrid.Redis.*.
"""
from __future__ import annotations

import sys

import Ice

from services.common.config import RedisSettings
from services.common.ice import serve_until_shutdown
from services.tagalias.servant import TagAliasI
from services.tagalias.store import TagAliasStore

# Ice dispatches on one thread unless told otherwise; a deleteTag of a big tag would then hold
# every other call up. Applies only when neither the config nor the descriptor sizes the pool
# (the server thread pool is created with the first adapter, so setting it here still counts).
_POOL_DEFAULT = ("Ice.ThreadPool.Server.Size", "4")


def main() -> int:
    with Ice.initialize(sys.argv) as communicator:
        props = communicator.getProperties()
        if not props.getProperty(_POOL_DEFAULT[0]) and not props.getProperty("TagAlias.ThreadPool.Size"):
            props.setProperty(*_POOL_DEFAULT)
        store = TagAliasStore(RedisSettings.from_properties(props))
        try:
            adapter = communicator.createObjectAdapter("TagAlias")
            identity = Ice.stringToIdentity(props.getPropertyWithDefault("TagAlias.Identity", "TagAlias"))
            adapter.add(TagAliasI(store), identity)
            adapter.activate()
            serve_until_shutdown(communicator)
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
