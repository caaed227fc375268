"""DBAgent over the wire, through its replica group: values and declared errors as Ice delivers them.

A dead MySQL is in test_outages.py, a replica stopping under load in test_grid.py.
"""

from __future__ import annotations

import time
import uuid

import pytest

from services.common.contract import PushGrid

pytestmark = pytest.mark.integration

State = PushGrid.MessageState


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
    dbagent.recordMessage(
        PushGrid.MessageRecord(
            msgId=msg_id,
            appKey=creds.appKey,
            request=request,
            state=State.Accepted,
            createdAt=now,
            sendAt=now,
            expiresAt=now + 1000,
        )
    )
    stored = dbagent.getMessage(creds.appKey, msg_id)
    assert stored.request.notification.alert == "hello" and stored.request.audience.all
    assert list(stored.request.platforms) == [] and dict(stored.request.notification.extras) == {}
    assert dbagent.transitionMessage(creds.appKey, msg_id, State.Accepted, State.Dispatching)
    with pytest.raises(PushGrid.InvalidState) as refused:  # not a move of the lifecycle
        dbagent.transitionMessage(creds.appKey, msg_id, State.Dispatching, State.Accepted)
    assert refused.value.msgId == msg_id and "from Dispatching to Accepted" in refused.value.reason
    dbagent.recordStats(msg_id, "b1", PushGrid.StatsDelta(3, 2, 1))
    assert dbagent.recordReceipts(creds.appKey, msg_id, [dev.registrationId]) == 1
    (stats,) = dbagent.getStats(creds.appKey, [msg_id])
    assert (stats.targets, stats.sentOnline, stats.storedOffline, stats.received, stats.state) == (
        3,
        2,
        1,
        1,
        State.Dispatching,
    )
