"""The reconciler's logic over fakes: an Accepted message whose task never started is published
again once it has waited a whole deadline, and again only after another; a message that started,
or is fresh, is left alone."""

from __future__ import annotations

import threading

import pytest

from services.common.contract import PushGrid
from services.dispatcher.reconciler import Reconciler
from tests.unit.push_fakes import FakeDB, FakePublisher, S, request

DEADLINE = 60_000


def test_an_unstarted_message_is_published_again_after_a_deadline_and_then_once_per_deadline() -> None:
    db, publisher, now = FakeDB(), FakePublisher(), [1_000_000]
    db.add(1, request(), state=S.Accepted, send_at=100_000)  # accepted long ago, its task lost
    db.add(2, request(), state=S.Accepted, send_at=now[0] - 1000)  # just accepted: its task is on its way
    db.add(3, request(), state=S.Dispatching, send_at=100_000)  # started
    r = Reconciler(db, publisher, threading.Event(), clock=lambda: now[0], deadline_ms=DEADLINE, every_seconds=60)
    assert r.scan() == 0  # first seen now: it may still start
    now[0] += DEADLINE // 2
    assert r.scan() == 0
    now[0] += DEADLINE // 2
    assert r.scan() == 1
    assert [t.msg_id for t in publisher.tasks] == [1]
    now[0] += 10_000
    assert r.scan() == 0  # its new task gets a deadline of its own
    now[0] += DEADLINE
    assert r.scan() == 2  # still nothing started them (2 has now waited a deadline too)
    assert sorted(t.msg_id for t in publisher.tasks) == [1, 1, 2]
    db.messages[1].state = S.Dispatching
    db.messages[2].state = S.Done
    now[0] += 2 * DEADLINE
    assert r.scan() == 0 and len(publisher.tasks) == 3  # started: forgotten


def test_a_broker_that_refuses_leaves_the_message_for_the_next_scan() -> None:
    db, publisher, now = FakeDB(), FakePublisher(), [1_000_000]
    db.add(1, request(), state=S.Accepted, send_at=100_000)
    r = Reconciler(db, publisher, threading.Event(), clock=lambda: now[0], deadline_ms=DEADLINE, every_seconds=60)
    r.scan()
    now[0] += DEADLINE
    publisher.down = True
    with pytest.raises(PushGrid.Unavailable):
        r.scan()  # the run loop logs it
    publisher.down = False
    assert r.scan() == 1 and [t.msg_id for t in publisher.tasks] == [1]


def test_a_dispatcher_that_leads_again_starts_its_own_count() -> None:
    db, publisher, now = FakeDB(), FakePublisher(), [1_000_000]
    db.add(1, request(), state=S.Accepted, send_at=100_000)
    r = Reconciler(db, publisher, threading.Event(), clock=lambda: now[0], deadline_ms=DEADLINE, every_seconds=10)
    r.scan()
    now[0] += 5 * DEADLINE  # another dispatcher led meanwhile (and published it, if it had to)
    assert r.scan() == 0
    now[0] += DEADLINE
    assert r.scan() == 0  # scans 60 s apart: more than two rounds, so again a fresh count
    for _ in range(6):
        now[0] += 10_000
        r.scan()
    assert [t.msg_id for t in publisher.tasks] == [1]


def test_lead_runs_the_job_only_while_the_lease_is_held_and_gives_it_up_at_the_end() -> None:
    from services.common.lease import lead

    class FakeLease:
        def __init__(self) -> None:
            self.answers = [False, True, True]
            self.released = False

        def held(self) -> bool:
            return self.answers.pop(0) if self.answers else True

        def release(self) -> None:
            self.released = True

    stop, runs, lease = threading.Event(), [], FakeLease()

    def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise PushGrid.Unavailable(reason="db down", backend="mysql")  # logged; the next round runs
        if len(runs) == 3:
            stop.set()

    lead(lease, stop, 0.001, job, "test job")  # type: ignore[arg-type]
    assert len(runs) == 3 and lease.released
