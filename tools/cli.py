"""`pushgrid`: bring a local grid up, show its status, take it down."""
from __future__ import annotations

import argparse
import json
import os
import sys

from tools.grid import lifecycle
from tools.grid.certs import InvalidHost
from tools.grid.procs import StartError
from tools.grid.rundir import RunDir


def _run_dir(args: argparse.Namespace) -> RunDir:
    return RunDir(args.run_dir)


def cmd_up(args: argparse.Namespace) -> int:
    run = _run_dir(args)
    lifecycle.up(run, partner_host=args.partner_host)
    print()
    return cmd_status(args)


def cmd_down(args: argparse.Namespace) -> int:
    lifecycle.down(_run_dir(args))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from tools.grid import icegrid

    run = _run_dir(args)
    st = icegrid.status(run)
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        print_status(st)
    healthy = (all(st["registries"].values()) and all(st["nodes"].values())
               and all(s["state"] == "Active" for s in st["servers"]))
    return 0 if healthy else 1


def print_status(st: dict) -> None:
    partner = st.get("partner") or {}
    print("registries: " + ", ".join(f"{n} {'up' if ok else 'DOWN'}" for n, ok in sorted(st["registries"].items())))
    print("nodes:      " + ", ".join(f"{n} {'up' if ok else 'DOWN'}" for n, ok in sorted(st["nodes"].items())))
    print("replica groups:")
    for gid, g in sorted(st["replica_groups"].items()):
        print(f"  {gid:<20} {g['policy']:<12} objects: {', '.join(g['objects'])}")
    print(f"{'server':<18} {'node':<8} {'state':<12} {'pid':>7}  replica group")
    for s in st["servers"]:
        state = s["state"] + ("" if s["enabled"] else " (disabled)")
        print(f"{s['id']:<18} {s['node']:<8} {state:<12} {s['pid'] or '-':>7}  {', '.join(s['replica_groups']) or '-'}")
    if partner.get("endpoints"):
        print(f"partners:   PushGridRouter/router:{partner['endpoints']}")
        print(f"            config for partners: {partner['config']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pushgrid", description=__doc__)
    parser.add_argument("--run-dir", default=os.environ.get("PUSHGRID_RUN_DIR", "run"),
                        help="the grid's state directory (default: ./run, or $PUSHGRID_RUN_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local grid and deploy the application (idempotent)")
    up.add_argument("--partner-host", metavar="ADDR",
                    help="address the Glacier2 router listens on for partners (kept in the run "
                         "directory; default 127.0.0.1)")
    up.set_defaults(fn=cmd_up)
    st = sub.add_parser("status", help="registries, nodes, replica groups and every server")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)
    sub.add_parser("down", help="stop everything the run directory started").set_defaults(fn=cmd_down)
    args = parser.parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    try:
        return args.fn(args)
    except (StartError, InvalidHost) as e:
        print(f"pushgrid: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
