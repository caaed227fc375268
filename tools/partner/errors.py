"""Partner-facing errors in one line each: what went wrong and what to do about it.

The SDK raises Slice exceptions unchanged; a tool (the CLI, a partner's logging) turns them into
words here. `describe` gives the line a person reads, `to_dict` the same for a script.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import Ice

from services.common.contract import Glacier2, PushGrid
from tools.partner.sdk import PartnerConfigError
from tools.partner.session import SESSION_NOT_EXIST_ID, SessionClosed


def _name(exc: BaseException) -> str:
    """The Slice name without its module (RateLimited, PermissionDeniedException...)."""
    if isinstance(exc, Ice.Exception):
        return exc.ice_id().rsplit("::", 1)[-1]
    return type(exc).__name__


def _retry_at(ms: int, now: dt.datetime | None = None) -> str:
    at = (now or dt.datetime.now().astimezone()) + dt.timedelta(milliseconds=ms)
    return at.strftime("%H:%M:%S")


def describe(exc: BaseException, now: dt.datetime | None = None) -> str:
    """One line for a person; now only fixes the clock for tests (RateLimited's retry time)."""
    if isinstance(exc, PushGrid.RateLimited):
        return (
            f"rate limited: {exc.reason}; retry in {exc.retryAfterMs / 1000:.1f} s "
            f"(at {_retry_at(exc.retryAfterMs, now)})"
        )
    if isinstance(exc, PushGrid.InvalidArgument):
        return f"invalid {exc.field}: {exc.reason}"
    if isinstance(exc, PushGrid.LimitExceeded):
        return f"limit exceeded ({exc.limit}, at most {exc.max}): {exc.reason}"
    if isinstance(exc, PushGrid.UnknownDevice):
        return f"unknown device {exc.registrationId}: {exc.reason}"
    if isinstance(exc, PushGrid.UnknownMessage):
        return f"unknown message {exc.msgId}: {exc.reason}"
    if isinstance(exc, PushGrid.InvalidState):
        return f"message {exc.msgId}: {exc.reason}"
    if isinstance(exc, PushGrid.Unavailable):
        return f"{exc.backend} unavailable: {exc.reason} (nothing was done; try again)"
    if isinstance(exc, PushGrid.PushGridError):
        return f"{_name(exc)}: {exc.reason}"
    if isinstance(exc, Glacier2.PermissionDeniedException):
        return f"login refused: {exc.reason or 'permission denied'}"
    if isinstance(exc, Glacier2.CannotCreateSessionException):
        return f"cannot create a session: {exc.reason}"
    if isinstance(exc, Ice.UserException) and exc.ice_id() == SESSION_NOT_EXIST_ID:
        return "the router has no session for this client"
    if isinstance(exc, (Ice.ConnectFailedException, Ice.ConnectTimeoutException, Ice.DNSException)):
        return f"cannot reach the router: {_name(exc)} ({_local_detail(exc)})"
    if isinstance(exc, Ice.InvocationTimeoutException):
        return "no answer in time: the request may or may not have been done (check with report)"
    if isinstance(exc, (Ice.SocketException, Ice.ConnectionTimeoutException, Ice.UnknownLocalException)):
        return f"connection to the router lost: {_name(exc)}; the request may or may not have been done"
    if isinstance(exc, Ice.SecurityException):
        return f"SSL failed: {_local_detail(exc)}"
    if isinstance(exc, Ice.Exception):
        return f"Ice error: {_name(exc)} ({_local_detail(exc)})"
    if isinstance(exc, (PartnerConfigError, SessionClosed, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _local_detail(exc: Ice.Exception) -> str:
    """The last line of Ice's text for a local exception (the reason, without the type line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if len(lines) > 1 else _name(exc)


def to_dict(exc: BaseException) -> dict[str, Any]:
    """The error for scripts: its name, the line describe gives, and its Slice fields."""
    out: dict[str, Any] = {"error": _name(exc), "message": describe(exc)}
    if isinstance(exc, Ice.UserException):
        out.update({k: v for k, v in vars(exc).items() if not k.startswith("_")})
    return out


# The errors pushgrid-partner turns into a line and exit 1; anything else is a bug and a traceback.
EXPECTED = (Ice.Exception, PartnerConfigError, SessionClosed, ValueError)
