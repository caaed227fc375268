"""Releases of what the grid's servers run, and how they reach the nodes (IcePatch2 today)."""
