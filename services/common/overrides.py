"""override_msg_id: marking the message a newer one replaces as Overridden.

Push marks it once the new message is accepted; the dispatcher marks it again when it sends the
new one (that is when a scheduled override takes effect). The compare-and-set makes both safe.
"""

from __future__ import annotations

from services.common.contract import PushGrid

S = PushGrid.MessageState
# States an override ends; Cancelled and Expired messages stay what they are.
SUPERSEDABLE = (S.Scheduled, S.Accepted, S.Dispatching, S.Done)


def supersede(db: PushGrid.DBAgentPrx, app_key: str, msg_id: int, attempts: int = 3) -> bool:
    """Moves msg_id to Overridden from whatever live state it is in; False if it was not live."""
    for _ in range(attempts):
        state = db.getMessage(app_key, msg_id).state
        if state not in SUPERSEDABLE:
            return False
        if db.transitionMessage(app_key, msg_id, state, S.Overridden):
            return True
    return False
