"""`pushgrid upgrade` and `pushgrid rollback`: a release rolled through the grid one server at a time.

For each server, in an order that never has two replicas of a group down at once (one server
at a time):
  disable    the registry stops handing it out (clients' cached endpoints lapse or are refused
             and Ice retries them on another replica)
  drain      a moment for calls in flight, then a graceful stop: requests being dispatched
             finish, STC closes its devices with 1012 (they reconnect to a sibling), a
             dispatcher leaves the consumer group (its partitions move)
  patch      the node fetches the published release into the server's directory
  start      enable and start; IceGrid answers once its adapters are active
  check      health.Checks: the release it reports and real calls through it
Stages: the first `canary` servers, then stages of the given sizes, each followed by a soak
that probes every upgraded server and watches for IceGrid restarts. Any failure rolls every
upgraded server back to the release they ran before, with the same care.

The grid is the state: which release each server reports. A small state file remembers the
target and the release before it, so an interrupted upgrade (or rollback) is finished by
running the command again. Each server's step is also recorded where the operators' console
reads it (services/common/upgrades.py), given a recorder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import IceGrid

from patch import release, schema
from patch.distribution import Distribution
from patch.health import KINDS, Checks, Unhealthy, kind
from services.common import upgrades

Progress = Callable[[str], None]
Confirm = Callable[[str], bool]


class RolloutFailed(Exception):
    """The rollout stopped; the message says why and what the grid runs now."""


@dataclass(frozen=True)
class Options:
    canary: int = 1  # servers upgraded and soaked before any other
    stages: Sequence[int] = ()  # sizes of the stages after the canary; the last repeats
    soak_seconds: float = 10.0
    probe_interval: float = 0.5
    max_error_rate: float = 0.0  # failed probes / probes during a soak above this fail the stage
    drain_seconds: float = 1.0


@dataclass
class State:
    """What an interrupted run needs to finish: where it was going and where it came from."""

    target: str
    previous: str
    rolling_back: bool = False

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            d = json.loads(path.read_text())
            return cls(str(d["target"]), str(d["previous"]), bool(d["rolling_back"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        tmp.replace(path)


def order(server_ids: Sequence[str]) -> list[str]:
    """Back ends first (DBAgent, TagAlias), then Push, the gateways, dispatchers and STC; by id
    within a kind. Servers that are not pushgrid's (the router, IcePatch2) are left out."""
    ours = [s for s in server_ids if any(s.startswith(k + "-") for k in KINDS)]
    return sorted(ours, key=lambda s: (KINDS.index(kind(s)), s))


def stages(servers: Sequence[str], canary: int, sizes: Sequence[int]) -> list[list[str]]:
    """servers cut into the canary stage and the following ones (the last size repeats)."""
    out: list[list[str]] = []
    rest = list(servers)
    if canary > 0 and rest:
        out.append(rest[:canary])
        rest = rest[canary:]
    sizes = [s for s in sizes if s > 0] or [len(rest) or 1]
    i = 0
    while rest:
        size = sizes[min(i, len(sizes) - 1)]
        out.append(rest[:size])
        rest = rest[size:]
        i += 1
    return out


@dataclass
class Rollout:
    admin: IceGrid.AdminPrx
    distribution: Distribution
    checks: Checks
    releases: Path
    state_file: Path
    options: Options = field(default_factory=Options)
    progress: Progress = print
    confirm: Confirm | None = None  # asked before each stage after the canary; None: never ask
    migrate: Callable[[Path], list[str]] | None = None  # applies a release's migrations folder
    recorder: upgrades.Recorder | None = None  # each step, where the console reads it
    _started: float = field(default_factory=time.monotonic)

    # ---- commands

    def upgrade(self, version: str) -> None:
        """Rolls version through the grid, or rolls back and raises RolloutFailed."""
        try:
            self._upgrade(version)
        except RolloutFailed as exc:
            self._phase(upgrades.STOPPED, str(exc))
            raise
        except KeyboardInterrupt:
            self._phase(upgrades.STOPPED, "interrupted; the same command finishes it")
            raise

    def _upgrade(self, version: str) -> None:
        target = self._trusted(version)
        state = State.load(self.state_file)
        if state is not None and state.rolling_back:
            self._say(f"an earlier rollback to {state.previous} was interrupted: finishing it first")
            self._roll_back(state)
            raise RolloutFailed(f"finished the interrupted rollback to {state.previous}; run the upgrade again")
        if state is None or state.target != target.version:
            state = State(target.version, self.distribution.published())
            state.save(self.state_file)
        self._say(f"upgrade to {target.version} (from {state.previous})")
        self._migrate(state.previous, target)
        self._publish(target)
        todo = [s for s in order(self.admin.getAllServerIds()) if self.checks.release_of(s) != target.version]
        plan = stages(todo, self.options.canary, self.options.stages)
        self._say(f"{len(todo)} servers to upgrade in {len(plan)} stages: " + " | ".join(", ".join(s) for s in plan))
        if self.recorder is not None:
            self.recorder.begin(target.version, state.previous, todo)
        done: list[str] = []
        for number, stage in enumerate(plan):
            name = "canary" if number == 0 and self.options.canary else f"stage {number}"
            if number and self.confirm is not None and not self.confirm(f"go on with {name} ({', '.join(stage)})?"):
                raise RolloutFailed(f"stopped before {name} at the operator's word; run again to go on")
            try:
                for sid in stage:
                    self._replace(sid, target.version)
                    done.append(sid)
                self._soak(done, name)
            except Unhealthy as exc:
                self._say(f"FAILED: {exc}")
                state.rolling_back = True
                state.save(self.state_file)
                self._roll_back(state)
                raise RolloutFailed(f"{exc}; rolled back to {state.previous}") from None
        self.state_file.unlink(missing_ok=True)
        self._say(f"every server runs {target.version}")
        self._phase(upgrades.FINISHED, f"every server runs {target.version}")

    def rollback(self, version: str | None) -> None:
        """Rolls the grid to version (default: the release before the current upgrade, or the
        kept release before the published one), with the same care as an upgrade."""
        state = State.load(self.state_file)
        if version is None:
            version = state.previous if state is not None else self._before(self.distribution.published())
        self.state_file.unlink(missing_ok=True)
        self.upgrade(version)

    # ---- steps

    def _trusted(self, version: str) -> release.Release:
        rel = release.find(self.releases, version)
        bad = release.verify(rel)
        if bad:
            raise RolloutFailed(f"release {version} does not match its manifest: {', '.join(bad[:5])}")
        return rel

    def _before(self, version: str) -> str:
        kept = [r.version for r in release.all_releases(self.releases)]
        if version not in kept or kept.index(version) == 0:
            raise RolloutFailed(f"no kept release before {version}; name the version to roll back to")
        return kept[kept.index(version) - 1]

    def _migrate(self, running: str, target: release.Release) -> None:
        """Refuses a target whose migrations cannot run beside the running release, then applies
        the ones it brings, before any of its servers starts (expand first)."""
        try:
            new = schema.plan(release.find(self.releases, running), target)
        except release.ReleaseError:
            self._say(f"  the running release {running} is not kept here: its schema is not compared")
            new = []
        except schema.IncompatibleRelease as exc:
            self.state_file.unlink(missing_ok=True)
            raise RolloutFailed(str(exc)) from None
        if new and self.migrate is not None:
            applied = self.migrate(target.path / schema.MIGRATIONS)
            self._say(f"  schema migrations applied: {', '.join(applied) or 'none (already there)'}")

    def _publish(self, target: release.Release) -> None:
        if self.distribution.published() != target.version:
            started = time.monotonic()
            self.distribution.publish(target, self.admin)
            self._say(f"published {target.version} ({time.monotonic() - started:.1f}s)")

    def _replace(self, server_id: str, version: str) -> None:
        """disable, drain, stop, patch, enable, start, check: one server onto version."""
        started = time.monotonic()
        before = self.checks.release_of(server_id) or "stopped"
        self._step(server_id, upgrades.STOPPING)
        self.admin.enableServer(server_id, False)
        time.sleep(self.options.drain_seconds)
        if self.admin.getServerState(server_id) != IceGrid.ServerState.Inactive:
            self.admin.stopServer(server_id)
        self._step(server_id, upgrades.PATCHING)
        self.distribution.patch(self.admin, server_id)
        self._step(server_id, upgrades.STARTING)
        self.admin.enableServer(server_id, True)
        try:
            try:
                self.admin.startServer(server_id)
            except IceGrid.ServerStartException as exc:
                raise Unhealthy(f"{server_id} did not start on {version}: {exc.reason}") from None
            self.checks.check(server_id, version)
        except Unhealthy:
            self._step(server_id, upgrades.FAILED)
            raise
        self._step(server_id, upgrades.DONE)
        self._say(f"  {server_id}: {before} -> {version} ({time.monotonic() - started:.1f}s)")

    def _soak(self, servers: Sequence[str], name: str) -> None:
        """Probes every upgraded server for soak_seconds; fails on a restart or too many errors."""
        if self.options.soak_seconds <= 0:
            return
        pids = {s: self.admin.getServerPid(s) for s in servers}
        probes = failures = 0
        last = ""
        deadline = time.monotonic() + self.options.soak_seconds
        while time.monotonic() < deadline:
            for sid in servers:
                if self.admin.getServerPid(sid) != pids[sid]:  # 0 once stopped, another once restarted
                    raise Unhealthy(f"{sid} restarted or stopped during the {name} soak")
                probes += 1
                try:
                    self.checks.probe(sid)
                except Unhealthy as exc:
                    failures += 1
                    last = str(exc)
            if probes and failures / probes > self.options.max_error_rate:
                raise Unhealthy(f"{failures} of {probes} probes failed during the {name} soak ({last})")
            time.sleep(self.options.probe_interval)
        self._say(f"  {name} soaked {self.options.soak_seconds:.0f}s: {probes} probes, {failures} failed")

    def _roll_back(self, state: State) -> None:
        """Every server not on state.previous goes back to it, one at a time, checked."""
        self._say(f"rolling back to {state.previous}")
        previous = self._trusted(state.previous)
        self._publish(previous)
        todo = [s for s in order(self.admin.getAllServerIds()) if self.checks.release_of(s) != previous.version]
        if self.recorder is not None:
            self.recorder.begin(previous.version, state.target, list(reversed(todo)), upgrades.ROLLING_BACK)
        for sid in reversed(todo):
            try:
                self._replace(sid, previous.version)
            except Unhealthy as exc:
                raise RolloutFailed(
                    f"the rollback to {previous.version} stopped: {exc}; the grid runs mixed releases "
                    "(pushgrid release list); fix the cause and run the rollback again"
                ) from None
        self.state_file.unlink(missing_ok=True)
        self._say(f"every server runs {previous.version} again")
        self._phase(upgrades.FINISHED, f"rolled back: every server runs {previous.version} again")

    def _say(self, text: str) -> None:
        self.progress(f"[{time.monotonic() - self._started:7.1f}s] {text}")

    def _step(self, server_id: str, step: str) -> None:
        if self.recorder is not None:
            self.recorder.step(server_id, step)

    def _phase(self, phase: str, note: str) -> None:
        if self.recorder is not None:
            self.recorder.phase(phase, note)
