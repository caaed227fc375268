"""ServantTable: a request whose strings are not UTF-8 is InvalidArgument, anything else passes
through as the servant answered it; every dispatch is counted by outcome and timed, unless
metrics are off. A real Ice
adapter on loopback; the bad request is sent raw (ice_invoke), as a client in another language
could send it."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator, Sequence

import Ice
import pytest
from prometheus_client import REGISTRY, generate_latest

from services.common import metrics, servants
from services.common.contract import PushGrid
from services.common.servants import UNREADABLE, ServantTable

IDENTITY = Ice.Identity(name="devices", category="s1")


class Devices(PushGrid.PartnerDevices):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def getAlias(self, registrationId: str, current: Ice.Current = None) -> str:
        self.calls.append(registrationId)
        if registrationId == "nobody":
            raise PushGrid.UnknownDevice(registrationId=registrationId)
        return "alias-of-" + registrationId

    def getTags(self, registrationId: str, current: Ice.Current = None) -> Ice.Future:
        """Answers later from another thread (AMD), so finished() runs off the dispatch thread."""
        future: Ice.Future = Ice.Future()
        threading.Timer(0.05, lambda: future.set_result(["later"])).start()
        return future

    def addTags(self, registrationId: str, tags: Sequence[str], current: Ice.Current = None) -> None:
        self.calls.append(registrationId)


@pytest.fixture
def served() -> Iterator[tuple[PushGrid.PartnerDevicesPrx, Devices, ServantTable]]:
    yield from serving()


def serving() -> Iterator[tuple[PushGrid.PartnerDevicesPrx, Devices, ServantTable]]:
    with Ice.initialize() as server, Ice.initialize() as client:
        adapter = server.createObjectAdapterWithEndpoints("Table", "tcp -h 127.0.0.1")
        table = ServantTable()
        adapter.addServantLocator(table, "")
        devices = Devices()
        table.add(IDENTITY, devices)
        adapter.activate()
        prx = adapter.createProxy(IDENTITY)
        yield PushGrid.PartnerDevicesPrx.uncheckedCast(client.stringToProxy(server.proxyToString(prx))), devices, table


def encapsulation(payload: bytes) -> bytes:
    """In-parameters as Ice encodes them (encoding 1.1)."""
    return struct.pack("<iBB", 6 + len(payload), 1, 1) + payload


def string(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


def test_a_string_that_is_not_utf8_is_invalid_argument(served) -> None:
    prx, devices, _ = served
    ok, out = prx.ice_invoke("getAlias", Ice.OperationMode.Idempotent, encapsulation(string(b"dev\xff\xfe")))
    assert not ok
    assert b"::PushGrid::InvalidArgument" in out and UNREADABLE.encode() in out and b"parameters" in out
    ok, _ = prx.ice_invoke(
        "addTags", Ice.OperationMode.Idempotent, encapsulation(string(b"ok") + b"\x01" + string(b"\xc3"))
    )
    assert not ok
    assert devices.calls == []  # the servant never saw either
    assert prx.getAlias("dev1") == "alias-of-dev1"  # and the next good call is served as ever


def test_what_the_servant_answers_passes_through(served) -> None:
    prx, devices, _ = served
    with pytest.raises(PushGrid.UnknownDevice):
        prx.getAlias("nobody")
    ok, out = prx.ice_invoke("getAlias", Ice.OperationMode.Idempotent, encapsulation(string("dévice".encode())))
    assert ok and "alias-of-dévice".encode() in out
    assert prx.getTags("dev1") == ["later"]  # an asynchronous answer is not mistaken for a bad request
    prx.ice_ping()


def test_unknown_objects_and_operations_keep_their_ice_errors(served) -> None:
    prx, _, table = served
    with pytest.raises(Ice.OperationNotExistException):
        prx.ice_invoke("noSuchOperation", Ice.OperationMode.Normal, encapsulation(b""))
    table.remove(IDENTITY)
    with pytest.raises(Ice.ObjectNotExistException):
        prx.getAlias("dev1")
    assert table.find(IDENTITY) is None


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_dispatch_is_counted_by_outcome_and_timed(served) -> None:
    prx, _, _ = served
    before = {
        outcome: sample("pushgrid_dispatches_total", operation=op, outcome=outcome)
        for op, outcome in [("getAlias", "ok"), ("getAlias", "UnknownDevice"), ("getAlias", "unreadable")]
    }
    slow_count = sample("pushgrid_dispatch_seconds_count", operation="getTags")
    slow_sum = sample("pushgrid_dispatch_seconds_sum", operation="getTags")
    prx.getAlias("dev1")
    with pytest.raises(PushGrid.UnknownDevice):
        prx.getAlias("nobody")
    prx.ice_invoke("getAlias", Ice.OperationMode.Idempotent, encapsulation(string(b"\xff")))
    prx.getTags("dev1")  # answered 50 ms later, from another thread
    prx.ice_ping()
    for outcome, was in before.items():
        assert sample("pushgrid_dispatches_total", operation="getAlias", outcome=outcome) == was + 1, outcome
    assert sample("pushgrid_dispatch_seconds_count", operation="getTags") == slow_count + 1
    assert sample("pushgrid_dispatch_seconds_sum", operation="getTags") - slow_sum >= 0.04  # timed to the answer
    assert sample("pushgrid_dispatches_total", operation="ice_ping", outcome="ok") == 0
    text = generate_latest(REGISTRY).decode()
    assert 'pushgrid_dispatches_total{operation="getAlias",outcome="UnknownDevice"}' in text
    assert "process_resident_memory_bytes" in text  # the process's own, from the same registry


class NoClock:
    """Stands in for the time module in servants.py: reading the clock fails the test."""

    @staticmethod
    def perf_counter() -> float:
        raise AssertionError("a dispatch was timed with metrics off")


def test_with_metrics_off_no_dispatch_is_timed_or_counted_and_bad_requests_still_answered(monkeypatch) -> None:
    monkeypatch.setattr(metrics, "ENABLED", False)
    monkeypatch.setattr(servants, "time", NoClock)
    counted = [("getAlias", "ok"), ("getAlias", "UnknownDevice"), ("getAlias", "unreadable"), ("getTags", "ok")]
    before = {key: sample("pushgrid_dispatches_total", operation=key[0], outcome=key[1]) for key in counted}
    timed = sample("pushgrid_dispatch_seconds_count", operation="getTags")
    for prx, devices, table in serving():
        assert table.timed is False
        assert prx.getAlias("dev1") == "alias-of-dev1"  # a clock read would have been an UnknownException
        with pytest.raises(PushGrid.UnknownDevice):
            prx.getAlias("nobody")
        ok, out = prx.ice_invoke("getAlias", Ice.OperationMode.Idempotent, encapsulation(string(b"\xff")))
        assert not ok and b"::PushGrid::InvalidArgument" in out  # the locator's answer does not need metrics
        assert prx.getTags("dev1") == ["later"]
        assert devices.calls == ["dev1", "nobody"]
    assert {key: sample("pushgrid_dispatches_total", operation=key[0], outcome=key[1]) for key in counted} == before
    assert sample("pushgrid_dispatch_seconds_count", operation="getTags") == timed
