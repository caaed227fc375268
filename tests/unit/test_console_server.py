"""The console's HTTP side on loopback, over a fake console (no grid): the page is public,
every /api/ answer needs a session, logins set a strict cookie or are refused and throttled."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from services.common.config import InvalidInternalHost, check_internal_host
from services.common.contract import PushGrid
from services.console import auth, charts, server
from tests.unit.test_console_auth import FakeRegistry


class FakeConsole:
    """What the handler asks of a console; the grid's answers are canned."""

    def __init__(self) -> None:
        self.registry = FakeRegistry()
        self.sessions = auth.Sessions(self.registry, idle_seconds=900)
        self.ring = charts.Ring()
        self.ring.add(charts.Point(1, 2, {"accepted": None}))
        self.gone = False

    def grid(self, admin: Any) -> dict[str, Any]:
        if self.gone:
            import Ice

            raise Ice.ObjectNotExistException()
        return {"servers": [{"id": "DBAgent-1"}], "admin": admin}

    def upgrade(self, admin: Any) -> dict[str, Any]:
        return {"summary": "every server on v1 (1 servers)"}

    def message(self, msg: int) -> dict[str, Any]:
        if msg == 404:
            raise PushGrid.UnknownMessage(reason="there is no message 404", msgId=msg)
        if msg == 503:
            raise PushGrid.Unavailable(reason="mysql did not answer", backend="mysql")
        return {"msg_id": str(msg)}


@pytest.fixture
def console() -> Iterator[tuple[FakeConsole, int]]:
    app = FakeConsole()
    web = server.serve(app, "127.0.0.1", 0)  # type: ignore[arg-type]  # the fake has what the handler asks
    try:
        yield app, web.httpd.server_address[1]
    finally:
        web.shutdown()


def call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    hdrs = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
    conn.request(method, path, body=data, headers={**hdrs, **(headers or {})})
    answer = conn.getresponse()
    answer.body = answer.read()
    conn.close()
    return answer


def cookie_of(answer: Any) -> dict[str, str]:
    token = answer.getheader("Set-Cookie").split(";")[0]
    return {"Cookie": token}


def test_the_page_and_health_are_public_and_the_api_is_not(console) -> None:
    _, port = console
    page = call(port, "GET", "/")
    assert page.status == 200 and b'id="login-form"' in page.body
    assert "script-src 'self'" in page.getheader("Content-Security-Policy")
    assert page.getheader("X-Content-Type-Options") == "nosniff"
    assert call(port, "GET", "/console.js").getheader("Content-Type").startswith("text/javascript")
    assert call(port, "GET", "/healthz").body == b"ok\n"
    for path in ("/api/session", "/api/grid", "/api/charts", "/api/upgrade", "/api/message?id=1", "/api/nothing"):
        answer = call(port, "GET", path)
        assert answer.status == 401 and json.loads(answer.body) == {"error": "log in first"}, path
    assert call(port, "GET", "/../etc/passwd").status == 404


def test_a_right_login_gets_a_strict_cookie_and_the_api(console) -> None:
    app, port = console
    answer = call(port, "POST", "/login", {"user": "admin", "password": "right"})
    assert answer.status == 200 and json.loads(answer.body) == {"user": "admin"}
    cookie = answer.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    me = cookie_of(answer)
    assert json.loads(call(port, "GET", "/api/session", headers=me).body) == {"user": "admin"}
    grid = json.loads(call(port, "GET", "/api/grid", headers=me).body)
    assert grid["admin"] == app.registry.opened[0].admin  # read through this operator's own session
    assert json.loads(call(port, "GET", "/api/charts", headers=me).body)["points"][0]["connections"] == 2
    assert call(port, "GET", "/api/upgrade", headers=me).status == 200
    assert call(port, "GET", "/api/nothing", headers=me).status == 404


def test_a_message_is_looked_up_by_its_id(console) -> None:
    _, port = console
    me = cookie_of(call(port, "POST", "/login", {"user": "admin", "password": "right"}))
    assert json.loads(call(port, "GET", f"/api/message?id={2**62}", headers=me).body) == {"msg_id": str(2**62)}
    assert call(port, "GET", "/api/message?id=abc", headers=me).status == 400
    assert call(port, "GET", "/api/message", headers=me).status == 400
    missing = call(port, "GET", "/api/message?id=404", headers=me)
    assert missing.status == 404 and json.loads(missing.body)["error"] == "there is no message 404"
    assert call(port, "GET", "/api/message?id=503", headers=me).status == 503


def test_a_wrong_login_is_401_then_429(console) -> None:
    app, port = console
    for _ in range(auth.MAX_FAILURES):
        answer = call(port, "POST", "/login", {"user": "admin", "password": "wrong"})
        assert answer.status == 401 and answer.getheader("Set-Cookie") is None
        assert "wrong user or password" in json.loads(answer.body)["error"]
    throttled = call(port, "POST", "/login", {"user": "admin", "password": "right"})
    assert throttled.status == 429 and int(throttled.getheader("Retry-After")) > 0
    assert app.registry.asked == auth.MAX_FAILURES and len(app.sessions) == 0


def test_a_form_login_redirects_or_shows_a_401_page(console) -> None:
    _, port = console
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = call(port, "POST", "/login", b"user=admin&password=%3Cb%3E", headers=form)
    assert wrong.status == 401 and b"Login refused" in wrong.body and b"<b>" not in wrong.body
    right = call(port, "POST", "/login", b"user=admin&password=right", headers=form)
    assert right.status == 303 and right.getheader("Location") == "/"
    assert call(port, "GET", "/api/session", headers=cookie_of(right)).status == 200


@pytest.mark.parametrize(
    "body, headers",
    [
        (b"{not json", {"Content-Type": "application/json"}),
        (b"[1]", {"Content-Type": "application/json"}),
        (b'{"user": 1, "password": 2}', {"Content-Type": "application/json"}),
        (b"x" * 5000, {"Content-Type": "application/json"}),
        (b"", {}),
    ],
)
def test_a_malformed_login_is_400(console, body: bytes, headers: dict[str, str]) -> None:
    _, port = console
    assert call(port, "POST", "/login", body, headers).status == 400


def test_another_sites_post_is_refused(console) -> None:
    _, port = console
    answer = call(port, "POST", "/login", {"user": "admin", "password": "right"}, {"Origin": "http://evil.example"})
    assert answer.status == 403
    same = call(port, "POST", "/login", {"user": "admin", "password": "right"}, {"Origin": f"http://127.0.0.1:{port}"})
    assert same.status == 200


def test_logout_ends_the_session(console) -> None:
    app, port = console
    me = cookie_of(call(port, "POST", "/login", {"user": "admin", "password": "right"}))
    out = call(port, "POST", "/logout", headers=me)
    assert out.status == 200 and "Max-Age=0" in out.getheader("Set-Cookie")
    assert call(port, "GET", "/api/grid", headers=me).status == 401 and app.registry.opened[0].closed


def test_a_grid_session_the_registry_ended_logs_the_browser_out(console) -> None:
    app, port = console
    me = cookie_of(call(port, "POST", "/login", {"user": "admin", "password": "right"}))
    app.gone = True
    answer = call(port, "GET", "/api/grid", headers=me)
    assert answer.status == 401 and "log in again" in json.loads(answer.body)["error"]
    assert call(port, "GET", "/api/session", headers=me).status == 401


@pytest.mark.parametrize("host", ["0.0.0.0", "8.8.8.8", "::1", "example.com", ""])
def test_the_console_listens_on_internal_addresses_only(host: str) -> None:
    with pytest.raises(InvalidInternalHost):
        check_internal_host(host)
    assert check_internal_host("10.77.0.254") == "10.77.0.254" and check_internal_host("127.0.0.1") == "127.0.0.1"
