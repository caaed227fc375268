"""PartnerVerifier: Glacier2's permissions verifier; the user id is an app key, the password its
master secret. The secret is checked by DBAgent (scrypt hash, constant-time comparison);
unknown app, disabled app and wrong secret get the same answer."""

from __future__ import annotations

import logging

import Ice

from glacier2.throttle import LoginRefused, LoginThrottle
from services.common.contract import Glacier2, PushGrid

log = logging.getLogger(__name__)

WRONG = "app key or master secret is wrong"


def partner_address(current: Ice.Current | None) -> str:
    """The partner's IP as the router saw it (Glacier2.AddConnectionContext=1); IPv4-mapped
    IPv6 addresses are counted as their IPv4 address."""
    address = ((current.ctx or {}).get("_con.remoteAddress", "") if current is not None else "") or ""
    return address[7:] if address.startswith("::ffff:") else address


class PartnerVerifierI(Glacier2.PermissionsVerifier):
    def __init__(self, db: PushGrid.DBAgentPrx, throttle: LoginThrottle) -> None:
        self._db = db
        self._throttle = throttle

    def checkPermissions(self, userId: str, password: str, current: Ice.Current = None) -> tuple[bool, str]:
        address = partner_address(current)
        try:
            self._throttle.check(userId, address)
        except LoginRefused as refused:
            log.warning("login of %r from %s refused: %s", userId[:64], address or "?", refused.reason)
            return False, refused.reason
        try:
            self._db.verifyApp(userId, password)
        except PushGrid.AuthenticationFailed:
            self._throttle.failed(userId, address)
            log.info("failed login of %r from %s", userId[:64], address or "?")
            return False, WRONG
        except (PushGrid.Unavailable, Ice.LocalException) as exc:
            log.warning("login of %r not checked: %s", userId[:64], exc)
            return False, "pushgrid cannot check logins right now; try again shortly"
        self._throttle.succeeded(userId)
        return True, ""
