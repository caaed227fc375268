"""A message's lifecycle: the moves between its states (`PushGrid.MessageState`) and who makes each.

Push records a message as Accepted (push) or Scheduled (schedule). From then on it moves only as
TRANSITIONS allows, each move a compare-and-set through DBAgent.transitionMessage, which refuses
any other pair with InvalidState:

    Scheduled --scheduler--> Accepted --dispatcher--> Dispatching --dispatcher--> Done
        |                                                ^
        +-------------- dispatcher (claim when due) -----+

    Scheduled, Accepted                    --Push-------> Cancelled   (cancel; the broker refused the task)
    Scheduled, Accepted, Dispatching       --dispatcher-> Expired     (its time to live is over)
    Scheduled, Accepted, Dispatching, Done --override---> Overridden

Push cancels a Scheduled message on request, and an Accepted one whose task the broker did not
take. Cancelled, Expired and Overridden are final (FINAL); Done ends only by an override. A
dispatcher runs a task only while its message is RUNNABLE.

An override (PushOptions.overrideMsgId) takes effect once the overriding message's task is on
the broker, so a push the broker refused changes nothing. DBAgent alone applies it, in one
place (its store's _apply_override): for a push when Push, having published, calls
applyOverride; for a scheduled push in the transaction that moves it out of Scheduled
(OVERRIDE_TAKES_EFFECT), whoever makes that move. Only a message of the same app, in a state an
override ends (OVERRIDABLE), becomes Overridden.
"""

from __future__ import annotations

from services.common.contract import PushGrid

S = PushGrid.MessageState
_OVERRIDE = "DBAgent, once the task of the message overriding it is on the broker"

# Every state, in enumerator order, and by name (as MySQL rows keep them).
ALL: tuple[PushGrid.MessageState, ...] = tuple(
    PushGrid.MessageState._enumerators[v] for v in sorted(PushGrid.MessageState._enumerators)
)
BY_NAME: dict[str, PushGrid.MessageState] = {s.name: s for s in ALL}

# (from, to): who makes the move. Every move a message can make; transitionMessage accepts all
# but the moves to Overridden, which only DBAgent's override makes (DBAGENT_ONLY).
TRANSITIONS: dict[tuple[PushGrid.MessageState, PushGrid.MessageState], str] = {
    (S.Scheduled, S.Accepted): "the scheduler, once the task is on the broker",
    (S.Scheduled, S.Dispatching): "a dispatcher, claiming a due message the scheduler published but did not accept",
    (S.Scheduled, S.Cancelled): "Push (cancel)",
    (S.Scheduled, S.Expired): "a dispatcher, finding its time to live over",
    (S.Scheduled, S.Overridden): _OVERRIDE,
    (S.Accepted, S.Dispatching): "a dispatcher, claiming the task",
    (S.Accepted, S.Cancelled): "Push, when the broker did not take the task",
    (S.Accepted, S.Expired): "a dispatcher, finding its time to live over",
    (S.Accepted, S.Overridden): _OVERRIDE,
    (S.Dispatching, S.Done): "the dispatcher, once every page is sent",
    (S.Dispatching, S.Expired): "the dispatcher, finding its time to live over between pages",
    (S.Dispatching, S.Overridden): _OVERRIDE,
    (S.Done, S.Overridden): _OVERRIDE,
}

# States Push records a new message in.
NEW: frozenset[PushGrid.MessageState] = frozenset({S.Scheduled, S.Accepted})
# States a dispatcher still runs a task in (anything else skips it).
RUNNABLE: frozenset[PushGrid.MessageState] = frozenset({S.Scheduled, S.Accepted, S.Dispatching})
# Moves no caller may ask transitionMessage for: DBAgent makes them itself, applying an override.
DBAGENT_ONLY: frozenset[PushGrid.MessageState] = frozenset({S.Overridden})
# States with no move out: Cancelled, Expired and Overridden.
FINAL: frozenset[PushGrid.MessageState] = frozenset(set(ALL) - {f for f, _ in TRANSITIONS})
# States an override ends; a Cancelled or Expired message stays what it is.
OVERRIDABLE: frozenset[PushGrid.MessageState] = frozenset(f for f, t in TRANSITIONS if t == S.Overridden)
# Moves of a scheduled overriding message in whose transaction DBAgent marks the old one Overridden.
OVERRIDE_TAKES_EFFECT: frozenset[tuple[PushGrid.MessageState, PushGrid.MessageState]] = frozenset(
    {(S.Scheduled, S.Accepted), (S.Scheduled, S.Dispatching)}
)


# States of an overriding message whose task is on the broker: applyOverride acts only then.
PUBLISHED: frozenset[PushGrid.MessageState] = frozenset({S.Accepted, S.Dispatching, S.Done})


def allowed(from_state: PushGrid.MessageState, to_state: PushGrid.MessageState) -> bool:
    """True if a caller may move a message from from_state to to_state (transitionMessage)."""
    return (from_state, to_state) in TRANSITIONS and to_state not in DBAGENT_ONLY


def forbidden(msg_id: int, from_state: PushGrid.MessageState, to_state: PushGrid.MessageState) -> PushGrid.InvalidState:
    """The error for a move not in TRANSITIONS."""
    return PushGrid.InvalidState(
        reason=f"a message cannot move from {from_state.name} to {to_state.name}", msgId=msg_id
    )
