"""DBAgent over the wire: the server main as a process, and the servant's errors as Ice delivers them.

Runs against the session's MariaDB (mysql_settings); no IceGrid is needed, the server gets an
endpoint of its own on loopback.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import Ice
import pytest

from services.common.contract import PushGrid

pytestmark = pytest.mark.integration

State = PushGrid.MessageState


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_config(path, settings, port: int) -> str:
    """A config file as the IceGrid node writes one (Ice reads only Ice.* from the command line)."""
    path.write_text("\n".join([
        f"DBAgent.Endpoints=tcp -h 127.0.0.1 -p {port}",
        f"PushGrid.MySQL.Host={settings.host}", f"PushGrid.MySQL.Port={settings.port}",
        f"PushGrid.MySQL.User={settings.user}", f"PushGrid.MySQL.Password={settings.password}",
        f"PushGrid.MySQL.Database={settings.database}", "Ice.ThreadPool.Server.Size=4",
    ]) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def communicator():
    with Ice.initialize(["--Ice.Default.Timeout=10000"]) as comm:
        yield comm


def _start(tmp_path, settings, port: int) -> subprocess.Popen:
    config = _write_config(tmp_path / f"dbagent-{port}.cfg", settings, port)
    return subprocess.Popen([sys.executable, "-m", "services.dbagent", f"--Ice.Config={config}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _proxy(communicator, port: int) -> PushGrid.DBAgentPrx:
    return PushGrid.DBAgentPrx.uncheckedCast(communicator.stringToProxy(f"DBAgent:tcp -h 127.0.0.1 -p {port}"))


def _wait_until_up(prx: PushGrid.DBAgentPrx, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            prx.ice_ping()
            return
        except Ice.ConnectFailedException:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"DBAgent did not start: {proc.communicate()[0]}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def dbagent(mysql_settings, communicator, tmp_path_factory):
    port = _free_port()
    proc = _start(tmp_path_factory.mktemp("dbagent"), mysql_settings, port)
    prx = _proxy(communicator, port)
    try:
        _wait_until_up(prx, proc)
        yield prx
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_server_stops_cleanly_on_sigterm(mysql_settings, communicator, tmp_path):
    port = _free_port()
    proc = _start(tmp_path, mysql_settings, port)
    try:
        _wait_until_up(_proxy(communicator, port), proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_app_lifecycle_over_ice(dbagent):
    name = "ice-" + uuid.uuid4().hex
    creds = dbagent.createApp(name, 0)
    info = dbagent.verifyApp(creds.appKey, creds.masterSecret)
    assert (info.name, info.pushQuotaPerMinute, info.enabled) == (name, 600, True)
    dbagent.setQuota(creds.appKey, 60)
    assert dbagent.getApp(creds.appKey).pushQuotaPerMinute == 60
    with pytest.raises(PushGrid.AlreadyExists):
        dbagent.createApp(name, 0)


def test_declared_errors_arrive_with_their_fields(dbagent):
    with pytest.raises(PushGrid.InvalidArgument) as err:
        dbagent.createApp("", 1)
    assert err.value.field == "name"
    with pytest.raises(PushGrid.UnknownApp):
        dbagent.getApp("0" * 24)
    with pytest.raises(PushGrid.AuthenticationFailed):
        dbagent.verifyApp("0" * 24, "secret")
    with pytest.raises(PushGrid.UnknownMessage) as missing:
        dbagent.getMessage("0" * 24, 42)
    assert missing.value.msgId == 42


def test_devices_and_messages_over_ice(dbagent):
    creds = dbagent.createApp("ice-" + uuid.uuid4().hex, 10)
    dev = dbagent.registerDevice(creds.appKey, PushGrid.Platform.Web)
    assert dbagent.verifyDevice(creds.appKey, dev.registrationId, dev.deviceToken).platform == PushGrid.Platform.Web
    dbagent.touchDevices(creds.appKey, [], 1)  # an empty sequence travels as such
    assert dbagent.deviceCount(creds.appKey) == 1

    request = PushGrid.PushRequest(audience=PushGrid.Audience(all=True))  # Ice defaults: None sequences
    request.notification.alert = "hello"
    now = int(time.time() * 1000)
    msg_id = uuid.uuid4().int >> 65
    dbagent.recordMessage(PushGrid.MessageRecord(msgId=msg_id, appKey=creds.appKey, request=request,
                                                 state=State.Accepted, createdAt=now, sendAt=now,
                                                 expiresAt=now + 1000))
    stored = dbagent.getMessage(creds.appKey, msg_id)
    assert stored.request.notification.alert == "hello" and stored.request.audience.all
    assert list(stored.request.platforms) == [] and dict(stored.request.notification.extras) == {}
    assert dbagent.transitionMessage(creds.appKey, msg_id, State.Accepted, State.Dispatching)
    dbagent.recordStats(msg_id, "b1", PushGrid.StatsDelta(3, 2, 1))
    assert dbagent.recordReceipts(msg_id, [dev.registrationId]) == 1
    (stats,) = dbagent.getStats(creds.appKey, [msg_id])
    assert (stats.targets, stats.sentOnline, stats.storedOffline, stats.received, stats.state) == \
        (3, 2, 1, 1, State.Dispatching)


def test_dead_mysql_is_unavailable_over_ice(mysql_settings, communicator, tmp_path):
    port = _free_port()
    proc = _start(tmp_path, replace(mysql_settings, port=_free_port()), port)  # nothing listens on that MySQL port
    prx = _proxy(communicator, port)
    try:
        _wait_until_up(prx, proc)  # the server starts without MySQL: it connects on demand
        started = time.monotonic()
        with pytest.raises(PushGrid.Unavailable) as err:
            prx.listApps()
        assert err.value.backend == "mysql" and time.monotonic() - started < 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
