"""The console's web server: the page, its login, and the JSON it reads, over stdlib HTTP.

It listens on the grid's internal address only (the descriptor gives ${bind}; anything but a
loopback or private IPv4 address is refused at start), so operators reach it from inside the
grid's network or through an SSH tunnel, never through the partners' door. Every /api/ answer
but the health page needs a logged-in session (auth.py); grid reads go through that operator's
own IceGrid admin session, pushes through DBAgent's replica group, the upgrade record through
Redis.

  GET  /                 the page (web/: plain HTML, JS and CSS; charts are SVG drawn by the JS)
  GET  /healthz          "ok", no login: what the upgrade's health check asks
  POST /login            user and password (JSON, or a form): a session cookie, 401, or 429
  POST /logout
  GET  /api/session      who is logged in
  GET  /api/grid         registries, nodes, replica groups, every server (state, pid, release)
  GET  /api/charts       the last 10 minutes of connections and push rates, a point every 2 s
  GET  /api/message?id=  a push by msg id: state, app, audience, times, report, delivery curve
  GET  /api/upgrade      which release each server runs, and the rollout's steps
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import Ice
import IceGrid

from services import console
from services.common import gridadmin, ice, upgrades
from services.common.backends import REDIS
from services.common.config import CallTimeouts, ConsoleSettings, RedisSettings, check_internal_host
from services.common.contract import PushGrid
from services.common.lazy import Lazy
from services.console import auth, charts, views

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}
LOGIN_BODY_MAX_BYTES = 4096
ADMIN_TIMEOUT_MS = 10_000
SWEEP_SECONDS = 30.0
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class IceGridSession:
    """An operator's IceGrid admin session (auth.GridSession)."""

    session: IceGrid.AdminSessionPrx
    admin: IceGrid.AdminPrx

    def close(self) -> None:
        with contextlib.suppress(Ice.LocalException):
            self.session.destroy()


class Console:
    """What one console server holds: the browser sessions, the charts and the grid's clients."""

    def __init__(self, communicator: Ice.Communicator, settings: ConsoleSettings) -> None:
        props = communicator.getProperties()
        self.communicator = communicator
        self.settings = settings
        self.sessions = auth.Sessions(self._login, settings.idle_seconds)
        self.ring = charts.Ring()
        self.sampler = charts.Sampler(self.sessions.any_admin, self.ring)
        timeouts = CallTimeouts.from_properties(props)
        self.db = ice.dbagent(communicator).ice_invocationTimeout(timeouts.dbagent_ms)
        self.redis: Lazy[Any] = Lazy(
            lambda: _redis_cluster(RedisSettings.from_properties(props)), lambda client: client.close()
        )
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="console-sweeper", daemon=True)

    def start(self) -> None:
        self.sampler.start()
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        self.sampler.stop()
        self.sessions.close_all()
        self.redis.close()

    def _login(self, user: str, password: str) -> IceGridSession:
        """An IceGrid admin session for user and password: the registry checks them."""
        try:
            registry = gridadmin.registry(self.communicator)
            session = registry.createAdminSession(user, password)
            gridadmin.keep_alive(registry)
            return IceGridSession(session, session.getAdmin().ice_invocationTimeout(ADMIN_TIMEOUT_MS))
        except IceGrid.PermissionDeniedException:
            raise auth.LoginRefused("wrong user or password") from None
        except Ice.LocalException as exc:
            log.warning("no registry answered a console login: %r", exc)
            raise auth.RegistryUnreachable("the IceGrid registry did not answer; try again") from None

    def _sweep(self) -> None:
        while not self._stop.wait(SWEEP_SECONDS):
            ended = self.sessions.sweep()
            if ended:
                log.info("%d idle console sessions ended", ended)

    # ---- what the endpoints answer (a logged-in operator's admin proxy)

    def grid(self, admin: IceGrid.AdminPrx) -> dict[str, Any]:
        status = gridadmin.status(admin, self.settings.application)
        infos = {name: gridadmin.node_info(admin, name) if up else None for name, up in status["nodes"].items()}
        return views.grid(status, infos)

    def upgrade(self, admin: IceGrid.AdminPrx) -> dict[str, Any]:
        servers = gridadmin.servers(admin)
        try:
            progress, error = upgrades.read(self.redis()), ""
        except REDIS.errors as exc:
            log.warning("cannot read the upgrade record: %r", exc)
            progress, error = None, "redis did not answer: the rollout's steps are not shown"
        return views.upgrade(servers, progress, error)

    def message(self, msg: int) -> dict[str, Any]:
        return views.lookup(self.db, msg)


def _redis_cluster(settings: RedisSettings) -> Any:
    from services.common.redis_client import cluster

    return cluster(settings)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    console: Console


class Handler(BaseHTTPRequestHandler):
    """One request. The page and the health check are public; everything else needs a session."""

    server: _Server
    server_version = "pushgrid-console"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # ---- routing

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in STATIC:
            name, content_type = STATIC[url.path]
            self._send(HTTPStatus.OK, (WEB_DIR / name).read_bytes(), content_type)
        elif url.path == console.HEALTH_PATH:
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        elif url.path.startswith("/api/"):
            self._api(url.path, urllib.parse.parse_qs(url.query))
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such page"})

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if not self._same_origin():
            self._json(HTTPStatus.FORBIDDEN, {"error": "a request from another site"})
        elif path == "/login":
            self._login()
        elif path == "/logout":
            self.server.console.sessions.close(self._token())
            self._json(HTTPStatus.OK, {"user": None}, {"Set-Cookie": auth.clear_cookie()})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such page"})

    def _api(self, path: str, query: dict[str, list[str]]) -> None:
        app = self.server.console
        token = self._token()
        session = app.sessions.get(token)
        if session is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "log in first"})
            return
        calls: dict[str, Callable[[], Any]] = {
            "/api/session": lambda: {"user": session.user},
            "/api/grid": lambda: app.grid(session.grid.admin),
            "/api/charts": app.ring.to_json,
            "/api/upgrade": lambda: app.upgrade(session.grid.admin),
            "/api/message": lambda: app.message(views.msg_id((query.get("id") or [""])[0])),
        }
        call = calls.get(path)
        if call is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such endpoint"})
            return
        try:
            self._json(HTTPStatus.OK, call())
        except views.BadRequest as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except PushGrid.UnknownMessage as exc:
            self._json(HTTPStatus.NOT_FOUND, {"error": exc.reason})
        except PushGrid.InvalidArgument as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": exc.reason})
        except PushGrid.Unavailable as exc:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": exc.reason})
        except Ice.ObjectNotExistException:  # the registry ended the admin session (it restarted)
            app.sessions.close(token)
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "your grid session ended; log in again"})
        except Ice.LocalException as exc:
            log.warning("%s: the grid did not answer: %r", path, exc)
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"the grid did not answer ({type(exc).__name__})"})

    # ---- login

    def _login(self) -> None:
        as_json = self.headers.get("Content-Type", "").startswith("application/json")
        try:
            user, password = self._credentials(as_json)
        except views.BadRequest as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        sessions = self.server.console.sessions
        try:
            token = sessions.open(user, password, self.client_address[0])
        except auth.LoginThrottled as exc:
            retry = {"Retry-After": str(max(1, round(exc.retry_after)))}
            self._refuse(as_json, HTTPStatus.TOO_MANY_REQUESTS, str(exc), retry)
            return
        except auth.LoginRefused:
            self._refuse(as_json, HTTPStatus.UNAUTHORIZED, "wrong user or password: use IceGrid's admin login")
            return
        except auth.RegistryUnreachable as exc:
            self._refuse(as_json, HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
            return
        cookie = {"Set-Cookie": auth.set_cookie(token)}
        if as_json:
            self._json(HTTPStatus.OK, {"user": user}, cookie)
        else:
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", {**cookie, "Location": "/"})

    def _credentials(self, as_json: bool) -> tuple[str, str]:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise views.BadRequest("a login needs a Content-Length") from None
        if not 0 < length <= LOGIN_BODY_MAX_BYTES:
            raise views.BadRequest(f"a login is 1 to {LOGIN_BODY_MAX_BYTES} bytes")
        body = self.rfile.read(length)
        try:
            if as_json:
                fields = json.loads(body)
                if not isinstance(fields, dict):
                    raise ValueError("not an object")
            else:
                fields = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8")).items()}
        except (ValueError, UnicodeDecodeError):
            raise views.BadRequest("a login is {user, password} as JSON, or a form") from None
        user, password = fields.get("user", ""), fields.get("password", "")
        if not isinstance(user, str) or not isinstance(password, str):
            raise views.BadRequest("user and password are strings")
        return user, password

    def _refuse(self, as_json: bool, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        if as_json:
            self._json(status, {"error": message}, headers)
            return
        page = (
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>pushgrid console: login refused"
            f"</title></head><body><h1>Login refused</h1><p>{html.escape(message)}</p>"
            '<p><a href="/">Back to the login</a></p></body></html>'
        )
        self._send(status, page.encode("utf-8"), "text/html; charset=utf-8", headers)

    # ---- plumbing

    def _token(self) -> str | None:
        return auth.token_from(self.headers.get("Cookie"))

    def _same_origin(self) -> bool:
        """A POST from the console's own page, or from no page at all (curl): a browser names
        the page's origin, which must be this server as the browser reached it."""
        origin = self.headers.get("Origin")
        return origin is None or origin == f"http://{self.headers.get('Host', '')}"

    def _json(self, status: HTTPStatus, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json", headers)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {**HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s %s", self.address_string(), format % args)


@dataclass
class Web:
    """The console's HTTP server, serving on threads of its own."""

    httpd: _Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def serve(app: Console, host: str, port: int) -> Web:
    """Starts serving app on host:port (internal addresses only: InvalidInternalHost otherwise)."""
    httpd = _Server((check_internal_host(host), port), Handler)
    httpd.console = app
    thread = threading.Thread(target=httpd.serve_forever, name="console-http", daemon=True)
    thread.start()
    log.info("console at http://%s:%d/", host, httpd.server_address[1])
    return Web(httpd, thread)
