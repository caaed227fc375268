"""Open-file limit: a process holding thousands of sockets raises its soft limit to the hard one."""

from __future__ import annotations

import resource


def raise_open_files() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft
