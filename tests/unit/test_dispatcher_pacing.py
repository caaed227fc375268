"""Pacing of big pushes and the checkpoint that keeps its schedule across workers."""

from __future__ import annotations

import itertools

from services.common.contract import PushGrid
from services.dispatcher import pacing
from services.dispatcher.checkpoint import Checkpoint

A = PushGrid.Audience


def test_pages_are_due_by_their_share_of_the_audience() -> None:
    minute = 60_000
    assert pacing.due_at(1000, minute, 0, 3000) == 1000
    assert pacing.due_at(1000, minute, 1000, 3000) == 1000 + minute // 3
    assert pacing.due_at(1000, minute, 2000, 3000) == 1000 + 2 * minute // 3
    assert pacing.due_at(1000, minute, 9000, 3000) == 1000 + minute  # past the estimate: at the end


def test_no_duration_means_at_once() -> None:
    assert pacing.due_at(1000, 0, 500, 1000) == 1000
    assert pacing.due_at(1000, 60_000, 500, 0) == 1000


def test_even_spread_over_the_duration() -> None:
    duration, estimate, page = 10 * 60_000, 10_000, 1000
    times = [pacing.due_at(0, duration, sent, estimate) for sent in range(0, estimate, page)]
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {duration // 10}


def test_estimates() -> None:
    assert pacing.estimate_targets(A(registrationIds=["a", "b"], aliases=["x"]), [], [], 0) == 3
    assert pacing.estimate_targets(A(tags=["a", "b"]), [10, 20], [], 0) == 30
    assert pacing.estimate_targets(A(tags=["a"], tagsAnd=["z"]), [100], [7, 30], 0) == 7
    assert pacing.estimate_targets(A(tagsNot=["a"]), [], [], 500) == 500
    assert pacing.estimate_targets(A(tags=["empty"]), [0], [], 0) == 1


def test_checkpoint_round_trips_through_redis_fields() -> None:
    cp = Checkpoint(started=5, estimate=100).after_page("c1", 40, last=False)
    fields = {k: str(v) for k, v in cp.to_fields().items()}
    back = Checkpoint.from_fields(fields)
    assert back == cp and back.page == 1 and back.cursor == "c1" and back.targets == 40 and not back.walked
    last = back.after_page("ignored", 60, last=True)
    assert last.walked and last.cursor == "" and last.page == 2 and last.targets == 100
    assert Checkpoint.from_fields({}) == Checkpoint()
    assert Checkpoint.from_fields({"done": "1"}).done
