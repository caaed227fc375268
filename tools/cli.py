"""`pushgrid`: bring a local grid up, show its status, take it down, and administer apps."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from patch.release import ReleaseError
from services.common import canaries
from services.common.config import InvalidInternalHost
from tools.grid import lifecycle
from tools.grid.certs import InvalidHost
from tools.grid.procs import StartError
from tools.grid.rundir import RunDir

# PushGrid is generated from slice/ when it is first imported (slow for a CLI), and it is Any to
# mypy anyway: the DBAgent proxy is typed by name only.
DBAgentPrx = Any
AppCommand = Callable[[DBAgentPrx, argparse.Namespace], int]
Subparsers = Any  # argparse's _SubParsersAction, private


def _run_dir(args: argparse.Namespace) -> RunDir:
    return RunDir(args.run_dir)


def cmd_up(args: argparse.Namespace) -> int:
    run = _run_dir(args)
    lifecycle.up(run, partner_host=args.partner_host, internal_host=args.internal_host, metrics=args.metrics)
    print()
    return cmd_status(args)


def cmd_down(args: argparse.Namespace) -> int:
    lifecycle.down(_run_dir(args))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from tools.grid import icegrid, redis_cluster

    run = _run_dir(args)
    st = icegrid.status(run)
    replication = redis_cluster.replication(run)  # asked once, for roles and health
    roles = redis_cluster.roles(run, replication)
    healthy_redis = redis_cluster.healthy(run, replication)
    lost = redis_cluster.lost_canaries(run) if healthy_redis else []
    st["redis"] = {"roles": roles, "healthy": healthy_redis and not lost, "lost_canaries": lost}
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        print_status(st)
    healthy = (
        all(st["registries"].values())
        and all(st["nodes"].values())
        and all(s["state"] == "Active" for s in st["servers"])
        and st["redis"]["healthy"]
    )
    return 0 if healthy else 1


def cmd_metrics(args: argparse.Namespace) -> int:
    """Every active server's metrics in Prometheus' text format, each sample labelled server=<id>."""
    from tools.grid import metrics

    text, silent = metrics.collect(_run_dir(args))
    sys.stdout.write(text.decode("utf-8"))
    for sid in silent:
        print(f"pushgrid: {sid} did not serve its metrics", file=sys.stderr)
    return 1 if silent else 0


def cmd_top(args: argparse.Namespace) -> int:
    """Every server's state, release, connections, calls/s, errors/s, p99 and lag, redrawn like top."""
    from tools.grid import top

    return top.run(_run_dir(args), interval=args.interval, once=args.once)


def cmd_logs(args: argparse.Namespace) -> int:
    """Servers' output through IceGrid: the last lines, or those naming --grep, then --follow."""
    from tools.grid import logs

    try:
        logs.tail(_run_dir(args), args.servers, lines=args.lines, grep=args.grep, follow=args.follow)
    except logs.UnknownServer as exc:
        print(f"pushgrid: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def cmd_redis_replant(args: argparse.Namespace) -> int:
    from tools.grid import redis_cluster

    missing = redis_cluster.replant_canaries(_run_dir(args))
    print(
        f"{missing} canary keys were missing; all {len(canaries.KEYS)} planted again"
        if missing
        else "no canary was missing"
    )
    return 0


def print_status(st: dict[str, Any]) -> None:
    partner = st.get("partner") or {}
    print("registries: " + ", ".join(f"{n} {'up' if ok else 'DOWN'}" for n, ok in sorted(st["registries"].items())))
    print("nodes:      " + ", ".join(f"{n} {'up' if ok else 'DOWN'}" for n, ok in sorted(st["nodes"].items())))
    if "redis" in st:
        from tools.grid.rundir import REDIS_NODES

        roles = st["redis"]["roles"]
        nodes = ", ".join(f"{n} {roles.get(n, 'DOWN')}" for n in REDIS_NODES).replace("slave", "replica")
        if st["redis"].get("lost_canaries"):
            verdict = (
                f"DATA LOST ({len(st['redis']['lost_canaries'])} canary keys gone: a master came back empty; "
                "reports of messages sent meanwhile say so; once dealt with: pushgrid redis-replant)"
            )
        elif st["redis"]["healthy"]:
            verdict = "ok"
        else:
            verdict = "DEGRADED (not every master has a replica, or a node is down)"
        print(f"redis:      {nodes}: {verdict}")
    print("replica groups:")
    for gid, g in sorted(st["replica_groups"].items()):
        print(f"  {gid:<20} {g['policy']:<12} objects: {', '.join(g['objects'])}")
    print(f"{'server':<18} {'node':<8} {'state':<12} {'pid':>7}  {'release':<26} replica group")
    for s in st["servers"]:
        state = s["state"] + ("" if s["enabled"] else " (disabled)")
        groups = ", ".join(s["replica_groups"]) or "-"
        print(f"{s['id']:<18} {s['node']:<8} {state:<12} {s['pid'] or '-':>7}  {s.get('release') or '-':<26} {groups}")
    if partner.get("endpoints"):
        print(f"partners:   PushGridRouter/router:{partner['endpoints']}")
        print(f"            config for partners: {partner['config']}")
    if st.get("console"):
        print(f"console:    {st['console']} (the grid's internal address; IceGrid's admin login)")


# ------------------------------------------------------------------ pushgrid release ...


def cmd_release_build(args: argparse.Namespace) -> int:
    from patch import release

    run = _run_dir(args)
    built = release.build(run.releases, version=args.version)
    print(f"release {built.version} in {built.path}")
    return 0


def cmd_release_list(args: argparse.Namespace) -> int:
    """Every kept release, and which servers run it now (when the grid is up)."""
    from patch import release
    from patch.distribution import IcePatch2Distribution
    from tools.grid import icegrid

    run = _run_dir(args)
    kept = release.all_releases(run.releases)
    published = IcePatch2Distribution(run.patch_data).published()
    try:
        servers = icegrid.status(run)["servers"]
    except Exception:  # noqa: BLE001 - no grid answering: list the releases without servers
        servers = []
    running: dict[str, list[str]] = {}
    for s in servers:
        if s.get("release"):
            running.setdefault(s["release"], []).append(s["id"])
    rows = [(r, sorted(running.pop(r.version, []))) for r in kept]
    if args.json:
        releases = [
            {
                "version": r.version,
                "builtAt": r.built_at,
                "commit": r.commit,
                "dirty": r.dirty,
                "files": len(r.files),
                "published": r.version == published,
                "servers": ids,
            }
            for r, ids in rows
        ]
        _print_json({"releases": releases, "unknown": running})
        return 0
    if not rows:
        print("no releases yet: pushgrid release build")
    for r, ids in rows:
        mark = " (published)" if r.version == published else ""
        changes = " +changes" if r.dirty else ""
        print(f"{r.version}{mark}  built {r.built_at}  commit {r.commit[:12]}{changes}")
        print(f"    {len(ids)} servers: {', '.join(ids) or '-'}")
    for version, ids in sorted(running.items()):
        print(f"{version} (not kept here)")
        print(f"    {len(ids)} servers: {', '.join(sorted(ids))}")
    return 0


def _rollout(args: argparse.Namespace, act: Callable[[Any], None]) -> int:
    """Runs act(rollout) against the grid of the run directory; a failed rollout is exit 1."""
    from patch.rollout import Options, RolloutFailed
    from tools.grid.rollouts import open_rollout

    options = Options(
        canary=args.canary,
        stages=args.stage or (),
        soak_seconds=args.soak,
        max_error_rate=args.max_error_rate,
    )
    progress = functools.partial(print, flush=True)
    with open_rollout(_run_dir(args), options, progress, _ask if args.confirm else None) as rollout:
        try:
            act(rollout)
        except RolloutFailed as e:
            print(f"pushgrid: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("pushgrid: interrupted; run the same command again to finish", file=sys.stderr)
            return 130
    return 0


def _ask(question: str) -> bool:
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_upgrade(args: argparse.Namespace) -> int:
    return _rollout(args, lambda r: r.upgrade(args.version))


def cmd_rollback(args: argparse.Namespace) -> int:
    return _rollout(args, lambda r: r.rollback(args.version))


def _add_rollout_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--canary", type=int, default=1, metavar="N", help="servers upgraded and soaked first (default 1)")
    p.add_argument(
        "--stage",
        type=int,
        action="append",
        metavar="N",
        help="size of each later stage (repeatable; the last repeats)",
    )
    p.add_argument("--soak", type=float, default=10.0, metavar="S", help="seconds each stage is watched (default 10)")
    p.add_argument(
        "--max-error-rate", type=float, default=0.0, metavar="R", help="failed probes allowed in a soak (default 0)"
    )
    p.add_argument("--confirm", action="store_true", help="ask before each stage after the canary")


# ------------------------------------------------------------------ pushgrid hosts ...


def cmd_hosts(args: argparse.Namespace) -> int:
    from tools.grid import hostnode, hosts

    run = _run_dir(args)
    try:
        if args.hosts_command == "deploy":
            hostnode.deploy(run, args.names, hostnode.parse_kinds(args.servers))
        elif args.hosts_command == "stop":
            for host in hosts.find(run, args.names):
                print(f"{host.name}: {'node stopped' if hostnode.stop_node(host) else 'no node running'}")
        elif args.hosts_command == "add":
            host = hosts.add(run, hosts.Host(args.name, args.address, args.user, args.port, args.key or "", args.root))
            print(f"host {host.name}: {host.user}@{host.address}:{host.port}, root {host.root}")
        elif args.hosts_command == "remove":
            hosts.find(run, [args.name])
            hostnode.undeploy(run, args.name)
            hosts.remove(run, args.name)
            print(f"host {args.name} removed")
        elif args.hosts_command == "list":
            found = hosts.all_hosts(run)
            if args.json:
                _print_json([h.__dict__ for h in found])
            elif not found:
                print("no hosts yet: pushgrid hosts add NAME ADDRESS")
            for h in [] if args.json else found:
                servers = ", ".join(hostnode.server_ids(h)) or "no servers"
                print(f"{h.name:<12} {h.user}@{h.address}:{h.port}  root {h.root}  key {h.key or '-'}  {servers}")
        else:
            results = hosts.check(hosts.find(run, args.names))
            for name, line in results.items():
                print(f"{name:<12} {line}")
            return 0 if all(line.startswith("ok") for line in results.values()) else 1
    except hosts.HostError as e:
        print(f"pushgrid: {e}", file=sys.stderr)
        return 1
    return 0


def _add_hosts_parser(sub: Subparsers) -> None:
    p = sub.add_parser("hosts", help="the node hosts the grid spans, reached over SSH")
    cmds = p.add_subparsers(dest="hosts_command", required=True, metavar="COMMAND")
    add = cmds.add_parser("add", help="record a host (replaces one of the same name)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("address", metavar="ADDRESS", help="the IP address its sshd and node listen on")
    add.add_argument("--user", default="root")
    add.add_argument("--port", type=int, default=22)
    add.add_argument("--key", help="the SSH private key file (default: the agent's or ~/.ssh)")
    add.add_argument("--root", default="/var/lib/pushgrid", help="the grid's directory on the host")
    deploy = cmds.add_parser(
        "deploy",
        help="install and start an IceGrid node on hosts over SSH (all at once) and place servers on them",
    )
    deploy.add_argument("names", metavar="NAME", nargs="+")
    deploy.add_argument(
        "--servers",
        default="dbagent,tagalias,push",
        help="kinds of server each host runs, comma-separated: dbagent, tagalias, push, dispatcher, stc, "
        "partnergateway (default: dbagent,tagalias,push)",
    )
    stop = cmds.add_parser("stop", help="stop hosts' nodes and their servers (deploy starts them again)")
    stop.add_argument("names", metavar="NAME", nargs="*", help="default: every host")
    remove = cmds.add_parser("remove", help="take a host's servers out of the grid, stop its node, forget it")
    remove.add_argument("name", metavar="NAME")
    listing = cmds.add_parser("list", help="the recorded hosts")
    listing.add_argument("--json", action="store_true")
    check = cmds.add_parser("check", help="log in to hosts (all at once) and check what a node host needs")
    check.add_argument("names", metavar="NAME", nargs="*", help="default: every host")
    p.set_defaults(fn=cmd_hosts)


def _add_release_parser(sub: Subparsers) -> None:
    rel = sub.add_parser("release", help="build and list releases of what the grid's servers run")
    cmds = rel.add_subparsers(dest="release_command", required=True, metavar="COMMAND")
    build = cmds.add_parser("build", help="copy the servers' code, Slice and gateway into a new release")
    build.add_argument("--version", help="the release's version (default: build time and commit)")
    build.set_defaults(fn=cmd_release_build)
    listing = cmds.add_parser("list", help="every kept release and the servers running it")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(fn=cmd_release_list)


# ------------------------------------------------------------------ pushgrid app ...


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def app_create(db: DBAgentPrx, args: argparse.Namespace) -> int:
    from tools.grid import apps

    creds = db.createApp(args.name, args.quota)
    if args.json:
        _print_json({"appKey": creds.appKey, "masterSecret": creds.masterSecret})
    else:
        print(f"created app {args.name!r}")
        print("\n".join(apps.credentials_lines(creds)))
    print(apps.SECRET_NOTE, file=sys.stderr)
    return 0


def app_list(db: DBAgentPrx, args: argparse.Namespace) -> int:
    from tools.grid import apps

    infos = db.listApps()
    if args.json:
        _print_json([apps.as_dict(a) for a in infos])
    elif not infos:
        print("no apps yet: pushgrid app create NAME")
    else:
        print("\n".join(apps.table(infos)))
    return 0


def app_show(db: DBAgentPrx, args: argparse.Namespace) -> int:
    from tools.grid import apps

    info = db.getApp(args.key)
    devices = db.deviceCount(args.key)
    if args.json:
        _print_json({**apps.as_dict(info), "devices": devices})
    else:
        print("\n".join(apps.details(info, devices)))
    return 0


def app_rotate_secret(db: DBAgentPrx, args: argparse.Namespace) -> int:
    from tools.grid import apps

    creds = db.rotateSecret(args.key)
    if args.json:
        _print_json({"appKey": creds.appKey, "masterSecret": creds.masterSecret})
    else:
        print("\n".join(apps.credentials_lines(creds)))
    print("New logins need the new secret. " + apps.SECRET_NOTE, file=sys.stderr)
    return 0


def app_set_quota(db: DBAgentPrx, args: argparse.Namespace) -> int:
    db.setQuota(args.key, args.quota)
    print(f"app {args.key}: push quota {args.quota} per minute")
    return 0


def app_set_device_limit(db: DBAgentPrx, args: argparse.Namespace) -> int:
    db.setDeviceLimit(args.key, args.devices)
    print(f"app {args.key}: " + (f"at most {args.devices} devices" if args.devices else "no device limit"))
    return 0


def app_set_enabled(enabled: bool) -> AppCommand:
    def run(db: DBAgentPrx, args: argparse.Namespace) -> int:
        db.setAppEnabled(args.key, enabled)
        print(f"app {args.key} {'enabled' if enabled else 'disabled: logins, pushes and new devices are refused'}")
        return 0

    return run


def cmd_app(args: argparse.Namespace) -> int:
    """Runs one app command against DBAgent; its named errors become one line and exit 1."""
    import Ice

    from services.common.contract import PushGrid
    from tools.grid import apps

    try:
        with apps.dbagent(args.run_dir) as db:
            return args.app_fn(db, args)
    except PushGrid.PushGridError as e:
        print(f"pushgrid: {type(e).__name__}: {e.reason}", file=sys.stderr)
    except apps.NoGrid as e:
        print(f"pushgrid: {e}", file=sys.stderr)
    except Ice.Exception as e:
        print(
            f"pushgrid: DBAgent did not answer through the grid of {os.path.abspath(args.run_dir)} "
            f"({type(e).__name__}); is the grid up? (pushgrid status)",
            file=sys.stderr,
        )
    return 1


def _add_app_parser(sub: Subparsers) -> None:
    app = sub.add_parser(
        "app",
        help="create and administer apps (partners' credentials and quotas)",
        description="Apps through DBAgent. A master secret is printed once, at create "
        "and rotate-secret; pushgrid keeps only its hash.",
    )
    app.set_defaults(fn=cmd_app)
    cmds = app.add_subparsers(dest="app_command", required=True, metavar="COMMAND")

    def command(
        name: str, fn: AppCommand, summary: str, key: bool = True, json_out: bool = False
    ) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=summary, description=summary)
        if key:
            p.add_argument("key", metavar="KEY", help="the app key (24 hex characters)")
        if json_out:
            p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(app_fn=fn)
        return p

    create = command(
        "create",
        app_create,
        "create an app; prints its app key and master secret (shown once)",
        key=False,
        json_out=True,
    )
    create.add_argument("name", metavar="NAME", help="the app's name, unique")
    create.add_argument(
        "--quota",
        type=int,
        default=0,
        metavar="N",
        help="pushes per minute (default: 0, which means the grid's default)",
    )
    command("list", app_list, "list every app", key=False, json_out=True)
    command("show", app_show, "show one app and its device count", json_out=True)
    command("rotate-secret", app_rotate_secret, "issue a new master secret; the old one stops working", json_out=True)
    command("set-quota", app_set_quota, "set the app's pushes per minute").add_argument(
        "quota", type=int, metavar="N", help="pushes per minute"
    )
    command(
        "set-device-limit", app_set_device_limit, "set the most devices the app may register (0: none)"
    ).add_argument("devices", type=int, metavar="N", help="devices; 0 means no limit")
    command("disable", app_set_enabled(False), "refuse the app's logins, pushes and new devices")
    command("enable", app_set_enabled(True), "accept the app again")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pushgrid", description=__doc__)
    parser.add_argument(
        "--run-dir",
        default=os.environ.get("PUSHGRID_RUN_DIR", "run"),
        help="the grid's state directory (default: ./run, or $PUSHGRID_RUN_DIR)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local grid and deploy the application (idempotent)")
    up.add_argument(
        "--partner-host",
        metavar="ADDR",
        help="address the Glacier2 router listens on for partners (kept in the run directory; default 127.0.0.1)",
    )
    up.add_argument(
        "--internal-host",
        metavar="ADDR",
        help="loopback or private address every internal endpoint listens on, reachable from the "
        "node hosts (kept in the run directory; default 127.0.0.1; change it only while the grid is down)",
    )
    up.add_argument(
        "--metrics",
        choices=("on", "off"),
        help="whether servers keep metrics: their counters, dispatch timing and HTTP endpoint, and Ice's "
        "IceMX view (kept in the run directory; default on; a new value restarts every server)",
    )
    up.set_defaults(fn=cmd_up)
    st = sub.add_parser("status", help="registries, nodes, replica groups and every server")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)
    sub.add_parser("down", help="stop everything the run directory started").set_defaults(fn=cmd_down)
    sub.add_parser(
        "metrics", help="every server's metrics (Prometheus text format), each sample labelled with its server"
    ).set_defaults(fn=cmd_metrics)
    top = sub.add_parser("top", help="every server live: state, release, connections, calls/s, errors/s, p99, lag")
    top.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between frames (default 2)")
    top.add_argument("--once", action="store_true", help="print one frame (rates over one interval) and exit")
    top.set_defaults(fn=cmd_top)
    lg = sub.add_parser(
        "logs",
        help="servers' output through IceGrid, in time order (`--grep msg=ID` follows one push everywhere)",
    )
    lg.add_argument("servers", nargs="*", metavar="SERVER", help="server ids (default: every server)")
    lg.add_argument("-n", "--lines", type=int, default=20, help="last lines of each server (default 20; 0: all)")
    lg.add_argument("--grep", default="", metavar="TEXT", help="only lines containing TEXT (e.g. msg=<id>)")
    lg.add_argument("-f", "--follow", action="store_true", help="then print new lines as they come (Ctrl-C stops)")
    lg.set_defaults(fn=cmd_logs)
    sub.add_parser(
        "redis-replant", help="plant Redis's canary keys again once a reported data loss has been dealt with"
    ).set_defaults(fn=cmd_redis_replant)
    _add_app_parser(sub)
    _add_release_parser(sub)
    _add_hosts_parser(sub)
    upgrade = sub.add_parser("upgrade", help="roll a release through the grid, one server at a time")
    upgrade.add_argument("version", metavar="VERSION", help="a kept release (pushgrid release list)")
    _add_rollout_arguments(upgrade)
    upgrade.set_defaults(fn=cmd_upgrade)
    rollback = sub.add_parser("rollback", help="roll the grid back to a kept release, with the same care")
    rollback.add_argument("version", metavar="VERSION", nargs="?", help="default: the release before the current one")
    _add_rollout_arguments(rollback)
    rollback.set_defaults(fn=cmd_rollback)
    args = parser.parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    try:
        return args.fn(args)
    except (StartError, InvalidHost, InvalidInternalHost, ReleaseError) as e:
        print(f"pushgrid: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
