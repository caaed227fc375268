"""The servants of an adapter, found through a ServantLocator so that a request whose parameters
cannot be read gets a named error.

Ice for Python decodes every string parameter before the servant's method is called. A string
that is not UTF-8, which a client written in another language can send, fails there, and the
caller would get an UnknownException carrying a Python traceback. A ServantLocator has the last
word on every dispatch: its finished() runs afterwards, and an exception it raises replaces the
outcome. So each servant method is wrapped to note on the dispatch's cookie that it started; a
Slice operation that never started could not read its parameters, and finished() answers
PushGrid.InvalidArgument (field "parameters") instead. What the method itself answered or
raised is left alone.

Seeing every dispatch from locate() to finished(), the table also times each one, by operation
and outcome (services.common.metrics); finished() runs once an asynchronous answer is sent, so
those are timed whole too. With metrics off (metrics.ENABLED) it reads no clock and counts nothing.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import Ice

from services.common import metrics
from services.common.contract import PushGrid

UNREADABLE = "the request's parameters could not be read: every string must be UTF-8"

# The cookie of the dispatch each thread is in, by OS thread id: not threading.local, because Ice's
# threads enter Python afresh for locate() and again for the method, and a thread's locals do
# not outlive one entry.
_dispatching: dict[int, _Dispatch] = {}


class _Dispatch:
    """One dispatch's cookie: the servant's operations, whether its method started, when the
    dispatch began and how it ended (metrics.OK or the exception's name)."""

    __slots__ = ("operations", "started", "began", "outcome")

    def __init__(self, operations: frozenset[str], timed: bool) -> None:
        self.operations = operations
        self.started = False
        self.began = time.perf_counter() if timed else 0.0
        self.outcome = metrics.OK


def _operations(servant: Ice.Object) -> list[str]:
    """The Slice operations of servant's interfaces (not Ice's built-in ice_* ones)."""
    return [n[4:] for n in dir(type(servant)) if n.startswith("_op_") and not n.startswith("_op_ice_")]


def _noting_start(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def started(*args: Any, **kwargs: Any) -> Any:
        cookie = _dispatching.get(threading.get_ident())  # set by locate() on this thread, just before
        if cookie is None:  # called in-process, not dispatched
            return method(*args, **kwargs)
        cookie.started = True
        try:
            answer = method(*args, **kwargs)
        except Exception as exc:
            cookie.outcome = type(exc).__name__
            raise
        if callable(getattr(answer, "add_done_callback", None)):  # an asynchronous answer
            answer.add_done_callback(lambda done, c=cookie: _note_outcome(c, done))
        return answer

    return started


def _note_outcome(cookie: _Dispatch, done: Any) -> None:
    error = done.exception()
    if error is not None:
        cookie.outcome = type(error).__name__


class ServantTable(Ice.ServantLocator):
    """The servants of one adapter by identity; install with adapter.addServantLocator(table, "")."""

    def __init__(self) -> None:
        # one dict operation per add, remove or lookup: atomic, so no lock
        self._servants: dict[Ice.Identity, tuple[Ice.Object, frozenset[str]]] = {}
        self.timed = metrics.ENABLED  # read once: the switch is set before the process starts

    def add(self, identity: Ice.Identity, servant: Ice.Object) -> None:
        ops = _operations(servant)
        for name in ops:
            setattr(servant, name, _noting_start(getattr(servant, name)))
        self._servants[identity] = (servant, frozenset(ops))

    def find(self, identity: Ice.Identity) -> Ice.Object | None:
        found = self._servants.get(identity)
        return None if found is None else found[0]

    def remove(self, identity: Ice.Identity) -> None:
        self._servants.pop(identity, None)

    def locate(self, current: Ice.Current) -> tuple[Ice.Object | None, _Dispatch | None]:
        found = self._servants.get(current.id)
        if found is None:
            return None, None  # ObjectNotExistException for the caller
        servant, operations = found
        cookie = _Dispatch(operations, self.timed)
        _dispatching[threading.get_ident()] = cookie
        return servant, cookie

    def finished(self, current: Ice.Current, servant: Ice.Object, cookie: _Dispatch) -> None:
        if current.operation not in cookie.operations:
            return  # Ice's own ice_ping, ice_isA...; or an operation the servant does not have
        outcome = cookie.outcome if cookie.started else metrics.UNREADABLE
        if self.timed:
            metrics.dispatched(current.operation, outcome, time.perf_counter() - cookie.began)
        if not cookie.started:
            raise PushGrid.InvalidArgument(field="parameters", reason=UNREADABLE)

    def deactivate(self, category: str) -> None:
        self._servants.clear()
