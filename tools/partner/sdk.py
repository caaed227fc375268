"""The partner SDK: a Python client an app server embeds to push through pushgrid's router.

    from tools.partner import PartnerClient, builders as b

    with PartnerClient(app_key, master_secret, config="run/partner.cfg") as client:
        res = client.push(b.push_request(b.audience(registration_ids=[rid]), notification="hi"))
        print(res.msgId, client.report([res.msgId]))

A partner reaches pushgrid only through the Glacier2 router (glacier2/README.md): the client
logs in with its app key and master secret and gets a session whose push and device APIs act
for that app alone. The session is kept alive and reopened after a router restart as
`tools.partner.session` describes; Slice exceptions (`PushGrid.RateLimited` with
retryAfterMs, `InvalidArgument`, `UnknownDevice`, `Glacier2.PermissionDeniedException` on
login...) reach the caller unchanged. One client is safe to share between threads.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import Ice

from services.common.codec import request_from_dict
from services.common.contract import Glacier2, PushGrid
from tools.partner.session import Session

# Always: the session layer decides what is repeated (Ice's own retries would resend on a new
# connection that has no session), as Glacier2.Application sets it for every Glacier2 client.
FORCED_PROPERTIES = {"Ice.RetryIntervals": "-1"}
# Unless the config says otherwise: fail a connect within 10 s, and never wait forever for a reply.
DEFAULT_PROPERTIES = {
    "Ice.Default.Timeout": "10000",
    "Ice.Default.InvocationTimeout": "60000",
    "Ice.Warn.Connections": "0",
}
SSL_PLUGIN = "IceSSL:createIceSSL"
# The router's limit on one request (the grid's limits.PARTNER_REQUEST_MAX_KIB, 1024 KiB: the SDK
# ships without server code, and a unit test keeps the two equal), less room for the headers:
# beyond it the router closes the connection, so a larger call is refused here and never sent.
ROUTER_REQUEST_MAX_KIB = 1024
REQUEST_MAX_BYTES = ROUTER_REQUEST_MAX_KIB * 1024 - 1024

T = TypeVar("T")

# A push as a PushGrid.PushRequest or its JPush-like dict (PushGrid is generated, so Any to mypy).
Request: TypeAlias = "PushGrid.PushRequest | Mapping[str, Any]"


class PartnerConfigError(Exception):
    """The client cannot be configured: no router given, or a file named does not exist."""


def router_properties(
    config: str | None = None, router: str | None = None, ca: str | None = None, extra: Mapping[str, str] | None = None
) -> Ice.Properties:
    """The client's Ice properties: a partner.cfg, or a router proxy (plus a CA file for SSL).

    A config file is read as it is (its router, its IceSSL settings); router and ca given as
    well override it. With SSL set up (a CA, or IceSSL in the config) the client prefers the
    router's SSL endpoint unless the config says otherwise.
    """
    if config is None and router is None:
        raise PartnerConfigError("no router: give a partner config file or a router proxy")
    for path, what in ((config, "config"), (ca, "CA")):
        if path is not None and not os.path.isfile(path):
            raise PartnerConfigError(f"{what} file {path!r} does not exist")
    props = Ice.createProperties(["--Ice.Config=" + config] if config else [])
    for key, value in DEFAULT_PROPERTIES.items():
        if not props.getProperty(key):
            props.setProperty(key, value)
    if router is not None:
        props.setProperty("Ice.Default.Router", router)
    if ca is not None:
        props.setProperty("Ice.Plugin.IceSSL", SSL_PLUGIN)
        props.setProperty("IceSSL.CAs", os.path.abspath(ca))
        props.setProperty("Ice.Default.PreferSecure", "1")
    if props.getProperty("Ice.Plugin.IceSSL") and not props.getProperty("Ice.Default.PreferSecure"):
        # Ice prefers a proxy's TCP endpoints unless told otherwise; a client set up for SSL
        # means to use it whatever order the router's endpoints come in.
        props.setProperty("Ice.Default.PreferSecure", "1")
    for key, value in {**FORCED_PROPERTIES, **(extra or {})}.items():
        props.setProperty(key, value)
    if not props.getProperty("Ice.Default.Router"):
        raise PartnerConfigError(f"config {config!r} names no router (Ice.Default.Router)")
    return props


def _ms(when: int | dt.datetime) -> int:
    """ms since the epoch from an int (already ms) or a datetime (naive means local time)."""
    if isinstance(when, dt.datetime):
        return int(when.timestamp() * 1000)
    return when


class PartnerClient:
    """A logged-in partner: the push and device APIs of one app, through the Glacier2 router."""

    def __init__(
        self,
        app_key: str,
        secret: str,
        *,
        config: str | None = None,
        router: str | None = None,
        ca: str | None = None,
        properties: Mapping[str, str] | None = None,
        reconnect_timeout: float = 20.0,
    ) -> None:
        """Logs in at once: a wrong secret raises Glacier2.PermissionDeniedException here, an
        unreachable router an Ice.ConnectFailedException. reconnect_timeout bounds how long a
        later call waits for a restarting router before it raises."""
        init = Ice.InitializationData()
        init.properties = router_properties(config, router, ca, properties)
        self.communicator = Ice.initialize(init)
        try:
            prx = Glacier2.RouterPrx.uncheckedCast(self.communicator.getDefaultRouter())
            self._session = Session(prx, app_key, secret, reconnect_timeout)
            self._session.open()
        except BaseException:
            self.communicator.destroy()
            raise
        self.app_key = app_key

    # ---- life cycle

    def close(self) -> None:
        """Destroys the session at the router, then the communicator; safe to call twice."""
        try:
            self._session.close()
        finally:
            self.communicator.destroy()

    def __enter__(self) -> PartnerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def reopened(self) -> int:
        """How many times the session was reopened (after router restarts or lost connections)."""
        return self._session.reopened

    def _push(self, fn: Callable[[Any], T], idempotent: bool) -> T:
        return self._session.call(lambda a: fn(a.push), idempotent)

    def _devices(self, fn: Callable[[Any], T]) -> T:
        return self._session.call(lambda a: fn(a.devices), True)  # every device op is idempotent

    # ---- push (PartnerPush)

    def push(self, request: Request) -> PushGrid.PushResult:
        """Sends a push (a PushRequest, or its JPush-like dict as services.common.codec reads it)."""
        req = _sendable(_request(request))
        return self._push(lambda p: p.push(req), idempotent=False)

    def push_batch(self, requests: Sequence[Request]) -> list[PushGrid.BatchPushResult]:
        """Sends up to 1,000 pushes in one call; each answered on its own, in order (msgId, or
        error naming what a single push would have raised, with its reason)."""
        reqs = _sendable([_request(r) for r in requests])
        return self._push(lambda p: p.pushBatch(reqs), idempotent=False)

    def validate(self, request: Request) -> None:
        """Checks a request as push would, without sending it (InvalidArgument, LimitExceeded)."""
        req = _sendable(_request(request))
        self._push(lambda p: p.validate(req), idempotent=True)

    def schedule(self, request: Request, send_at_ms: int | dt.datetime) -> PushGrid.PushResult:
        """As push, sent at send_at_ms (ms since the epoch, or a datetime) by the scheduler."""
        req, at = _sendable(_request(request)), _ms(send_at_ms)
        return self._push(lambda p: p.schedule(req, at), idempotent=False)

    def cancel(self, msg_id: int) -> None:
        """Cancels a scheduled message not sent yet (UnknownMessage, InvalidState otherwise)."""
        self._push(lambda p: p.cancel(msg_id), idempotent=False)

    def report(self, msg_ids: Iterable[int]) -> list[PushGrid.MessageStats]:
        """Targets, sent online, stored offline, received and state of each message."""
        ids = list(msg_ids)
        return list(self._push(lambda p: p.report(ids), idempotent=True))

    def report_errors(self, msg_ids: Iterable[int]) -> dict[int, str]:
        """What went wrong with each message after it was accepted, by msg id (messages without
        an error are left out): for instance devices possibly missed because Redis lost data."""
        ids = list(msg_ids)
        return {e.msgId: e.error for e in self._push(lambda p: p.reportErrors(ids), idempotent=True)}

    def report_curve(self, msg_id: int) -> list[PushGrid.CurvePoint]:
        """When devices received the message: receipts per bucket of time after its send time
        (offsetSeconds, widthSeconds, received), oldest first, empty buckets left out. Buckets
        are a second wide for 5 minutes, then a minute wide up to an hour, then an hour wide.
        UnknownMessage for a message that is not the app's."""
        return list(self._push(lambda p: p.reportCurve(msg_id), idempotent=True))

    # ---- devices (PartnerDevices)

    def add_tags(self, registration_id: str, tags: Sequence[str]) -> None:
        self._devices(lambda d: d.addTags(registration_id, list(tags)))

    def remove_tags(self, registration_id: str, tags: Sequence[str]) -> None:
        self._devices(lambda d: d.removeTags(registration_id, list(tags)))

    def get_tags(self, registration_id: str) -> list[str]:
        return list(self._devices(lambda d: d.getTags(registration_id)))

    def set_alias(self, registration_id: str, alias: str) -> None:
        self._devices(lambda d: d.setAlias(registration_id, alias))

    def get_alias(self, registration_id: str) -> str:
        """The device's alias, "" if it has none."""
        return self._devices(lambda d: d.getAlias(registration_id))

    def alias_devices(self, alias: str) -> list[str]:
        return list(self._devices(lambda d: d.aliasDevices(alias)))

    def delete_alias(self, alias: str) -> None:
        self._devices(lambda d: d.deleteAlias(alias))

    def list_tags(self) -> list[str]:
        """Every tag of the app."""
        return list(self._devices(lambda d: d.listTags()))

    def is_member(self, tag: str, registration_id: str) -> bool:
        return self._devices(lambda d: d.isMember(tag, registration_id))

    def delete_tag(self, tag: str) -> None:
        """Removes the tag from every device of the app."""
        self._devices(lambda d: d.deleteTag(tag))

    def device_count(self) -> int:
        return self._devices(lambda d: d.deviceCount())


def encoded_size_at_least(value: Any) -> int:
    """A lower bound of value's size in the Ice encoding (strings' UTF-8 bytes, a byte per
    number and per struct field): a request above the router's limit by this count can never pass."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, list | tuple):
        return 1 + sum(encoded_size_at_least(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(encoded_size_at_least(k) + encoded_size_at_least(v) for k, v in value.items())
    if hasattr(value, "__dict__") and not isinstance(value, Ice.EnumBase):
        return sum(encoded_size_at_least(v) for v in vars(value).values())
    return 1


def _sendable(request: T) -> T:
    """request, unless it is larger than the router takes: LimitExceeded, before anything is
    sent (the router would close the connection, and no retry could ever succeed)."""
    size = encoded_size_at_least(request)
    if size > REQUEST_MAX_BYTES:
        raise PushGrid.LimitExceeded(
            reason=f"the request is at least {size:,} bytes; the router takes at most {REQUEST_MAX_BYTES:,}",
            limit="request size",
            max=REQUEST_MAX_BYTES,
        )
    return request


def _request(request: Request) -> PushGrid.PushRequest:
    """A PushRequest as given, or built from its dict form (ValueError says what is malformed)."""
    if isinstance(request, PushGrid.PushRequest):
        return request
    if isinstance(request, Mapping):
        return request_from_dict(dict(request))
    raise TypeError(f"a push request is a PushGrid.PushRequest or its dict form, not {type(request).__name__}")


__all__ = ["PartnerClient", "PartnerConfigError", "router_properties"]
