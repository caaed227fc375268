"""A small bounded pool of pymysql connections, so no request pays for a connect and login.

Every wait is bounded: connecting and each read and write by the settings' timeouts, taking a
connection by acquire_timeout. A dead MySQL therefore costs a caller seconds, never a thread, and
MYSQL names the errors that mean it was not reached (callers turn them into Unavailable with it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

from services.common.backends import Backend
from services.common.config import MySQLSettings

ACQUIRE_TIMEOUT_SECONDS = 3.0
# A connection idle this long is pinged before use: MySQL drops idle ones after wait_timeout,
# and a restarted or failed-over MySQL leaves every pooled connection dead. A ping costs a
# loopback round trip, so only a connection in constant use skips it.
IDLE_CHECK_SECONDS = 2.0

Connector = Callable[[], pymysql.connections.Connection]


class PoolTimeout(Exception):
    """Every connection stayed busy for acquire_timeout seconds."""


# pymysql's errors for a connection that failed (lost, timed out, refused): it is not reused.
BROKEN = (pymysql.OperationalError, pymysql.InterfaceError)
# MySQL down, slow or out of connections: Unavailable(backend="mysql").
MYSQL = Backend("mysql", (*BROKEN, PoolTimeout))


def connector(settings: MySQLSettings, host: str, port: int) -> Connector:
    """Opens connections to host:port with the settings' credentials and timeouts.

    autocommit is on so a lone statement never leaves a read view open on a pooled connection;
    transactions call begin() explicitly. FOUND_ROWS makes UPDATE report the rows it matched,
    not the rows it changed, so setting a value to what it already is still finds the row.
    """

    def connect() -> pymysql.connections.Connection:
        return pymysql.connect(
            host=host,
            port=port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            charset="utf8mb4",
            autocommit=True,
            client_flag=CLIENT.FOUND_ROWS,
            cursorclass=pymysql.cursors.DictCursor,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.query_timeout,
            write_timeout=settings.query_timeout,
            # MariaDB aborts a statement the client stopped waiting for, instead of running on
            init_command=f"SET SESSION max_statement_time={settings.query_timeout}",
        )

    return connect


class Pool:
    """At most size connections; idle ones are reused newest first, broken ones are closed."""

    def __init__(self, connect: Connector, size: int, acquire_timeout: float = ACQUIRE_TIMEOUT_SECONDS):
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._connect = connect
        self._acquire_timeout = acquire_timeout
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[tuple[pymysql.connections.Connection, float]] = []
        self._closed = False

    def _take_idle(self) -> pymysql.connections.Connection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn, since = self._idle.pop()
            if time.monotonic() - since < IDLE_CHECK_SECONDS:
                return conn
            try:
                conn.ping(reconnect=False)
                return conn
            except pymysql.Error:
                _close_quietly(conn)

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _close_quietly(conn)

    def _give_back(self, conn: pymysql.connections.Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append((conn, time.monotonic()))
                return
        _close_quietly(conn)

    @contextmanager
    def connection(self) -> Iterator[pymysql.connections.Connection]:
        """A connection for one operation; an exception rolls back, and discards it if broken.

        Raises PoolTimeout if none frees up in time, pymysql.OperationalError if connecting fails.
        """
        if not self._slots.acquire(timeout=self._acquire_timeout):
            raise PoolTimeout(f"no MySQL connection free within {self._acquire_timeout:g} s")
        try:
            conn = self._take_idle() or self._connect()
            try:
                yield conn
            except BaseException as exc:
                if isinstance(exc, BROKEN):
                    _close_quietly(conn)
                    self._drop_idle()  # they talked to the same server: likely dead too
                elif not _rollback(conn):
                    _close_quietly(conn)
                else:
                    self._give_back(conn)
                raise
            else:
                self._give_back(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Closes the idle connections; busy ones are closed when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _close_quietly(conn)


def _rollback(conn: pymysql.connections.Connection) -> bool:
    """Ends any open transaction; False if the connection turned out to be broken."""
    try:
        conn.rollback()
        return True
    except Exception:  # noqa: BLE001 - any failure means the connection is unusable
        return False


def _close_quietly(conn: pymysql.connections.Connection) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
        pass
