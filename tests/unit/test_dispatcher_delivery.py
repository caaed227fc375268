"""Delivery over fake STC proxies: each device through the process presence names, many messages
per call, and STCs of the release before (no deliverMany) still reached during an upgrade."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import Ice

from services.common.contract import PushGrid
from services.dispatcher.delivery import Delivery
from tests.unit.fakes import APP, FakeMailbox


def done(value: Any) -> Future[Any]:
    f: Future[Any] = Future()
    if isinstance(value, BaseException):
        f.set_exception(value)
    else:
        f.set_result(value)
    return f


class FakeSTC:
    """An STC process holding some devices; old=True answers deliverMany as an old release does."""

    def __init__(self, holds: set[str], old: bool = False) -> None:
        self.holds, self.old = holds, old
        self.calls: list[str] = []

    def ice_invocationTimeout(self, ms: int) -> FakeSTC:
        return self

    def deliverManyAsync(self, deliveries: list[PushGrid.Delivery]) -> Future[Any]:
        self.calls.append("deliverMany")
        if self.old:
            return done(Ice.OperationNotExistException())
        return done([[r for r in d.registrationIds if r in self.holds] for d in deliveries])

    def deliverAsync(self, env: PushGrid.Envelope, rids: list[str]) -> Future[Any]:
        self.calls.append("deliver")
        return done([r for r in rids if r in self.holds])


def env(msg_id: int) -> PushGrid.Envelope:
    return PushGrid.Envelope(msgId=msg_id, appKey=APP, broadcast=False, expiresAt=2**62, overrideMsgId=0, body="{}")


def test_many_messages_go_to_each_stc_in_one_call_and_old_stcs_one_by_one() -> None:
    stcs = {"STC-new": FakeSTC({"a", "b"}), "STC-old": FakeSTC({"c"}, old=True)}
    mailbox = FakeMailbox({"a": "STC-new", "b": "STC-new", "c": "STC-old"})
    proxies: Any = stcs  # FakeSTC stands in for PushGrid.STCPrx
    delivery = Delivery(mailbox, lambda stc_id: proxies[stc_id], lambda: list(proxies.values()))
    sent = delivery.deliver_many([(env(1), ["a", "c", "offline"]), (env(2), ["b", "a"]), (env(3), ["c"])])
    assert sent == [2, 2, 1]
    assert stcs["STC-new"].calls == ["deliverMany"]  # both its messages in one call
    assert stcs["STC-old"].calls == ["deliverMany", "deliver", "deliver"]  # refused, then one by one
