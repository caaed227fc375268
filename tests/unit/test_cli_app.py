"""`pushgrid app ...`: argument handling, output, and named errors as one line with exit 1.
DBAgent is a fake here; tests/integration/test_app_admin.py runs the same commands on a grid."""

from __future__ import annotations

import contextlib
import json

import Ice
import pytest

from services.common.contract import PushGrid
from tests.unit.fakes import APP as KEY
from tools import cli
from tools.grid import apps


class FakeDBAgent:
    """The DBAgent operations the app commands call, with DBAgent's errors for unknown keys."""

    def __init__(self):
        self.apps: dict[str, PushGrid.AppInfo] = {}
        self.calls: list[tuple] = []

    def _app(self, key: str) -> PushGrid.AppInfo:
        if key not in self.apps:
            raise PushGrid.UnknownApp(reason=f"no app has the key {key}", appKey=key)
        return self.apps[key]

    def createApp(self, name, quota):
        self.calls.append(("createApp", name, quota))
        if any(a.name == name for a in self.apps.values()):
            raise PushGrid.AlreadyExists(reason=f"an app named {name!r} exists already", id=name)
        self.apps[KEY] = PushGrid.AppInfo(KEY, name, quota or 600, True, 1_700_000_000_000, 1_700_000_000_000)
        return PushGrid.AppCredentials(KEY, "s3cret")

    def listApps(self):
        return list(self.apps.values())

    def getApp(self, key):
        return self._app(key)

    def deviceCount(self, key):
        self._app(key)
        return 3

    def rotateSecret(self, key):
        self._app(key)
        return PushGrid.AppCredentials(key, "n3w")

    def setQuota(self, key, quota):
        self.calls.append(("setQuota", key, quota))
        if quota <= 0:
            raise PushGrid.InvalidArgument(reason="push quota must be 1..1000000", field="pushQuotaPerMinute")
        self._app(key).pushQuotaPerMinute = quota

    def setAppEnabled(self, key, enabled):
        self._app(key).enabled = enabled


@pytest.fixture
def db(monkeypatch) -> FakeDBAgent:
    fake = FakeDBAgent()
    seen_run_dirs = []

    @contextlib.contextmanager
    def dbagent(run_dir):
        seen_run_dirs.append(run_dir)
        yield fake

    monkeypatch.setattr(apps, "dbagent", dbagent)
    fake.run_dirs = seen_run_dirs
    return fake


def pushgrid(*args: str) -> int:
    return cli.main(["--run-dir", "/tmp/some-run", *args])


def test_create_prints_key_and_secret_and_says_it_is_shown_once(db, capsys):
    assert pushgrid("app", "create", "shop", "--quota", "120") == 0
    out, err = capsys.readouterr()
    assert KEY in out and "s3cret" in out
    assert "shown this once" in err
    assert db.calls == [("createApp", "shop", 120)]
    assert db.run_dirs == ["/tmp/some-run"]


def test_create_without_quota_asks_for_the_default(db, capsys):
    assert pushgrid("app", "create", "shop", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"appKey": KEY, "masterSecret": "s3cret"}
    assert db.calls == [("createApp", "shop", 0)]


def test_list_and_show(db, capsys):
    assert pushgrid("app", "list") == 0
    assert "no apps yet" in capsys.readouterr().out
    pushgrid("app", "create", "shop")
    capsys.readouterr()
    assert pushgrid("app", "list") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["app", "key"] and table[1].split()[:4] == [KEY, "shop", "600", "yes"]
    assert pushgrid("app", "show", KEY) == 0
    out = capsys.readouterr().out
    assert f"app key:          {KEY}" in out and "600 per minute" in out and "devices:          3" in out
    assert "2023-11-14 22:13:20Z" in out
    assert pushgrid("app", "show", KEY, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["appKey"] == KEY and shown["devices"] == 3 and "masterSecret" not in shown


def test_rotate_set_quota_disable_enable(db, capsys):
    pushgrid("app", "create", "shop")
    capsys.readouterr()
    assert pushgrid("app", "rotate-secret", KEY) == 0
    out, err = capsys.readouterr()
    assert "n3w" in out and "shown this once" in err
    assert pushgrid("app", "set-quota", KEY, "50") == 0
    assert db.apps[KEY].pushQuotaPerMinute == 50
    assert pushgrid("app", "disable", KEY) == 0 and db.apps[KEY].enabled is False
    assert "disabled" in capsys.readouterr().out
    assert pushgrid("app", "enable", KEY) == 0 and db.apps[KEY].enabled is True


@pytest.mark.parametrize(
    "args",
    [
        ("show", "nope"),
        ("rotate-secret", "nope"),
        ("set-quota", "nope", "5"),
        ("disable", "nope"),
        ("enable", "nope"),
    ],
)
def test_an_unknown_key_is_one_line_and_exit_1(db, capsys, args):
    assert pushgrid("app", *args) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "pushgrid: UnknownApp: no app has the key nope\n"


def test_dbagents_argument_errors_are_one_line_and_exit_1(db, capsys):
    pushgrid("app", "create", "shop")
    capsys.readouterr()
    assert pushgrid("app", "set-quota", KEY, "0") == 1
    assert capsys.readouterr().err == "pushgrid: InvalidArgument: push quota must be 1..1000000\n"
    assert pushgrid("app", "create", "shop") == 1
    assert capsys.readouterr().err == "pushgrid: AlreadyExists: an app named 'shop' exists already\n"


def test_a_grid_that_does_not_answer_is_one_line_and_exit_1(monkeypatch, capsys):
    @contextlib.contextmanager
    def down(run_dir):
        class Dead:
            def listApps(self):
                raise Ice.ConnectionRefusedException()

        yield Dead()

    monkeypatch.setattr(apps, "dbagent", down)
    assert pushgrid("app", "list") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ConnectionRefusedException" in err and "pushgrid status" in err


def test_a_run_directory_without_a_grid_is_one_line_and_exit_1(tmp_path, capsys):
    assert cli.main(["--run-dir", str(tmp_path / "none"), "app", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pushgrid up" in err
    assert not (tmp_path / "none").exists()  # asking did not create a run directory


@pytest.mark.parametrize(
    "args",
    [
        ("app",),
        ("app", "create"),
        ("app", "show"),
        ("app", "set-quota", KEY),
        ("app", "set-quota", KEY, "many"),
        ("app", "create", "shop", "--quota", "x"),
        ("app", "frobnicate"),
    ],
)
def test_malformed_commands_are_usage_errors(db, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        pushgrid(*args)
    assert exit_.value.code == 2
    assert "usage: pushgrid app" in capsys.readouterr().err
    assert db.calls == []
