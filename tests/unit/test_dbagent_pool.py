"""The connection pool's rules, with fake connections: bounded, broken ones dropped, waits bounded."""

from __future__ import annotations

import pymysql
import pytest

from services.common.contract import PushGrid
from services.dbagent import pool as pool_module
from services.dbagent.pool import Pool, PoolTimeout


class FakeConnection:
    def __init__(self, n: int):
        self.n = n
        self.closed = False
        self.rollbacks = 0
        self.ping_fails = False

    def rollback(self):
        self.rollbacks += 1

    def ping(self, reconnect=False):
        if self.ping_fails:
            raise pymysql.OperationalError(2006, "gone away")

    def close(self):
        self.closed = True


class Factory:
    def __init__(self):
        self.made: list[FakeConnection] = []

    def __call__(self):
        conn = FakeConnection(len(self.made))
        self.made.append(conn)
        return conn


def test_reuses_a_returned_connection():
    factory = Factory()
    pool = Pool(factory, size=2)
    with pool.connection() as first:
        pass
    with pool.connection() as second:
        assert second is first
    assert len(factory.made) == 1


def test_waits_at_most_acquire_timeout_when_all_are_busy():
    pool = Pool(Factory(), size=1, acquire_timeout=0.05)
    with pool.connection():
        with pytest.raises(PoolTimeout):
            with pool.connection():
                pass
    with pool.connection():  # the slot came back
        pass


@pytest.mark.parametrize("error", [pymysql.OperationalError(2013, "lost"), pymysql.InterfaceError(0, "")])
def test_a_broken_connection_is_closed_not_reused(error):
    factory = Factory()
    pool = Pool(factory, size=1)
    with pytest.raises(type(error)):
        with pool.connection():
            raise error
    assert factory.made[0].closed
    with pool.connection() as conn:
        assert conn is not factory.made[0]


def test_a_broken_connection_drops_the_idle_ones_too():
    """A MySQL restart kills every pooled connection: the first failure spares the next callers."""
    factory = Factory()
    pool = Pool(factory, size=3)
    with pool.connection(), pool.connection():
        pass  # two idle connections now
    with pytest.raises(pymysql.OperationalError):
        with pool.connection():
            raise pymysql.OperationalError(2013, "lost")
    assert all(c.closed for c in factory.made)
    with pool.connection() as conn:
        assert conn is factory.made[-1] and not conn.closed


def test_a_slice_error_rolls_back_and_keeps_the_connection():
    factory = Factory()
    pool = Pool(factory, size=1)
    with pytest.raises(PushGrid.UnknownApp):
        with pool.connection():
            raise PushGrid.UnknownApp(reason="r", appKey="k")
    assert factory.made[0].rollbacks == 1 and not factory.made[0].closed
    with pool.connection() as conn:
        assert conn is factory.made[0]


def test_a_failing_connect_frees_its_slot():
    def refuse():
        raise pymysql.OperationalError(2003, "refused")

    pool = Pool(refuse, size=1, acquire_timeout=0.05)
    for _ in range(3):
        with pytest.raises(pymysql.OperationalError):
            with pool.connection():
                pass


def test_a_long_idle_connection_is_pinged_and_dropped_if_dead(monkeypatch):
    factory = Factory()
    pool = Pool(factory, size=1)
    clock = [1000.0]
    monkeypatch.setattr(pool_module.time, "monotonic", lambda: clock[0])
    with pool.connection() as conn:
        conn.ping_fails = True
    clock[0] += pool_module.IDLE_CHECK_SECONDS + 1
    with pool.connection() as fresh:
        assert fresh is not conn
    assert conn.closed


def test_close_closes_idle_and_later_returned_connections():
    pool = Pool(Factory(), size=2)
    with pool.connection() as busy:
        with pool.connection() as idle:
            pass
        pool.close()
        assert idle.closed and not busy.closed
    assert busy.closed


def test_mysql_failures_are_unavailable_and_others_pass_through():
    pool = Pool(Factory(), size=1, acquire_timeout=0.05)
    with pool.connection():
        with pytest.raises(PushGrid.Unavailable) as err:
            with pool_module.MYSQL.guard(), pool.connection():
                pass
    assert err.value.backend == "mysql" and "PoolTimeout" in err.value.reason
    for exc in (pymysql.OperationalError(2013, "lost"), pymysql.InterfaceError(0, "closed")):
        with pytest.raises(PushGrid.Unavailable):
            with pool_module.MYSQL.guard():
                raise exc
    with pytest.raises(pymysql.IntegrityError):  # a clash is the caller's to name (AlreadyExists)
        with pool_module.MYSQL.guard():
            raise pymysql.IntegrityError(1062, "Duplicate entry")
