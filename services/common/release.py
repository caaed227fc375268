"""Which release this process runs: the manifest at the root of the tree it runs from.

`pushgrid release build` (patch/release.py) writes MANIFEST.json into every release, and nodes
patch whole releases into their servers' directories, so a server that finds one knows its
version; a process started from the checkout has none and says CHECKOUT. Servers publish the
version as the property PROPERTY, which IceGrid's admin reads through the server's Properties
facet (`icegridadmin -e "server property DBAgent-1 PushGrid.Release"`).
"""

from __future__ import annotations

import json
from pathlib import Path

from services.common import paths

MANIFEST = "MANIFEST.json"
CHECKOUT = "checkout"
PROPERTY = "PushGrid.Release"


def running(root: Path = paths.ROOT) -> str:
    """The version in root's manifest, or CHECKOUT when root holds none (or an unreadable one)."""
    try:
        version = json.loads((root / MANIFEST).read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return CHECKOUT
    return str(version)
