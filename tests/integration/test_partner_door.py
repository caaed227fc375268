"""Partners through the real Glacier2 router: who gets in, what a session may reach, and the
limits. Each abuse gets its named error and leaves the other app's data as it was.

The clients here are raw Ice clients configured by the run directory's partner.cfg (the router
and nothing else), so tests can forge identities and proxies as an attacker would.
"""

from __future__ import annotations

import struct
import time
import uuid

import Ice
import pytest

from services.common import limits, paths
from services.common.contract import Glacier2, PushGrid
from services.common.ice import client_communicator
from tests.integration.waiting import until
from tools.grid.rundir import ROUTER_INSTANCE_NAME, RunDir
from tools.partner import builders as b

pytestmark = pytest.mark.integration

A = PushGrid.Audience
WRONG = "app key or master secret is wrong"


def request(audience: PushGrid.Audience, alert: str = "hi", ttl: int = 600) -> PushGrid.PushRequest:
    return b.push_request(audience, notification=alert, options=b.options(sendno=1, ttl=ttl))


class Partner:
    """One partner process: a communicator whose only way in is the router, and its session."""

    def __init__(self, grid: RunDir, app_key: str, secret: str, source: str | None = None) -> None:
        extra = []
        if source:  # plain TCP from a chosen loopback address: another partner host for the router
            extra.append(
                f"--Ice.Default.Router={ROUTER_INSTANCE_NAME}/router:tcp -h 127.0.0.1 -p "
                f"{grid.ports['partner-tcp']} --sourceAddress {source}"
            )
        self.comm = client_communicator(grid.partner_config, *extra)
        try:
            self.router = Glacier2.RouterPrx.checkedCast(self.comm.getDefaultRouter())
            self.session = PushGrid.PartnerSessionPrx.uncheckedCast(self.router.createSession(app_key, secret))
            self.push = self.session.pushApi()
            self.devices = self.session.devicesApi()
        except BaseException:
            self.comm.destroy()
            raise

    def routed(self, proxy: str | Ice.ObjectPrx) -> Ice.ObjectPrx:
        """Any proxy, sent through this partner's router connection."""
        text = proxy if isinstance(proxy, str) else proxy.ice_toString()
        return self.comm.stringToProxy(text).ice_router(self.comm.getDefaultRouter())

    def close(self) -> None:
        try:
            self.router.destroySession()
        except Ice.Exception:
            pass
        self.comm.destroy()


def login_error(grid: RunDir, app_key: str, secret: str, source: str | None = None) -> str:
    """The reason the router gives for refusing a login (fails the test if it lets it in)."""
    with pytest.raises(Glacier2.PermissionDeniedException) as denied:
        Partner(grid, app_key, secret, source).close()
    return denied.value.reason


@pytest.fixture
def creds(dbagent) -> PushGrid.AppCredentials:
    return dbagent.createApp("partner-" + uuid.uuid4().hex[:8], 0)


@pytest.fixture
def other(dbagent) -> PushGrid.AppCredentials:
    return dbagent.createApp("other-" + uuid.uuid4().hex[:8], 0)


@pytest.fixture
def partner(grid, creds):
    p = Partner(grid, creds.appKey, creds.masterSecret)
    yield p
    p.close()


def device(dbagent, tagalias, app_key: str, tags: list[str] = (), alias: str = "") -> str:
    rid = dbagent.registerDevice(app_key, PushGrid.Platform.Android).registrationId
    tagalias.addDevice(app_key, rid, PushGrid.Platform.Android)
    if tags:
        tagalias.addTags(app_key, rid, list(tags))
    if alias:
        tagalias.setAlias(app_key, rid, alias)
    return rid


# ---------------------------------------------------------------- logging in


def test_a_partner_logs_in_and_its_session_is_its_apps(partner, creds) -> None:
    assert partner.session.appKey() == creds.appKey
    assert partner.devices.deviceCount() == 0


def test_wrong_secret_unknown_app_and_disabled_app_are_refused_alike(grid, dbagent, creds, other) -> None:
    dbagent.setAppEnabled(other.appKey, False)
    assert login_error(grid, creds.appKey, "0" * 32) == WRONG
    assert login_error(grid, "f" * 24, creds.masterSecret) == WRONG
    assert login_error(grid, other.appKey, other.masterSecret) == WRONG
    assert login_error(grid, creds.appKey, "") == WRONG


def test_failed_logins_refuse_the_guessers_address_not_the_real_partner(grid, dbagent, creds, other) -> None:
    guesser = "127.0.9.1"
    for _ in range(limits.LOGIN_FAILURES_PER_ADDRESS_AND_APP):
        assert login_error(grid, creds.appKey, "bad", guesser) == WRONG
    reason = login_error(grid, creds.appKey, creds.masterSecret, guesser)  # not checked from there
    assert "too many failed logins for this app key from this address" in reason and "retry in" in reason
    Partner(grid, creds.appKey, creds.masterSecret, "127.0.9.4").close()  # the partner gets in
    Partner(grid, other.appKey, other.masterSecret, guesser).close()  # other apps from there too


def test_failed_logins_are_limited_per_address(grid, creds) -> None:
    source = "127.0.9.2"
    for i in range(limits.LOGIN_FAILURES_PER_ADDRESS):
        assert login_error(grid, f"guess{i:020d}", "bad", source) == WRONG
    reason = login_error(grid, creds.appKey, creds.masterSecret, source)
    assert "too many failed logins for this address" in reason
    Partner(grid, creds.appKey, creds.masterSecret, "127.0.9.3").close()  # another address gets in


def test_a_rotated_secret_works_for_new_sessions_at_once(grid, dbagent, creds, partner) -> None:
    new = dbagent.rotateSecret(creds.appKey).masterSecret
    assert login_error(grid, creds.appKey, creds.masterSecret) == WRONG
    fresh = Partner(grid, creds.appKey, new)
    assert fresh.session.appKey() == creds.appKey
    fresh.close()
    assert partner.devices.deviceCount() == 0  # a session opened before keeps working


# ---------------------------------------------------------------- a session reaches its own app only


def test_a_session_cannot_touch_another_apps_devices(grid, dbagent, tagalias, partner, other) -> None:
    theirs = device(dbagent, tagalias, other.appKey, tags=["vip"], alias="bob")
    for call in (
        lambda: partner.devices.addTags(theirs, ["mine"]),
        lambda: partner.devices.removeTags(theirs, ["vip"]),
        lambda: partner.devices.getTags(theirs),
        lambda: partner.devices.setAlias(theirs, "eve"),
        lambda: partner.devices.getAlias(theirs),
    ):
        with pytest.raises(PushGrid.UnknownDevice):
            call()
    partner.devices.deleteTag("vip")  # acts on its own app's tag "vip" (none)
    partner.devices.deleteAlias("bob")
    assert partner.devices.aliasDevices("bob") == [] and not partner.devices.isMember("vip", theirs)
    assert tagalias.getTags(other.appKey, theirs) == ["vip"]
    assert tagalias.getAlias(other.appKey, theirs) == "bob"
    assert tagalias.listTags(partner.session.appKey()) == []


def test_a_session_cannot_reach_another_apps_messages(grid, dbagent, tagalias, push, partner, other) -> None:
    theirs = device(dbagent, tagalias, other.appKey)
    their_msg = push.push(other.appKey, request(A(registrationIds=[theirs]))).msgId
    scheduled = push.schedule(other.appKey, request(A(all=True)), _in_an_hour()).msgId
    assert partner.push.report([their_msg, scheduled]) == []
    with pytest.raises(PushGrid.UnknownMessage):
        partner.push.cancel(scheduled)
    mine = partner.push.push(request(A(registrationIds=[theirs]))).msgId  # names their device
    for app_key, msg_id in ((partner.session.appKey(), mine), (other.appKey, their_msg)):
        until(
            lambda app_key=app_key, msg_id=msg_id: _stats(push, app_key, msg_id).state == PushGrid.MessageState.Done,
            "the dispatcher to finish the message",
            30,
        )
    assert _stats(push, partner.session.appKey(), mine).targets == 0  # ... which is not its own
    assert _stats(push, other.appKey, scheduled).state == PushGrid.MessageState.Scheduled
    assert _stats(push, other.appKey, their_msg).targets == 1


def _in_an_hour() -> int:
    return int(time.time() * 1000) + 3_600_000


def _stats(push, app_key: str, msg_id: int) -> PushGrid.MessageStats:
    (stats,) = push.report(app_key, [msg_id])
    return stats


def test_forged_identities_and_proxies_are_refused_by_the_router(grid, creds, other, communicator) -> None:
    theirs = Partner(grid, other.appKey, other.masterSecret)
    me = Partner(grid, creds.appKey, creds.masterSecret)
    try:
        category = me.session.ice_getIdentity().category
        forged = [
            theirs.session,
            theirs.push,
            theirs.devices,
            # the right shape and adapter, another session's category
            me.push.ice_identity(theirs.push.ice_getIdentity()),
            # its own category, an object that is not one of its three
            me.push.ice_identity(Ice.Identity(name="dbagent", category=category)),
            *internal_objects(communicator),
        ]
        for proxy in forged:
            with pytest.raises(Ice.ObjectNotExistException):
                me.routed(proxy).ice_ping()
        assert theirs.session.appKey() == other.appKey  # B's session is untouched
        assert me.session.appKey() == creds.appKey  # and A's own objects still answer
    finally:
        me.close()
        theirs.close()


def test_a_proxy_with_endpoints_closes_the_partners_connection(grid, creds, communicator) -> None:
    """Endpoints would aim the router at any host and port behind the firewall: refused outright."""
    for name in ("DBAgent", "Push"):
        info = communicator.stringToProxy(name).ice_getConnection().getInfo()
        me = Partner(grid, creds.appKey, creds.masterSecret)
        try:
            with pytest.raises(Ice.ConnectionLostException):
                me.routed(f"{name}:tcp -h {info.remoteAddress} -p {info.remotePort}").ice_ping()
        finally:
            me.comm.destroy()
    Partner(grid, creds.appKey, creds.masterSecret).close()  # the router itself carries on


def internal_objects(communicator) -> list[str]:
    """What a partner must never reach: the services' well-known objects, the registry, an STC
    process, the gateway's verifier and session manager, and DBAgent by its replica's adapter id."""
    locator = communicator.getDefaultLocator()
    instance = locator.ice_getIdentity().category
    return [
        "DBAgent",
        "Push",
        "TagAlias",
        "STC-node1-1",
        "PartnerVerifier",
        "PartnerSessionManager",
        f"{instance}/Query",
        f"{instance}/Locator",
        f"{instance}/Registry",
        "DBAgent @ DBAgent-1.DBAgent",
        "PushGridRouter/admin",
    ]


# ---------------------------------------------------------------- bad and oversized requests


def test_bad_requests_get_named_errors_and_change_nothing(grid, dbagent, tagalias, partner, push) -> None:
    app = partner.session.appKey()
    rid = device(dbagent, tagalias, app, tags=["keep"])
    with pytest.raises(PushGrid.InvalidArgument):
        partner.push.push(request(A(tags=["bad tag!" * 10])))
    with pytest.raises((PushGrid.InvalidArgument, PushGrid.LimitExceeded)):
        partner.push.push(request(A(all=True), alert="x" * (limits.PAYLOAD_MAX_BYTES + 1)))
    with pytest.raises(PushGrid.LimitExceeded):
        partner.push.push(request(A(registrationIds=[f"r{i}" for i in range(limits.AUDIENCE_MAX_REGIDS + 1)])))
    with pytest.raises(PushGrid.InvalidArgument):
        partner.push.push(request(A()))  # no audience at all
    with pytest.raises(PushGrid.InvalidArgument):
        partner.devices.addTags(rid, [""])
    with pytest.raises(PushGrid.InvalidArgument):
        partner.devices.getTags("../../etc/passwd")
    assert partner.devices.getTags(rid) == ["keep"]
    assert tagalias.getTags(app, rid) == ["keep"]


def test_strings_that_are_not_utf8_are_invalid_argument_and_change_nothing(grid, dbagent, tagalias, partner) -> None:
    """Sent raw, as a client in another language can: Ice for Python cannot decode them, and
    the partner hears InvalidArgument (not an UnknownException with a traceback)."""
    app = partner.session.appKey()
    rid = device(dbagent, tagalias, app, tags=["keep"])
    raw_rid = rid.encode()
    tags = b"\x01" + bytes([4]) + b"\xffbad"  # one tag, not UTF-8
    params = bytes([len(raw_rid)]) + raw_rid + tags
    ok, out = partner.devices.ice_invoke(
        "addTags", Ice.OperationMode.Idempotent, struct.pack("<iBB", 6 + len(params), 1, 1) + params
    )
    assert not ok and b"::PushGrid::InvalidArgument" in out and b"UTF-8" in out
    assert partner.devices.getTags(rid) == ["keep"]
    assert tagalias.getTags(app, rid) == ["keep"]


def test_a_login_whose_app_key_is_not_utf8_is_refused_and_the_router_stays_up(grid, creds) -> None:
    secret = creds.masterSecret.encode()
    params = bytes([24]) + b"\xff" * 24 + bytes([len(secret)]) + secret
    with client_communicator(grid.partner_config) as comm:
        router = comm.getDefaultRouter()
        ok, out = router.ice_invoke(
            "createSession", Ice.OperationMode.Normal, struct.pack("<iBB", 6 + len(params), 1, 1) + params
        )
    assert not ok and b"::Glacier2::PermissionDeniedException" in out
    again = Partner(grid, creds.appKey, creds.masterSecret)
    assert again.session.appKey() == creds.appKey
    again.close()


def test_a_request_larger_than_the_router_takes_is_refused_and_the_router_stays_up(grid, creds) -> None:
    big = Partner(grid, creds.appKey, creds.masterSecret)
    try:
        with pytest.raises(Ice.LocalException):  # the router closes the connection (MemoryLimitException)
            big.push.push(request(A(all=True), alert="x" * (limits.PARTNER_REQUEST_MAX_KIB + 64) * 1024))
    finally:
        big.comm.destroy()
    again = Partner(grid, creds.appKey, creds.masterSecret)
    assert again.session.appKey() == creds.appKey
    again.close()


# ---------------------------------------------------------------- rate limit


def fresh_quota_window() -> None:
    """Quotas count per calendar minute: start a flood well inside one, so it is one window."""
    left = 60 - time.time() % 60
    if left < 10:
        time.sleep(left + 0.5)


def test_a_push_flood_past_the_quota_gets_rate_limited_with_a_retry_time(grid, dbagent, tagalias, partner) -> None:
    app = partner.session.appKey()
    dbagent.setQuota(app, 20)
    rid = device(dbagent, tagalias, app)
    fresh_quota_window()
    accepted, limited = 0, []
    for _ in range(30):
        try:
            partner.push.push(request(A(registrationIds=[rid])))
            accepted += 1
        except PushGrid.RateLimited as err:
            limited.append(err)
    assert accepted == 20 and len(limited) == 10
    assert all(0 < e.retryAfterMs <= 60_000 and "20 times a minute" in e.reason for e in limited)
    partner.push.validate(request(A(registrationIds=[rid])))  # validate is not a push: never limited


def test_the_quota_is_shared_by_every_push_replica(communicator, dbagent, tagalias, app) -> None:
    dbagent.setQuota(app, 12)
    rid = device(dbagent, tagalias, app)
    replicas = [
        PushGrid.PushServicePrx.uncheckedCast(communicator.stringToProxy(f"Push@Push-{i}.Push")) for i in (1, 2)
    ]
    fresh_quota_window()
    outcomes = []
    for i in range(24):  # alternate between the two replicas
        try:
            replicas[i % 2].push(app, request(A(registrationIds=[rid])))
            outcomes.append("ok")
        except PushGrid.RateLimited:
            outcomes.append("limited")
    assert outcomes.count("ok") == 12, outcomes


# ---------------------------------------------------------------- dead partners free their sessions

PARTNER_SCRIPT = """
import sys, time, Ice
from services.common.contract import Glacier2, PushGrid
from services.common.ice import client_communicator
comm = client_communicator(sys.argv[1])
router = Glacier2.RouterPrx.checkedCast(comm.getDefaultRouter())
session = router.createSession(sys.argv[2], sys.argv[3])
# keep the session alive as the partner SDK does: heartbeats within the router's ACM timeout
router.ice_getCachedConnection().setACM(router.getACMTimeout(), Ice.Unset, Ice.ACMHeartbeat.HeartbeatAlways)
print(session.ice_toString(), flush=True)
time.sleep(600)
"""


def test_a_silent_partner_loses_its_session_and_a_heartbeating_one_keeps_it(grid, creds, communicator) -> None:
    import signal
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PARTNER_SCRIPT, grid.partner_config, creds.appKey, creds.masterSecret],
            cwd=paths.ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        # the session proxies point straight at the gateway: this internal client can ping them
        sessions = [communicator.stringToProxy(p.stdout.readline().strip()) for p in procs]
        for s in sessions:
            s.ice_ping()
        silent = procs[0]  # procs[1] stays alive and talking
        silent.send_signal(signal.SIGSTOP)  # hung or cut off: its connection stays open, quiet
        started = time.monotonic()

        def gone() -> bool:
            try:
                sessions[0].ice_ping()
                return False
            except Ice.ObjectNotExistException:
                return True

        until(gone, "the silent partner's session to end", 3 * limits.PARTNER_SESSION_TIMEOUT_SECONDS)
        assert time.monotonic() - started >= limits.PARTNER_SESSION_TIMEOUT_SECONDS / 2
        sessions[1].ice_ping()  # heartbeats kept the other one for as long
    finally:
        for p in procs:
            p.kill()
            p.wait()
