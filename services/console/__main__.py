"""The console server: `python -m services.console --Ice.Config=...` (IceGrid passes the config).

A web page for operators (services/console/server.py) on the grid's internal address; it
publishes where as its property PushGrid.Console.Url, which `pushgrid status` prints.
"""

from __future__ import annotations

import sys

import Ice

from services import console
from services.common import ice, logs
from services.common.config import ConsoleSettings
from services.console import server


def main() -> int:
    with Ice.initialize(sys.argv) as communicator:
        logs.setup(communicator)
        props = communicator.getProperties()
        settings = ConsoleSettings.from_properties(props)
        app = server.Console(communicator, settings)
        web = server.serve(app, settings.host, settings.port)
        props.setProperty(console.URL_PROPERTY, web.url)  # before the release: health checks read both
        app.start()
        try:
            ice.serve_until_shutdown(communicator)
        finally:
            web.shutdown()
            app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
