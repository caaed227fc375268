"""`pushgrid logs`: servers' output, read through IceGrid's admin, as an operator's tail.

Each node writes its servers' stdout and stderr to one file per server (IceGrid.Node.Output with
RedirectErrToOut), on whichever host the node runs; IceGrid's admin opens it from anywhere
(openServerStdOut), so no one logs in to a host to read it. Lines are services.common.logs'
shape: they start with their time and name their server, so what several servers wrote is put in
time order (a traceback stays under the line it follows), and a push's path reads top down.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence

import Ice
import IceGrid

from tools.grid import icegrid
from tools.grid.rundir import RunDir

READ_BYTES = 64 * 1024  # one FileIterator.read
FOLLOW_SECONDS = 1.0  # how often --follow asks for new lines
_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(,\d{3})?")  # logging's asctime, at a line's start


class UnknownServer(Exception):
    """A server id the grid does not have; str() says which."""


def _drain(iterator: IceGrid.FileIteratorPrx) -> list[str]:
    """Every line the iterator has now (it keeps its place: a later call gives what came since)."""
    out: list[str] = []
    while True:
        eof, lines = iterator.read(READ_BYTES)
        out += [line for line in lines if line]  # the file's last newline reads as an empty line
        if eof:
            return out


def matching(lines: Iterable[str], grep: str) -> list[str]:
    """The lines containing grep (all of them if grep is empty)."""
    return [line for line in lines if grep in line]


def in_time_order(outputs: Sequence[Sequence[str]]) -> list[str]:
    """The lines of several servers' outputs merged by the time each line starts with; a line
    without one (a traceback's) stays after the line before it."""
    entries: list[tuple[str, int, list[str]]] = []
    for lines in outputs:
        for line in lines:
            stamp = _STAMP.match(line)
            if stamp is None and entries and entries[-1][1] == id(lines):
                entries[-1][2].append(line)
            else:
                entries.append((stamp.group(0) if stamp else "", id(lines), [line]))
    entries.sort(key=lambda e: e[0])  # stable: lines of the same second keep their order
    return [line for _, _, group in entries for line in group]


def tail(
    run: RunDir,
    servers: Sequence[str],
    lines: int = 20,
    grep: str = "",
    follow: bool = False,
    emit: Callable[[str], None] = print,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    """Emits the last `lines` lines of each server's output (all of them with grep, then the
    matching ones), then, with follow, new lines as they come until keep_going() says stop.
    No servers: every server of the grid. Raises UnknownServer for an id the grid lacks."""
    with icegrid.operator_session(run) as session:
        known = sorted(session.getAdmin().getAllServerIds())
        wanted = list(servers) or known
        for sid in wanted:
            if sid not in known:
                raise UnknownServer(f"no server {sid!r}; the grid has {', '.join(known)}")
        iterators: dict[str, IceGrid.FileIteratorPrx] = {}
        for sid in wanted:
            try:
                iterators[sid] = session.openServerStdOut(sid, -1 if grep else lines)
            except (IceGrid.FileNotAvailableException, IceGrid.NodeUnreachableException, Ice.LocalException) as exc:
                emit(f"pushgrid: {sid}: no output to read ({getattr(exc, 'reason', exc) or type(exc).__name__})")
        try:
            first = []
            for sid in sorted(iterators):
                found = matching(_drain(iterators[sid]), grep)
                first.append(found[-lines:] if grep and lines > 0 else found)
            for line in in_time_order(first):
                emit(line)
            while follow and keep_going():
                time.sleep(FOLLOW_SECONDS)
                for line in in_time_order([matching(_drain(it), grep) for _, it in sorted(iterators.items())]):
                    emit(line)
        finally:
            for iterator in iterators.values():
                try:
                    iterator.destroy()
                except Ice.LocalException:
                    pass
