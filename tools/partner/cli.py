"""`pushgrid-partner`: push and manage devices as a partner, through the Glacier2 router.

    export PUSHGRID_MASTER_SECRET=...
    pushgrid-partner --app-key KEY push --tag vip --alert "Sale ends tonight" --ttl 3600
    pushgrid-partner --app-key KEY push --rid 1a2b3c --message '{"kind":"sync"}' --at 2030-01-01T09:00
    pushgrid-partner --app-key KEY --json report 7215098231939072
    pushgrid-partner --app-key KEY report --curve 7215098231939072
    pushgrid-partner --app-key KEY tags add 1a2b3c vip beta

The router comes from --config (default ./run/partner.cfg when it exists) or --router with an
optional --ca for SSL. The master secret comes from --secret or $PUSHGRID_MASTER_SECRET (the
environment keeps it out of `ps`). Results print as lines, or as JSON with --json; every named
error is one line on stderr (JSON with --json) and exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from services.common import platforms
from services.common.contract import PushGrid
from tools.partner import builders, errors
from tools.partner.sdk import PartnerClient, PartnerConfigError

DEFAULT_CONFIG = os.path.join("run", "partner.cfg")
SECRET_ENV = "PUSHGRID_MASTER_SECRET"
APP_KEY_ENV = "PUSHGRID_APP_KEY"


class Output:
    """Where a command's result goes: a readable line per item, or one JSON document."""

    def __init__(self, as_json: bool, out: TextIO | None = None) -> None:
        self.as_json = as_json
        self.out = out or sys.stdout

    def emit(self, data: Any, lines: Sequence[str] | str) -> None:
        if self.as_json:
            print(json.dumps(data, ensure_ascii=False), file=self.out)
        else:
            for line in [lines] if isinstance(lines, str) else lines:
                print(line, file=self.out)


# ---------------------------------------------------------------- push requests from arguments


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _send_at(text: str) -> int:
    """An ISO time (2030-01-01T09:00, with an offset or Z; without one: local time) as epoch ms."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r} (e.g. 2030-01-01T09:00:00+08:00)") from None
    return int(when.timestamp() * 1000)


def _platform(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    for n in names:
        if n.lower() not in platforms.BY_NAME:
            raise argparse.ArgumentTypeError(f"unknown platform {n!r}: one of {', '.join(platforms.NAMES)}")
    return names


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    """The options push and validate share: audience, platforms, content, options."""
    a = p.add_argument_group("audience (the parts combine with AND; --all alone is a broadcast)")
    a.add_argument("--tag", action="append", default=[], metavar="TAG", help="devices with any of these tags (repeat)")
    a.add_argument(
        "--tag-and", action="append", default=[], metavar="TAG", help="... and with every one of these (repeat)"
    )
    a.add_argument("--tag-not", action="append", default=[], metavar="TAG", help="... and with none of these (repeat)")
    a.add_argument("--alias", action="append", default=[], help="devices with this alias (repeat)")
    a.add_argument("--rid", action="append", default=[], metavar="RID", help="this registration id (repeat)")
    a.add_argument("--all", action="store_true", help="every device of the app")
    c = p.add_argument_group("content (a notification, a pass-through message, or both)")
    c.add_argument(
        "--platform",
        action="append",
        type=_platform,
        default=[],
        help="android, ios or web (repeat or comma-separate; default: all)",
    )
    c.add_argument("--alert", default="", help="notification text the device shows")
    c.add_argument("--title", default="", help="notification title")
    c.add_argument("--message", default="", help="pass-through message content, handed to the app")
    c.add_argument("--message-title", default="", help="pass-through message title")
    c.add_argument("--content-type", default="", help="pass-through message content type")
    c.add_argument(
        "--extra",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="extras of the notification and of the message, whichever the push has (repeat)",
    )
    o = p.add_argument_group("push options")
    o.add_argument("--ttl", type=int, default=None, help="seconds kept for offline devices (0: online only)")
    o.add_argument("--sendno", type=int, default=0, help="a number of yours, echoed back")
    o.add_argument("--override", type=int, default=0, metavar="MSG_ID", help="replace this earlier message")
    o.add_argument("--big-push-minutes", type=int, default=0, help="spread the push over this many minutes")


def build_request(args: argparse.Namespace) -> PushGrid.PushRequest:
    """The PushRequest the push/validate options describe."""
    extras = dict(args.extra)
    return builders.push_request(
        builders.audience(
            tags=args.tag,
            tag_and=args.tag_and,
            tag_not=args.tag_not,
            aliases=args.alias,
            registration_ids=args.rid,
            all=args.all,
        ),
        notification=builders.notification(args.alert, args.title, extras if args.alert else None),
        message=builders.message(args.message, args.message_title, args.content_type, extras if args.message else None),
        platforms=[name for group in args.platform for name in group],
        options=builders.options(
            sendno=args.sendno, ttl=args.ttl, override_msg_id=args.override, big_push_duration=args.big_push_minutes
        ),
    )


# ---------------------------------------------------------------- commands


def cmd_push(client: PartnerClient, args: argparse.Namespace, out: Output) -> None:
    req = build_request(args)
    if args.at is None:
        res = client.push(req)
        out.emit({"msg_id": res.msgId, "sendno": res.sendno}, f"pushed msg_id {res.msgId} (sendno {res.sendno})")
    else:
        res = client.schedule(req, args.at)
        when = dt.datetime.fromtimestamp(args.at / 1000).astimezone().isoformat(timespec="seconds")
        out.emit(
            {"msg_id": res.msgId, "sendno": res.sendno, "send_at_ms": args.at},
            f"scheduled msg_id {res.msgId} (sendno {res.sendno}) for {when}",
        )


def cmd_validate(client: PartnerClient, args: argparse.Namespace, out: Output) -> None:
    client.validate(build_request(args))
    out.emit({"valid": True}, "valid")


def cmd_cancel(client: PartnerClient, args: argparse.Namespace, out: Output) -> None:
    client.cancel(args.msg_id)
    out.emit({"cancelled": args.msg_id}, f"cancelled msg_id {args.msg_id}")


REPORT_FIELDS = (
    ("msgId", "msg_id"),
    ("state", "state"),
    ("targets", "targets"),
    ("sentOnline", "sent_online"),
    ("storedOffline", "stored_offline"),
    ("received", "received"),
)


def cmd_report(client: PartnerClient, args: argparse.Namespace, out: Output) -> int:
    if args.curve is not None:
        if args.msg_ids:
            raise ValueError("report --curve takes one msg id, and no other")
        return cmd_curve(client, args.curve, out)
    if not args.msg_ids:
        raise ValueError("report needs a msg id (or --curve MSG_ID)")
    errors = client.report_errors(args.msg_ids)
    rows = [
        {
            **{key: (str(getattr(s, f)) if f == "state" else getattr(s, f)) for f, key in REPORT_FIELDS},
            "error": errors.get(s.msgId, ""),
        }
        for s in client.report(args.msg_ids)
    ]
    header = f"{'msg_id':>20} {'state':<12} {'targets':>9} {'online':>9} {'offline':>9} {'received':>9}"
    lines = [header] + [
        f"{r['msg_id']:>20} {r['state']:<12} {r['targets']:>9} {r['sent_online']:>9} "
        f"{r['stored_offline']:>9} {r['received']:>9}"
        for r in rows
    ]
    lines += [f"ERROR {r['msg_id']}: {r['error']}" for r in rows if r["error"]]
    out.emit(rows, lines)
    return 1 if any(r["error"] for r in rows) else 0


CURVE_BAR_WIDTH = 40  # characters of the widest bucket's bar
CURVE_BAR = "#"


def offset_label(seconds: int) -> str:
    """A bucket's start as people read it: +0s .. +299s, then +5m .. +59m, then +1h, +2h..."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"+{seconds // 3600}h"
    if seconds >= 300 and seconds % 60 == 0:
        return f"+{seconds // 60}m"
    return f"+{seconds}s"


def curve_lines(points: Sequence[PushGrid.CurvePoint]) -> list[str]:
    """One line per bucket (its start, its receipts, the receipts so far, a bar scaled to the
    widest bucket; a bucket with any receipt shows at least one character), then the total."""
    widest = max((p.received for p in points), default=0)
    lines = [f"{'offset':>8} {'received':>9} {'cumulative':>10}"]
    total = 0
    for p in points:
        total += p.received
        bar = CURVE_BAR * max(1, round(p.received * CURVE_BAR_WIDTH / widest)) if p.received else ""
        lines.append(f"{offset_label(p.offsetSeconds):>8} {p.received:>9} {total:>10}  {bar}")
    lines.append(f"{'total':>8} {total:>9}")
    return lines


def cmd_curve(client: PartnerClient, msg_id: int, out: Output) -> int:
    """When devices received the message (PartnerPush::reportCurve), as text or JSON."""
    points = client.report_curve(msg_id)
    data = {
        "msg_id": msg_id,
        "points": [{"offset_s": p.offsetSeconds, "width_s": p.widthSeconds, "received": p.received} for p in points],
        "total": sum(p.received for p in points),
    }
    out.emit(data, curve_lines(points))
    return 0


def cmd_tags(client: PartnerClient, args: argparse.Namespace, out: Output) -> None:
    if args.action == "all":
        tags = client.list_tags()
        out.emit({"tags": tags}, tags)
        return
    if args.rid is None:
        raise ValueError(f"tags {args.action} needs a registration id")
    if args.action == "list":
        tags = client.get_tags(args.rid)
        out.emit({"registration_id": args.rid, "tags": tags}, tags)
        return
    if not args.tags:
        raise ValueError(f"tags {args.action} needs at least one tag")
    if args.action == "add":
        client.add_tags(args.rid, args.tags)
    else:
        client.remove_tags(args.rid, args.tags)
    verb = "added to" if args.action == "add" else "removed from"
    out.emit({"registration_id": args.rid, args.action: args.tags}, f"{', '.join(args.tags)} {verb} {args.rid}")


def cmd_tag(client: PartnerClient, args: argparse.Namespace, out: Output) -> None:
    if args.action == "delete":
        client.delete_tag(args.tag)
        out.emit({"deleted": args.tag}, f"deleted tag {args.tag}")
    else:
        member = client.is_member(args.tag, args.rid)
        out.emit({"tag": args.tag, "registration_id": args.rid, "member": member}, "yes" if member else "no")


def cmd_alias(client: PartnerClient, args: argparse.Namespace, out: Output) -> None:
    if args.action == "set":
        client.set_alias(args.rid, args.alias)
        out.emit({"registration_id": args.rid, "alias": args.alias}, f"{args.rid} is now {args.alias}")
    elif args.action == "get":
        alias = client.get_alias(args.rid)
        out.emit({"registration_id": args.rid, "alias": alias}, alias or "(no alias)")
    elif args.action == "devices":
        rids = client.alias_devices(args.alias)
        out.emit({"alias": args.alias, "registration_ids": rids}, rids)
    else:
        client.delete_alias(args.alias)
        out.emit({"deleted": args.alias}, f"deleted alias {args.alias}")


def cmd_devices(client: PartnerClient, args: argparse.Namespace, out: Output) -> None:
    n = client.device_count()
    out.emit({"devices": n}, str(n))


# ---------------------------------------------------------------- parsing


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pushgrid-partner", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", help=f"a partner Ice config (default: ./{DEFAULT_CONFIG} if it exists)")
    where.add_argument("--router", help="the router proxy, e.g. 'PushGridRouter/router:ssl -h HOST -p PORT'")
    p.add_argument("--ca", help="CA certificate file to check the router's SSL certificate with")
    p.add_argument("--app-key", default=os.environ.get(APP_KEY_ENV), help=f"the app key (default: ${APP_KEY_ENV})")
    p.add_argument("--secret", default=None, help=f"the master secret (default: ${SECRET_ENV})")
    p.add_argument("--json", action="store_true", help="print results (and errors) as JSON")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    push = sub.add_parser("push", help="push now, or at --at")
    add_request_arguments(push)
    push.add_argument("--at", type=_send_at, default=None, metavar="ISO_TIME", help="schedule for this time")
    push.set_defaults(fn=cmd_push)
    validate = sub.add_parser("validate", help="check a push without sending it")
    add_request_arguments(validate)
    validate.set_defaults(fn=cmd_validate)

    cancel = sub.add_parser("cancel", help="cancel a scheduled push")
    cancel.add_argument("msg_id", type=int)
    cancel.set_defaults(fn=cmd_cancel)
    report = sub.add_parser("report", help="delivery counts of messages; --curve: when one was received")
    report.add_argument("msg_ids", type=int, nargs="*", metavar="MSG_ID")
    report.add_argument(
        "--curve", type=int, default=None, metavar="MSG_ID", help="receipts of this message over time, as a chart"
    )
    report.set_defaults(fn=cmd_report)

    tags = sub.add_parser("tags", help="tags of a device: add|remove|list RID [TAG...]; or all tags: all")
    tags.add_argument("action", choices=("add", "remove", "list", "all"))
    tags.add_argument("rid", nargs="?", metavar="RID")
    tags.add_argument("tags", nargs="*", metavar="TAG")
    tags.set_defaults(fn=cmd_tags)
    tag = sub.add_parser("tag", help="one tag: delete TAG | has TAG RID")
    tag_sub = tag.add_subparsers(dest="action", required=True)
    tag_sub.add_parser("delete").add_argument("tag")
    has = tag_sub.add_parser("has")
    has.add_argument("tag")
    has.add_argument("rid", metavar="RID")
    tag.set_defaults(fn=cmd_tag)

    alias = sub.add_parser("alias", help="set RID ALIAS | get RID | devices ALIAS | delete ALIAS")
    alias_sub = alias.add_subparsers(dest="action", required=True)
    s = alias_sub.add_parser("set")
    s.add_argument("rid", metavar="RID")
    s.add_argument("alias")
    alias_sub.add_parser("get").add_argument("rid", metavar="RID")
    alias_sub.add_parser("devices").add_argument("alias")
    alias_sub.add_parser("delete").add_argument("alias")
    alias.set_defaults(fn=cmd_alias)

    devices = sub.add_parser("devices", help="count: how many devices the app has")
    devices.add_argument("action", choices=("count",))
    devices.set_defaults(fn=cmd_devices)
    return p


def connect(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> PartnerClient:
    """Logs in as the arguments say (config or router, app key, secret)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    if not args.app_key:
        raise PartnerConfigError(f"no app key: pass --app-key or set ${APP_KEY_ENV}")
    secret = args.secret if args.secret is not None else env.get(SECRET_ENV)
    if not secret:
        raise PartnerConfigError(f"no master secret: set ${SECRET_ENV} (or pass --secret)")
    config = args.config
    if config is None and args.router is None:
        if not os.path.isfile(DEFAULT_CONFIG):
            raise PartnerConfigError(
                f"no router: pass --config FILE or --router PROXY (./{DEFAULT_CONFIG} does not exist)"
            )
        config = DEFAULT_CONFIG
    return PartnerClient(args.app_key, secret, config=config, router=args.router, ca=args.ca)


def main(argv: list[str] | None = None, connect_fn: Callable[[argparse.Namespace], PartnerClient] = connect) -> int:
    args = parser().parse_args(argv)
    out = Output(args.json)
    try:
        client = connect_fn(args)
        with client:
            code = args.fn(client, args, out)  # a command may say it found trouble (report: an error)
    except errors.EXPECTED as exc:
        line = json.dumps(errors.to_dict(exc), ensure_ascii=False) if args.json else errors.describe(exc)
        print(f"{line}" if args.json else f"pushgrid-partner: {line}", file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
