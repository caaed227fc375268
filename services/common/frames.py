"""The device "msg" frame (services/stc/PROTOCOL.md), built once per message by the dispatcher.

STC sends the text as it is (and replays it later from the stored message), so every STC process
and every replay shows a device exactly the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from services.common.contract import PushGrid


def message_frame(msg_id: int, request: PushGrid.PushRequest) -> str:
    """Compact JSON of the frame; notification and message only when the push had them."""
    frame: dict[str, Any] = {"op": "msg", "msg_id": msg_id, "replay": False}
    n = request.notification
    if n is not None and n.alert:
        frame["notification"] = {"alert": n.alert, "title": n.title or "", "extras": dict(n.extras or {})}
    m = request.message
    if m is not None and m.content:
        frame["message"] = {
            "content": m.content,
            "title": m.title or "",
            "content_type": m.contentType or "",
            "extras": dict(m.extras or {}),
        }
    frame["override_msg_id"] = request.options.overrideMsgId if request.options else 0
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
