"""Every operation of DBAgent and TagAlias, fed bad input through the replica groups.

Each call must fail with its named Slice exception, carrying a reason, and change nothing that
was accepted before.
"""

from __future__ import annotations

import uuid

import pytest

from services.common import limits
from services.common.contract import PushGrid

pytestmark = pytest.mark.integration

P = PushGrid
A = P.Audience
OK_KEY = "0" * 24  # well-formed, but no app has it
LONG = "t" * 41  # one byte over the tag and alias limit
State = P.MessageState


@pytest.fixture(scope="module")
def ctx(dbagent, tagalias):
    """One app with one device that has tags and an alias: what bad calls must leave intact."""
    creds = dbagent.createApp("bad-input-" + uuid.uuid4().hex[:8], 600)
    dev = dbagent.registerDevice(creds.appKey, P.Platform.Android)
    tagalias.addDevice(creds.appKey, dev.registrationId, P.Platform.Android)
    tagalias.addTags(creds.appKey, dev.registrationId, ["keep", "vip"])
    tagalias.setAlias(creds.appKey, dev.registrationId, "alice")
    return {"app": creds.appKey, "secret": creds.masterSecret, "rid": dev.registrationId, "token": dev.deviceToken}


def _record(app: str, msg_id: int, audience=None) -> P.MessageRecord:
    req = P.PushRequest(audience=audience or A(all=True))
    req.notification.alert = "hi"
    return P.MessageRecord(
        msgId=msg_id, appKey=app, request=req, state=State.Accepted, createdAt=1, sendAt=1, expiresAt=2
    )


DBAGENT_CASES = [
    ("createApp empty name", lambda d, c: d.createApp("", 600), P.InvalidArgument),
    ("createApp long name", lambda d, c: d.createApp("n" * 101, 600), P.InvalidArgument),
    ("createApp negative quota", lambda d, c: d.createApp("q" + uuid.uuid4().hex, -1), P.InvalidArgument),
    (
        "createApp quota too big",
        lambda d, c: d.createApp("q" + uuid.uuid4().hex, limits.PUSH_QUOTA_MAX + 1),
        P.InvalidArgument,
    ),
    ("getApp unknown", lambda d, c: d.getApp(OK_KEY), P.UnknownApp),
    ("getApp garbage key", lambda d, c: d.getApp("'; DROP TABLE apps; --"), P.UnknownApp),
    ("verifyApp wrong secret", lambda d, c: d.verifyApp(c["app"], "wrong"), P.AuthenticationFailed),
    ("verifyApp unknown app", lambda d, c: d.verifyApp(OK_KEY, c["secret"]), P.AuthenticationFailed),
    ("verifyApp huge secret", lambda d, c: d.verifyApp(c["app"], "x" * 100000), P.AuthenticationFailed),
    ("rotateSecret unknown", lambda d, c: d.rotateSecret(OK_KEY), P.UnknownApp),
    ("setQuota zero", lambda d, c: d.setQuota(c["app"], 0), P.InvalidArgument),
    ("setQuota unknown", lambda d, c: d.setQuota(OK_KEY, 10), P.UnknownApp),
    ("setAppEnabled unknown", lambda d, c: d.setAppEnabled(OK_KEY, False), P.UnknownApp),
    ("registerDevice unknown app", lambda d, c: d.registerDevice(OK_KEY, P.Platform.Ios), P.UnknownApp),
    ("verifyDevice wrong token", lambda d, c: d.verifyDevice(c["app"], c["rid"], "nope"), P.AuthenticationFailed),
    ("verifyDevice other app", lambda d, c: d.verifyDevice(OK_KEY, c["rid"], c["token"]), P.AuthenticationFailed),
    ("getDevice unknown", lambda d, c: d.getDevice(c["app"], "ffff0000"), P.UnknownDevice),
    ("getDevice bad id", lambda d, c: d.getDevice(c["app"], "not/valid"), P.InvalidArgument),
    ("touchDevices bad id", lambda d, c: d.touchDevices(c["app"], ["ok1", "bad id"], 1), P.InvalidArgument),
    ("unregisterDevice unknown", lambda d, c: d.unregisterDevice(c["app"], "ffff0000"), P.UnknownDevice),
    ("deviceCount unknown", lambda d, c: d.deviceCount(OK_KEY), P.UnknownApp),
    ("recordMessage unknown app", lambda d, c: d.recordMessage(_record(OK_KEY, 77)), P.UnknownApp),
    ("recordMessage zero id", lambda d, c: d.recordMessage(_record(c["app"], 0)), P.InvalidArgument),
    (
        "recordMessage bad audience",
        lambda d, c: d.recordMessage(_record(c["app"], 78, A(tags=[LONG]))),
        P.InvalidArgument,
    ),
    ("getMessage unknown", lambda d, c: d.getMessage(c["app"], 123456789), P.UnknownMessage),
    (
        "transitionMessage unknown",
        lambda d, c: d.transitionMessage(c["app"], 123456789, State.Accepted, State.Dispatching),
        P.UnknownMessage,
    ),
    (
        "transitionMessage off the lifecycle",
        lambda d, c: d.transitionMessage(c["app"], 123456789, State.Accepted, State.Done),
        P.InvalidState,
    ),
    ("applyOverride unknown", lambda d, c: d.applyOverride(c["app"], 123456789), P.UnknownMessage),
    ("recordStats unknown msg", lambda d, c: d.recordStats(123456789, "b", P.StatsDelta(1, 1, 0)), P.UnknownMessage),
    ("recordStats negative", lambda d, c: d.recordStats(123456789, "b", P.StatsDelta(-1, 0, 0)), P.InvalidArgument),
    ("recordReceipts bad id", lambda d, c: d.recordReceipts(c["app"], 123456789, ["bad id"]), P.InvalidArgument),
    (
        "getStats too many",
        lambda d, c: d.getStats(c["app"], list(range(1, limits.MSG_IDS_PER_REPORT + 2))),
        P.InvalidArgument,
    ),
]

TAGALIAS_CASES = [
    ("addDevice bad app key", lambda t, c: t.addDevice("nothex", c["rid"], P.Platform.Web), P.InvalidArgument),
    ("addDevice bad regid", lambda t, c: t.addDevice(c["app"], "", P.Platform.Web), P.InvalidArgument),
    ("removeDevice bad regid", lambda t, c: t.removeDevice(c["app"], "a b"), P.InvalidArgument),
    ("addTags long tag", lambda t, c: t.addTags(c["app"], c["rid"], ["fine", LONG]), P.InvalidArgument),
    ("addTags bad chars", lambda t, c: t.addTags(c["app"], c["rid"], ["fine", "no spaces"]), P.InvalidArgument),
    ("addTags newline", lambda t, c: t.addTags(c["app"], c["rid"], ["fine", "nl\n"]), P.InvalidArgument),
    ("addTags empty tag", lambda t, c: t.addTags(c["app"], c["rid"], [""]), P.InvalidArgument),
    (
        "addTags too many in one call",
        lambda t, c: t.addTags(c["app"], c["rid"], [f"t{i}" for i in range(limits.TAGS_PER_CALL + 1)]),
        P.LimitExceeded,
    ),
    ("removeTags long tag", lambda t, c: t.removeTags(c["app"], c["rid"], [LONG]), P.InvalidArgument),
    ("clearTags bad regid", lambda t, c: t.clearTags(c["app"], "-"), P.InvalidArgument),
    ("getTags bad app", lambda t, c: t.getTags("", c["rid"]), P.InvalidArgument),
    ("setAlias long", lambda t, c: t.setAlias(c["app"], c["rid"], "a" * 41), P.InvalidArgument),
    ("setAlias empty", lambda t, c: t.setAlias(c["app"], c["rid"], ""), P.InvalidArgument),
    ("getAlias bad regid", lambda t, c: t.getAlias(c["app"], "?"), P.InvalidArgument),
    ("clearAlias bad regid", lambda t, c: t.clearAlias(c["app"], "?"), P.InvalidArgument),
    ("aliasDevices bad alias", lambda t, c: t.aliasDevices(c["app"], "a b"), P.InvalidArgument),
    ("deleteAlias bad alias", lambda t, c: t.deleteAlias(c["app"], LONG), P.InvalidArgument),
    ("listTags bad app", lambda t, c: t.listTags("XYZ"), P.InvalidArgument),
    ("tagSize bad tag", lambda t, c: t.tagSize(c["app"], LONG), P.InvalidArgument),
    ("isMember bad regid", lambda t, c: t.isMember(c["app"], "keep", "!!"), P.InvalidArgument),
    ("tagMembers garbage cursor", lambda t, c: t.tagMembers(c["app"], "keep", "garbage", 10), P.InvalidArgument),
    ("tagMembers negative limit", lambda t, c: t.tagMembers(c["app"], "keep", "", -1), P.InvalidArgument),
    ("deleteTag bad tag", lambda t, c: t.deleteTag(c["app"], "a b"), P.InvalidArgument),
    ("checkAudience empty", lambda t, c: t.checkAudience(A()), P.InvalidArgument),
    ("checkAudience all plus tags", lambda t, c: t.checkAudience(A(all=True, tags=["keep"])), P.InvalidArgument),
    ("checkAudience 21 tags", lambda t, c: t.checkAudience(A(tags=[f"t{i}" for i in range(21)])), P.LimitExceeded),
    (
        "checkAudience 1001 aliases",
        lambda t, c: t.checkAudience(A(aliases=[f"a{i}" for i in range(1001)])),
        P.LimitExceeded,
    ),
    (
        "checkAudience 1001 regids",
        lambda t, c: t.checkAudience(A(registrationIds=[f"r{i}" for i in range(1001)])),
        P.LimitExceeded,
    ),
    ("resolve bad tag", lambda t, c: t.resolve(c["app"], A(tags=[LONG]), [], "", 10), P.InvalidArgument),
    ("resolve garbage cursor", lambda t, c: t.resolve(c["app"], A(tags=["keep"]), [], "9|x|y", 10), P.InvalidArgument),
    (
        "resolve 21 tag_and",
        lambda t, c: t.resolve(c["app"], A(tagsAnd=[f"t{i}" for i in range(21)]), [], "", 10),
        P.LimitExceeded,
    ),
]


@pytest.mark.parametrize("name,call,error", DBAGENT_CASES, ids=[c[0] for c in DBAGENT_CASES])
def test_dbagent_bad_input(dbagent, ctx, name, call, error):
    with pytest.raises(error) as err:
        call(dbagent, ctx)
    assert err.value.reason


@pytest.mark.parametrize("name,call,error", TAGALIAS_CASES, ids=[c[0] for c in TAGALIAS_CASES])
def test_tagalias_bad_input(tagalias, ctx, name, call, error):
    with pytest.raises(error) as err:
        call(tagalias, ctx)
    assert err.value.reason


def test_device_tag_limit_refuses_the_1001st_tag_and_keeps_the_rest(dbagent, tagalias):
    app = dbagent.createApp("tag-limit-" + uuid.uuid4().hex[:8], 600).appKey
    rid = dbagent.registerDevice(app, P.Platform.Ios).registrationId
    for start in range(0, limits.DEVICE_MAX_TAGS, limits.TAGS_PER_CALL):
        tagalias.addTags(app, rid, [f"t{i}" for i in range(start, start + limits.TAGS_PER_CALL)])
    with pytest.raises(P.LimitExceeded) as err:
        tagalias.addTags(app, rid, ["one-more"])
    assert err.value.max == limits.DEVICE_MAX_TAGS
    assert len(tagalias.getTags(app, rid)) == limits.DEVICE_MAX_TAGS
    assert not tagalias.isMember(app, "one-more", rid)


def test_alias_limit_refuses_the_11th_device(dbagent, tagalias):
    app = dbagent.createApp("alias-limit-" + uuid.uuid4().hex[:8], 600).appKey
    rids = [dbagent.registerDevice(app, P.Platform.Android).registrationId for _ in range(11)]
    for rid in rids[:10]:
        tagalias.setAlias(app, rid, "shared")
    with pytest.raises(P.LimitExceeded) as err:
        tagalias.setAlias(app, rids[10], "shared")
    assert err.value.max == limits.ALIAS_MAX_DEVICES
    assert sorted(tagalias.aliasDevices(app, "shared")) == sorted(rids[:10])
    assert tagalias.getAlias(app, rids[10]) == ""


def test_accepted_state_survives_every_bad_call(dbagent, tagalias, ctx):
    """Runs after the tables above (same module): the app, device, tags and alias are intact."""
    assert dbagent.verifyApp(ctx["app"], ctx["secret"]).appKey == ctx["app"]
    assert dbagent.getApp(ctx["app"]).pushQuotaPerMinute == 600
    assert dbagent.verifyDevice(ctx["app"], ctx["rid"], ctx["token"]).registrationId == ctx["rid"]
    assert sorted(tagalias.getTags(ctx["app"], ctx["rid"])) == ["keep", "vip"]
    assert tagalias.getAlias(ctx["app"], ctx["rid"]) == "alice"
    assert tagalias.aliasDevices(ctx["app"], "alice") == [ctx["rid"]]
    assert dbagent.deviceCount(ctx["app"]) == 1
