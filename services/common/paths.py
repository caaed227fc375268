"""Where pushgrid's own files are, found once from this package's place in the tree."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the tree holding services/, slice/, glacier2/
SLICE_DIR = ROOT / "slice"
