"""pushgrid-partner without a router: arguments -> PushRequest, output, and one line per error.
A fake client stands in for PartnerClient (logic only; the integration test runs the real one)."""

from __future__ import annotations

import datetime as dt
import json

import Ice
import pytest

from services.common.contract import Glacier2, PushGrid
from tests.unit.fakes import APP as KEY
from tools.partner import cli, errors
from tools.partner.sdk import PartnerConfigError


def request_of(*argv: str) -> PushGrid.PushRequest:
    return cli.build_request(cli.parser().parse_args(["push", *argv]))


# ---------------------------------------------------------------- arguments -> PushRequest


def test_audience_options_build_the_audience() -> None:
    req = request_of(
        "--tag",
        "a",
        "--tag",
        "b",
        "--tag-and",
        "c",
        "--tag-not",
        "d",
        "--alias",
        "u1",
        "--rid",
        "r1",
        "--rid",
        "r2",
        "--alert",
        "hi",
    )
    a = req.audience
    assert (a.all, a.tags, a.tagsAnd, a.tagsNot, a.aliases, a.registrationIds) == (
        False,
        ["a", "b"],
        ["c"],
        ["d"],
        ["u1"],
        ["r1", "r2"],
    )
    assert request_of("--all", "--alert", "hi").audience.all


def test_content_and_options() -> None:
    req = request_of(
        "--all",
        "--alert",
        "Sale",
        "--title",
        "Shop",
        "--message",
        "{}",
        "--message-title",
        "m",
        "--content-type",
        "json",
        "--extra",
        "k=v",
        "--extra",
        "url=a=b",
        "--platform",
        "android,ios",
        "--platform",
        "web",
        "--ttl",
        "0",
        "--sendno",
        "42",
        "--override",
        "77",
        "--big-push-minutes",
        "5",
    )
    assert req.platforms == [PushGrid.Platform.Android, PushGrid.Platform.Ios, PushGrid.Platform.Web]
    n, m, o = req.notification, req.message, req.options
    assert (n.alert, n.title, n.extras) == ("Sale", "Shop", {"k": "v", "url": "a=b"})
    assert (m.content, m.title, m.contentType, m.extras) == ("{}", "m", "json", {"k": "v", "url": "a=b"})
    assert (o.sendno, o.timeToLive, o.overrideMsgId, o.bigPushDuration) == (42, 0, 77, 5)


def test_extras_go_only_to_the_parts_the_push_has() -> None:
    req = request_of("--all", "--message", "sync", "--extra", "k=v")
    assert req.message.extras == {"k": "v"} and req.notification.extras == {} and req.notification.alert == ""


def test_defaults_are_jpushs() -> None:
    req = request_of("--tag", "t", "--alert", "hi")
    assert req.platforms == [] and req.options.timeToLive == -1 and req.options.sendno == 0


@pytest.mark.parametrize(
    "argv", [["--extra", "novalue"], ["--platform", "symbian"], ["--at", "tomorrow"], ["--ttl", "soon"]]
)
def test_malformed_arguments_are_usage_errors(argv, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.parser().parse_args(["push", "--all", "--alert", "x", *argv])
    assert e.value.code == 2


def test_at_is_an_iso_time() -> None:
    args = cli.parser().parse_args(["push", "--all", "--alert", "x", "--at", "2030-01-01T09:00:00+08:00"])
    assert args.at == int(dt.datetime(2030, 1, 1, 1, 0, tzinfo=dt.UTC).timestamp() * 1000)
    local = cli.parser().parse_args(["push", "--all", "--alert", "x", "--at", "2030-01-01T09:00"]).at
    assert local == int(dt.datetime(2030, 1, 1, 9, 0).timestamp() * 1000)  # naive: local time


# ---------------------------------------------------------------- running commands


def point(offset: int, width: int, received: int) -> PushGrid.CurvePoint:
    return PushGrid.CurvePoint(offsetSeconds=offset, widthSeconds=width, received=received)


CURVE = [point(0, 1, 40), point(1, 1, 20), point(299, 1, 1), point(300, 60, 10), point(3600, 3600, 3)]


class FakeClient:
    """PartnerClient's surface: records calls, answers canned results or raises `fail`."""

    def __init__(self, fail: BaseException | None = None, errors: dict[int, str] | None = None) -> None:
        self.fail = fail
        self.errors = errors or {}
        self.calls: list[tuple] = []
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    def __getattr__(self, op):
        answers = {
            "push": PushGrid.PushResult(msgId=7215098231939072, sendno=3),
            "schedule": PushGrid.PushResult(msgId=7215098231939073, sendno=0),
            "report": [
                PushGrid.MessageStats(
                    msgId=1, targets=3, sentOnline=2, storedOffline=1, received=2, state=PushGrid.MessageState.Done
                )
            ],
            "get_tags": ["a", "b"],
            "list_tags": ["a", "b", "c"],
            "get_alias": "",
            "alias_devices": ["r1"],
            "is_member": True,
            "device_count": 12,
            "report_errors": self.errors,
            "report_curve": CURVE,
        }

        def call(*args):
            self.calls.append((op, args))
            if self.fail is not None:
                raise self.fail
            return answers.get(op)

        return call


def run(capsys, *argv: str, client: FakeClient | None = None) -> tuple[int, str, str, FakeClient]:
    client = client or FakeClient()
    code = cli.main(["--app-key", KEY, *argv], connect_fn=lambda args: client)
    out, err = capsys.readouterr()
    return code, out, err, client


def test_push_prints_the_msg_id(capsys) -> None:
    code, out, _, client = run(capsys, "push", "--rid", "r1", "--alert", "hi", "--sendno", "3")
    assert code == 0 and out == "pushed msg_id 7215098231939072 (sendno 3)\n"
    assert client.calls[0][0] == "push" and client.closed
    code, out, _, _ = run(capsys, "--json", "push", "--rid", "r1", "--alert", "hi")
    assert json.loads(out) == {"msg_id": 7215098231939072, "sendno": 3}


def test_push_at_schedules(capsys) -> None:
    code, out, _, client = run(capsys, "--json", "push", "--all", "--alert", "x", "--at", "2030-01-01T00:00:00Z")
    assert client.calls[0][0] == "schedule" and client.calls[0][1][1] == 1893456000000
    assert json.loads(out)["msg_id"] == 7215098231939073


def test_report_prints_a_table_or_json(capsys) -> None:
    code, out, _, client = run(capsys, "report", "1", "2")
    assert code == 0
    assert client.calls == [("report_errors", ([1, 2],)), ("report", ([1, 2],))]
    header, row = out.splitlines()
    assert header.split() == ["msg_id", "state", "targets", "online", "offline", "received"]
    assert row.split() == ["1", "Done", "3", "2", "1", "2"]
    _, out, _, _ = run(capsys, "--json", "report", "1")
    assert json.loads(out) == [
        {"msg_id": 1, "state": "Done", "targets": 3, "sent_online": 2, "stored_offline": 1, "received": 2, "error": ""}
    ]


def test_a_report_with_an_error_says_so_and_exits_1(capsys) -> None:
    lost = "Redis lost data while this message was sent"
    code, out, _, _ = run(capsys, "report", "1", client=FakeClient(errors={1: lost}))
    assert code == 1
    assert out.splitlines()[-1] == f"ERROR 1: {lost}"
    code, out, _, _ = run(capsys, "--json", "report", "1", client=FakeClient(errors={1: lost}))
    assert code == 1 and json.loads(out)[0]["error"] == lost


def test_report_curve_draws_each_bucket_with_its_running_total_and_a_scaled_bar(capsys) -> None:
    code, out, err, client = run(capsys, "report", "--curve", "7")
    assert (code, err) == (0, "") and client.calls == [("report_curve", (7,))]
    header, *rows, total = out.splitlines()
    assert header.split() == ["offset", "received", "cumulative"]
    assert [r.split()[:3] for r in rows] == [
        ["+0s", "40", "40"],
        ["+1s", "20", "60"],
        ["+299s", "1", "61"],
        ["+5m", "10", "71"],
        ["+1h", "3", "74"],
    ]
    bars = [r.split()[3] for r in rows]
    assert bars == ["#" * 40, "#" * 20, "#", "#" * 10, "#" * 3]  # the widest bucket has the longest
    assert total.split() == ["total", "74"]


def test_report_curve_as_json_and_empty(capsys) -> None:
    _, out, _, _ = run(capsys, "--json", "report", "--curve", "7")
    data = json.loads(out)
    assert data["msg_id"] == 7 and data["total"] == 74
    assert data["points"][3] == {"offset_s": 300, "width_s": 60, "received": 10}
    empty = FakeClient()
    empty.__dict__["report_curve"] = lambda msg_id: []  # no receipt yet
    code, out, _, _ = run(capsys, "report", "--curve", "7", client=empty)
    assert code == 0 and out.splitlines()[-1].split() == ["total", "0"]


@pytest.mark.parametrize(
    "seconds, label",
    [(0, "+0s"), (59, "+59s"), (299, "+299s"), (300, "+5m"), (3540, "+59m"), (3600, "+1h"), (90000, "+25h")],
)
def test_offsets_read_in_the_unit_of_their_bucket(seconds, label) -> None:
    assert cli.offset_label(seconds) == label


def test_report_needs_msg_ids_or_one_curve(capsys) -> None:
    code, _, err, client = run(capsys, "report")
    assert code == 1 and "needs a msg id" in err and client.calls == []
    code, _, err, client = run(capsys, "report", "1", "--curve", "2")
    assert code == 1 and "--curve takes one msg id" in err and client.calls == []


@pytest.mark.parametrize(
    "argv, call, printed",
    [
        (["tags", "add", "r1", "a", "b"], ("add_tags", ("r1", ["a", "b"])), "a, b added to r1"),
        (["tags", "remove", "r1", "a"], ("remove_tags", ("r1", ["a"])), "a removed from r1"),
        (["tags", "list", "r1"], ("get_tags", ("r1",)), "a\nb"),
        (["tags", "all"], ("list_tags", ()), "a\nb\nc"),
        (["tag", "delete", "a"], ("delete_tag", ("a",)), "deleted tag a"),
        (["tag", "has", "a", "r1"], ("is_member", ("a", "r1")), "yes"),
        (["alias", "set", "r1", "u1"], ("set_alias", ("r1", "u1")), "r1 is now u1"),
        (["alias", "get", "r1"], ("get_alias", ("r1",)), "(no alias)"),
        (["alias", "devices", "u1"], ("alias_devices", ("u1",)), "r1"),
        (["alias", "delete", "u1"], ("delete_alias", ("u1",)), "deleted alias u1"),
        (["devices", "count"], ("device_count", ()), "12"),
        (["cancel", "99"], ("cancel", (99,)), "cancelled msg_id 99"),
        (["validate", "--tag", "t", "--alert", "x"], None, "valid"),
    ],
)
def test_device_and_message_commands(capsys, argv, call, printed) -> None:
    code, out, err, client = run(capsys, *argv)
    assert (code, err) == (0, "")
    if call is not None:
        assert client.calls == [call]
    assert out == printed + "\n"


def test_tags_add_without_tags_is_an_error(capsys) -> None:
    code, _, err, client = run(capsys, "tags", "add", "r1")
    assert code == 1 and "needs at least one tag" in err and client.calls == []


# ---------------------------------------------------------------- errors: one line, exit 1

NOW = dt.datetime(2030, 1, 1, 12, 0, 0)


@pytest.mark.parametrize(
    "exc, line",
    [
        (
            PushGrid.RateLimited(reason="600 pushes per minute", retryAfterMs=2500),
            "rate limited: 600 pushes per minute; retry in 2.5 s (at 12:00:02)",
        ),
        (PushGrid.InvalidArgument(reason="audience is empty", field="audience"), "invalid audience: audience is empty"),
        (
            PushGrid.LimitExceeded(reason="too many", limit="audience.tags", max=20),
            "limit exceeded (audience.tags, at most 20): too many",
        ),
        (
            PushGrid.UnknownDevice(reason="not a device of this app", registrationId="r9"),
            "unknown device r9: not a device of this app",
        ),
        (PushGrid.UnknownMessage(reason="no such message", msgId=5), "unknown message 5: no such message"),
        (PushGrid.InvalidState(reason="already sent", msgId=5), "message 5: already sent"),
        (
            PushGrid.Unavailable(reason="timed out", backend="kafka"),
            "kafka unavailable: timed out (nothing was done; try again)",
        ),
        (
            Glacier2.PermissionDeniedException(reason="too many failed logins, retry in 600 s"),
            "login refused: too many failed logins, retry in 600 s",
        ),
        (Glacier2.CannotCreateSessionException(reason="100 sessions"), "cannot create a session: 100 sessions"),
        (PartnerConfigError("no router: pass --config FILE"), "no router: pass --config FILE"),
    ],
)
def test_named_errors_read_as_one_line(exc, line) -> None:
    assert errors.describe(exc, now=NOW) == line


def test_transport_errors_say_what_it_means_for_the_request() -> None:
    assert errors.describe(Ice.ConnectionRefusedException()).startswith("cannot reach the router: ConnectionRefused")
    assert "may or may not" in errors.describe(Ice.ConnectionLostException())
    assert "may or may not" in errors.describe(Ice.InvocationTimeoutException())
    assert "\n" not in errors.describe(Ice.ObjectNotExistException())


def test_an_error_is_one_stderr_line_and_exit_1(capsys) -> None:
    failing = FakeClient(PushGrid.RateLimited(reason="quota", retryAfterMs=1000))
    code, out, err, _ = run(capsys, "push", "--tag", "t", "--alert", "x", client=failing)
    assert code == 1 and out == ""
    assert err.startswith("pushgrid-partner: rate limited: quota; retry in 1.0 s") and err.count("\n") == 1


def test_json_errors_carry_the_slice_fields(capsys) -> None:
    failing = FakeClient(PushGrid.RateLimited(reason="quota", retryAfterMs=1000))
    code, _, err, _ = run(capsys, "--json", "push", "--tag", "t", "--alert", "x", client=failing)
    data = json.loads(err)
    assert code == 1 and data["error"] == "RateLimited" and data["retryAfterMs"] == 1000
    assert data["message"].startswith("rate limited")


def test_a_refused_login_is_one_line(capsys) -> None:
    def refuse(args):
        raise Glacier2.PermissionDeniedException(reason="wrong app key or secret")

    code = cli.main(["--app-key", KEY, "devices", "count"], connect_fn=refuse)
    assert code == 1 and capsys.readouterr().err == "pushgrid-partner: login refused: wrong app key or secret\n"


# ---------------------------------------------------------------- connecting


def test_the_secret_comes_from_the_environment(tmp_path, monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(cli, "PartnerClient", lambda key, secret, **kw: seen.update(key=key, secret=secret, **kw))
    cfg = tmp_path / "p.cfg"
    cfg.write_text("")
    args = cli.parser().parse_args(["--config", str(cfg), "--app-key", KEY, "devices", "count"])
    cli.connect(args, environ={cli.SECRET_ENV: "s3cret"})
    assert seen == {"key": KEY, "secret": "s3cret", "config": str(cfg), "router": None, "ca": None}
    args = cli.parser().parse_args(
        ["--router", "R/router:tcp -p 1", "--app-key", KEY, "--secret", "x", "devices", "count"]
    )
    cli.connect(args, environ={cli.SECRET_ENV: "ignored"})
    assert seen["secret"] == "x" and seen["router"] == "R/router:tcp -p 1"


def test_the_default_config_is_run_partner_cfg(tmp_path, monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(cli, "PartnerClient", lambda key, secret, **kw: seen.update(kw))
    monkeypatch.chdir(tmp_path)
    args = cli.parser().parse_args(["--app-key", KEY, "devices", "count"])
    with pytest.raises(PartnerConfigError, match="run/partner.cfg does not exist"):
        cli.connect(args, environ={cli.SECRET_ENV: "s"})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "partner.cfg").write_text("")
    cli.connect(args, environ={cli.SECRET_ENV: "s"})
    assert seen["config"] == "run/partner.cfg"


def test_missing_credentials_are_named(capsys, monkeypatch) -> None:
    monkeypatch.delenv(cli.SECRET_ENV, raising=False)
    args = cli.parser().parse_args(["--router", "R/router:tcp -p 1", "--app-key", KEY, "devices", "count"])
    with pytest.raises(PartnerConfigError, match="PUSHGRID_MASTER_SECRET"):
        cli.connect(args, environ={})
    args = cli.parser().parse_args(["--router", "R/router:tcp -p 1", "devices", "count"])
    args.app_key = None
    with pytest.raises(PartnerConfigError, match="app key"):
        cli.connect(args, environ={cli.SECRET_ENV: "s"})
