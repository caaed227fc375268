"""`pushgrid top`: every server of the grid on one screen, refreshed like top.

A frame joins two things the grid already gives: each server's state, pid and release from
IceGrid's admin (icegrid.status, what `pushgrid status` prints) and two collections of every
server's metrics (tools.grid.metrics.collect, what `pushgrid metrics` prints). Counters only
mean something as a difference, so calls/s, errors/s and the p99 latency come from the change
between the two collections; connections and dispatcher lag are gauges, read from the later one.

The arithmetic (parse, rows, render; parse and increase shared with the console's charts in
services/common/scrape.py) is pure, so it is tested on hand-written Prometheus text;
`run` is the loop around it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import select
import shutil
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Any, TextIO

import Ice

from services.common import metrics as server_metrics
from services.common.scrape import Sample, Series, increase, parse
from services.common.scrape import named as _named
from tools.grid import icegrid
from tools.grid import metrics as grid_metrics
from tools.grid.rundir import RunDir

DISPATCHES = "pushgrid_dispatches_total"
BUCKETS = "pushgrid_dispatch_seconds_bucket"
# a gauge of the process collector, in every server's own metrics (not in what IceGrid's admin
# adds for every server): when it changes the server restarted and its counters began at 0
STARTED = "process_start_time_seconds"
# what the connections column shows: STC's open device connections, a gateway's partner sessions
CONNECTIONS = ("pushgrid_stc_connections", "pushgrid_gateway_sessions")
LAG = "pushgrid_dispatcher_lag"
# Ice's own metrics (tools.grid.metrics reads them for every server): what top shows of a server
# that keeps none of its own, the C++ router and IcePatch2 (no p99: IceMX keeps no histogram)
ICEMX_CALLS = "pushgrid_icemx_dispatches_total"
ICEMX_ERRORS = ("pushgrid_icemx_dispatch_user_exceptions_total", "pushgrid_icemx_dispatch_failures_total")
ICEMX_CONNECTIONS = "pushgrid_icemx_connections"
QUANTILE = 0.99
WIDTH = 80


@dataclasses.dataclass(frozen=True)
class Row:
    """One server's line; None is what the server does not measure (or no rate yet): "-"."""

    server: str
    state: str
    pid: int
    release: str
    connections: float | None = None
    calls: float | None = None
    errors: float | None = None
    p99: float | None = None  # seconds: the upper bound of the bucket the 99th percentile is in
    lag: float | None = None


def quantile(q: float, buckets: Series) -> float | None:
    """The upper bound of the histogram bucket holding the q-quantile of these observations (sums
    over every operation of cumulative buckets); math.inf past the last bound, None if none.

    The bucket's bound and not an interpolation: "99% took at most 5 ms" is what the buckets know.
    """
    by_bound: dict[float, float] = {}
    for (_, labels), count in buckets.items():
        bound = float(dict(labels)["le"])
        by_bound[bound] = by_bound.get(bound, 0.0) + count
    total = max(by_bound.values(), default=0.0)
    if total <= 0:
        return None
    rank = q * total
    for bound in sorted(by_bound):
        if by_bound[bound] >= rank - 1e-9:
            return bound
    return math.inf


def _gauge(series: Series, names: tuple[str, ...]) -> float | None:
    values = [v for (name, _), v in series.items() if name in names]
    return sum(values) if values else None


def _counts_dispatches(series: Series) -> bool:
    """Whether these include a server's own metrics, which count its dispatches (none yet is 0
    calls/s), and not only Ice's own that IceGrid's admin reads of any server (pushgrid_icemx_*)."""
    return any(not name.startswith("pushgrid_icemx_") for name, _ in series)


def _accepted(series: Series) -> float | None:
    """Connections a server without metrics of its own accepted and holds (IceMX's, on its object
    adapters: the router's Glacier2.Client ones are partners); its own outgoing ones left out."""
    values = [
        v
        for (name, labels), v in series.items()
        if name == ICEMX_CONNECTIONS and dict(labels).get("adapter") != "Communicator"
    ]
    return sum(values) if values else None


def rows(servers: list[dict[str, Any]], before: Sample | None, after: Sample) -> list[Row]:
    """Each server's row, by server id: servers as icegrid.status gives them; rates from before to
    after ("-" where there is no before, or a server is missing from either)."""
    out = []
    seconds = after.at - before.at if before else 0.0
    for s in sorted(servers, key=lambda s: str(s["id"])):
        sid = str(s["id"])
        now = after.servers.get(sid)
        row = Row(sid, str(s["state"]), int(s.get("pid") or 0), str(s.get("release") or ""))
        if now is None:
            out.append(row)
            continue
        own = _counts_dispatches(now)
        row = dataclasses.replace(
            row, connections=_gauge(now, CONNECTIONS) if own else _accepted(now), lag=_gauge(now, (LAG,))
        )
        was = before.servers.get(sid) if before else None
        if was is not None and seconds > 0 and not own and _named(now, ICEMX_CALLS):
            errors = [v for name in ICEMX_ERRORS for v in increase(was, now, name).values()]
            row = dataclasses.replace(
                row, calls=sum(increase(was, now, ICEMX_CALLS).values()) / seconds, errors=sum(errors) / seconds
            )
        if was is not None and seconds > 0 and own:
            if _named(was, STARTED) != _named(now, STARTED):
                was = {}  # restarted between the two: everything it counted is new
            dispatched = increase(was, now, DISPATCHES)
            row = dataclasses.replace(
                row,
                calls=sum(dispatched.values()) / seconds,
                errors=sum(v for (_, labels), v in dispatched.items() if dict(labels).get("outcome") != "ok") / seconds,
                p99=quantile(QUANTILE, increase(was, now, BUCKETS)),
            )
        out.append(row)
    return out


# ------------------------------------------------------------------ the text


def count(value: float | None) -> str:
    """A gauge or a total in at most 5 characters: 7, 1234, 56.7k, 567k, 1.2M."""
    if value is None:
        return "-"
    if value < 10_000:
        return f"{value:.0f}"
    if value < 1_000_000:
        return f"{value / 1e3:.1f}k" if value < 99_950 else f"{value / 1e3:.0f}k"
    return f"{value / 1e6:.1f}M"


def rate(value: float | None) -> str:
    """Per second, short: 0, 0.5, 12.3, 812, 56.7k."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.1f}" if value < 100 else count(value)


def latency(seconds: float | None) -> str:
    """A bucket bound in at most 5 characters: 250us, 5ms, 2.5s; >10s past the last bucket."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        return ">" + latency(server_metrics.LATENCY_BUCKETS[-1])
    if seconds < 0.001:
        return f"{seconds * 1e6:.3g}us"
    return f"{seconds * 1e3:.3g}ms" if seconds < 1 else f"{seconds:.3g}s"


def _fit(text: str, width: int) -> str:
    """text cut to width from the left: a release's end is its most specific part (its commit)."""
    return text if len(text) <= width else ".." + text[len(text) - width + 2 :]


# (header, width) of the right-aligned numeric columns
NUMBERS = (("conn", 5), ("calls/s", 7), ("err/s", 5), ("p99", 5), ("lag", 5))


def render(table: list[Row], now: datetime.datetime, width: int = WIDTH) -> str:
    """One frame: a line of the grid's totals and the time, then a line per server, none wider
    than width (the release column gives way; `pushgrid status` shows it whole)."""
    up = sum(1 for r in table if r.state == "Active")

    def total(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    header = (
        f"{now:%H:%M:%S}  servers {up}/{len(table)} up"
        f"  connections {count(total([r.connections for r in table]))}"
        f"  calls/s {rate(total([r.calls for r in table]))}"
        f"  errors/s {rate(total([r.errors for r in table]))}"
    )
    states = [r.state + (f" {r.pid}" if r.pid else "") for r in table]
    server_w = max([len("server")] + [len(r.server) for r in table])
    state_w = max([len("state")] + [len(s) for s in states])
    numbers_w = sum(w + 1 for _, w in NUMBERS)
    release_w = min(
        max([len("release")] + [len(r.release) for r in table]),
        max(len("release"), width - server_w - state_w - numbers_w - 3),
    )

    def line(server: str, state: str, release: str, numbers: list[str]) -> str:
        cells = "".join(f" {n:>{w}}" for n, (_, w) in zip(numbers, NUMBERS, strict=True))
        return f"{server:<{server_w}} {state:<{state_w}} {_fit(release, release_w):<{release_w}}{cells}"[:width]

    lines = [header[:width], "", line("server", "state", "release", [h for h, _ in NUMBERS])]
    for r, state in zip(table, states, strict=True):
        numbers = [count(r.connections), rate(r.calls), rate(r.errors), latency(r.p99), count(r.lag)]
        lines.append(line(r.server, state, r.release or "-", numbers))
    return "\n".join(line.rstrip() for line in lines) + "\n"


# ------------------------------------------------------------------ the loop


def sample(run: RunDir) -> Sample:
    """Every active server's metrics now (a server that does not answer has none: "-")."""
    text, _silent = grid_metrics.collect(run)
    return parse(text.decode("utf-8"), time.monotonic())


def frame(run: RunDir, before: Sample | None, width: int) -> tuple[str, Sample]:
    """A frame from before to now, and now's sample (the next frame's before)."""
    servers = icegrid.status(run)["servers"]
    after = sample(run)
    return render(rows(servers, before, after), datetime.datetime.now(), width), after


def _fit_height(text: str, rows: int) -> str:
    """A frame cut to a terminal's height (a taller frame would scroll its header away)."""
    lines = text.splitlines()
    if len(lines) < rows:
        return text
    more = len(lines) - (rows - 2)
    return "\n".join(lines[: rows - 2] + [f"({more} more servers: a taller terminal shows them)"]) + "\n"


@contextlib.contextmanager
def _keys(stdin: TextIO) -> Iterator[bool]:
    """stdin a key at a time (no Enter, no echo) while top runs, when it is a terminal."""
    if not stdin.isatty():
        yield False
        return
    saved = termios.tcgetattr(stdin)
    try:
        tty.setcbreak(stdin)
        yield True
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _quit_within(seconds: float, stdin: TextIO, keys: bool) -> bool:
    """Waits seconds; True if q was pressed meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not keys:
            time.sleep(left)
            return False
        ready, _, _ = select.select([stdin], [], [], left)
        if ready and os.read(stdin.fileno(), 1) in (b"q", b"Q"):
            return True
    return False


def run(run_dir: RunDir, interval: float = 2.0, once: bool = False, out: TextIO = sys.stdout) -> int:
    """Redraws a frame every interval until q or Ctrl-C (a terminal is cleared, anything else gets
    frame after frame); once: one frame with real rates, from two samples interval apart."""
    if not interval > 0:
        print("pushgrid: --interval must be more than 0 seconds", file=sys.stderr)
        return 2
    if once:
        try:
            before = sample(run_dir)
            time.sleep(interval)
            text, _ = frame(run_dir, before, WIDTH)
        except (Ice.Exception, OSError) as e:
            print(f"pushgrid: the grid of {run_dir.path} did not answer ({type(e).__name__})", file=sys.stderr)
            return 1
        out.write(text)
        return 0
    screen = out.isatty()
    last: Sample | None = None
    drawn = False
    with _keys(sys.stdin) as keys:
        if screen:
            out.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, cursor hidden: the shell comes back as it was
        try:
            while True:
                started = time.monotonic()
                size = shutil.get_terminal_size((WIDTH, 24))
                try:
                    text, last = frame(run_dir, last, size.columns if screen else WIDTH)
                except (Ice.Exception, OSError) as e:
                    text = f"{datetime.datetime.now():%H:%M:%S}  the grid did not answer ({type(e).__name__})\n"
                    last = None
                if screen:
                    text = _fit_height(text, size.lines)
                out.write("\x1b[H\x1b[2J" + text if screen else ("\n" if drawn else "") + text)
                drawn = True
                out.flush()
                if _quit_within(interval - (time.monotonic() - started), sys.stdin, keys):
                    return 0
        except KeyboardInterrupt:
            return 0
        finally:
            if screen:
                out.write("\x1b[?25h\x1b[?1049l")
                out.flush()
