"""Property-based fuzzing, a bounded number of examples per run: whatever a device or a caller
sends, the device protocol answers with a frame or a protocol close code, and DBAgent's
operations with their result or a named Slice error (never a TypeError, a KeyError or a hang)."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.contract import PushGrid
from services.dbagent import servant as dbagent_servant
from services.dbagent.servant import DBAgentI
from services.stc import framing, protocol
from services.stc.protocol import Close
from tests.unit.fakes import APP
from tests.unit.test_dbagent_servant import FakeStore

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
OPS = st.sampled_from(["hello", "register", "ack", "ping", "msg", "", "HELLO"])
FIELDS = st.sampled_from(["op", "app_key", "registration_id", "device_token", "platform", "msg_ids", "sdk"])


# ---------------------------------------------------------------- the device protocol


def _parsed_or_bad(text: str) -> None:
    try:
        frame = protocol.parse(text)
    except protocol.BadFrame as bad:
        assert bad.code == Close.BAD_FRAME and bad.reason
    else:
        assert isinstance(frame, protocol.Register | protocol.Hello | protocol.Ack | protocol.Ping)


@EXAMPLES
@given(st.text(max_size=500))
def test_any_text_is_a_frame_or_a_bad_frame(text: str) -> None:
    _parsed_or_bad(text)


@EXAMPLES
@given(OPS, st.dictionaries(FIELDS, JSON, max_size=6))
def test_any_json_object_is_a_frame_or_a_bad_frame(op: str, fields: dict[str, Any]) -> None:
    _parsed_or_bad(json.dumps({"op": op, **fields}))


def _client_frame(payload: bytes, opcode: int, mask: bytes, fin: bool = True) -> bytes:
    """A masked frame as a device sends it (RFC 6455 section 5.2)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@EXAMPLES
@given(st.binary(max_size=300), st.integers(1, 400))
def test_any_bytes_are_a_frame_a_wait_or_a_violation(buf: bytes, frame_max: int) -> None:
    try:
        found = framing.next_frame(buf, frame_max)
    except framing.ProtocolViolation as violation:
        assert violation.code in (1002, 1009) and violation.reason
    else:
        if found is not None:
            _fin, _opcode, payload, used = found
            assert 0 < used <= len(buf) and len(payload) <= frame_max


@EXAMPLES
@given(st.binary(max_size=70_000), st.binary(min_size=4, max_size=4), st.sampled_from([0x1, 0x2, 0x8, 0x9, 0xA]))
def test_a_devices_masked_frame_reads_back_whole(payload: bytes, mask: bytes, opcode: int) -> None:
    wire = _client_frame(payload, opcode, mask)
    assert framing.next_frame(wire + b"next", len(payload) + 1) == (True, opcode, payload, len(wire))
    assert framing.next_frame(wire[:-1], len(payload) + 1) is None or len(payload) == 0


@EXAMPLES
@given(st.binary(max_size=2000))
def test_any_request_head_is_a_request_or_a_value_error(head: bytes) -> None:
    try:
        framing.parse_request(head)
    except ValueError:
        pass


# ---------------------------------------------------------------- every DBAgent operation


TEXT = st.none() | st.text(max_size=300) | st.sampled_from(["f" * 24, "0" * 24, "", " ", "\x00", "a" * 10_000])
INT = st.integers(-(2**63), 2**63 - 1)


def _strategy(hint: Any) -> st.SearchStrategy[Any] | None:
    """Inputs of a Slice type as a caller could send them; None for a struct (not fuzzed here)."""
    if hint is str:
        return TEXT
    if hint is int:
        return INT
    if hint is bool:
        return st.booleans()
    if hint is PushGrid.Platform:
        return st.none() | st.sampled_from(list(PushGrid.Platform._enumerators.values()))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, Sequence) or origin is typing.get_origin(Sequence[int]):
        inner = _strategy(args[0]) if args else None
        return None if inner is None else st.none() | st.lists(inner, max_size=30)
    return None


def _operations() -> list[tuple[str, list[st.SearchStrategy[Any]]]]:
    ops = []
    for name, fn in inspect.getmembers(DBAgentI, inspect.isfunction):
        if name.startswith("_") or name.startswith("ice_"):
            continue
        hints = typing.get_type_hints(fn, vars(dbagent_servant))
        params = [p for p in inspect.signature(fn).parameters if p not in ("self", "current")]
        strategies = [_strategy(hints.get(p)) for p in params]
        if all(s is not None for s in strategies):
            ops.append((name, typing.cast(list[st.SearchStrategy[Any]], strategies)))
    return ops


OPERATIONS = _operations()


def test_the_fuzzer_reaches_most_operations() -> None:
    assert len(OPERATIONS) >= 20, [name for name, _ in OPERATIONS]


@pytest.mark.parametrize("name,strategies", OPERATIONS, ids=[name for name, _ in OPERATIONS])
def test_every_dbagent_operation_answers_or_raises_a_named_error(name: str, strategies: list[Any]) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.tuples(*strategies))
    def run(args: tuple[Any, ...]) -> None:
        servant = DBAgentI(FakeStore())
        try:
            answer = getattr(servant, name)(*args)
            if isinstance(answer, Future):
                answer.result(timeout=10)
        except PushGrid.PushGridError as named:
            assert named.reason, f"{name}{args!r}: {type(named).__name__} without a reason"

    run()


# ---------------------------------------------------------------- STC's transport, on a socket

HANDSHAKE = (
    b"GET /v1/device HTTP/1.1\r\nHost: stc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
CLOSE_CODES = {int(c) for c in Close} | {1002}
HELLO = json.dumps({"op": "hello", "app_key": APP, "registration_id": "r1", "device_token": "good"}).encode()
DEVICE_BYTES = st.one_of(
    st.binary(max_size=200),  # garbage where a frame should be
    st.lists(  # well-framed frames of any opcode and payload, valid JSON or not
        st.tuples(
            st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xF]),
            st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()) | st.just(HELLO),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    ).map(lambda frames: b"".join(_client_frame(p, op, b"\x01\x02\x03\x04", fin) for op, p, fin in frames)),
)


def _close_code(data: bytes) -> int | None:
    """The code of the first close frame in what the server sent after its handshake answer."""
    rest = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    while len(rest) >= 2:
        opcode, n = rest[0] & 0x0F, rest[1] & 0x7F
        at = 2 + (2 if n == 126 else 8 if n == 127 else 0)
        if n >= 126:
            n = int.from_bytes(rest[2:at], "big")
        if opcode == 0x8:
            return int.from_bytes(rest[at : at + 2], "big") if n >= 2 else 1005
        rest = rest[at + n :]
    return None


def test_any_bytes_from_a_device_end_in_a_protocol_close_code_and_the_server_goes_on() -> None:
    import asyncio
    import threading

    from services.stc.engine import Engine, Settings
    from services.stc.transport import DeviceLimits, Transport
    from tests.unit.fakes import FakeMailbox
    from tests.unit.stc_fakes import FakeDirectory, FakeReceipts

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    directory = FakeDirectory()
    directory.add("r1")
    engine = Engine(Settings(stc_id="STC-fuzz"), directory, FakeMailbox(), FakeReceipts())
    transport = Transport(engine, "127.0.0.1", 0, DeviceLimits(auth_timeout=5, frames_per_second=1000))
    asyncio.run_coroutine_threadsafe(transport.start(), loop).result(10)
    codes: list[int | None] = []

    async def exchange(sent: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", transport.port)
        writer.write(HANDSHAKE + sent)
        got = b""
        try:
            async with asyncio.timeout(0.2):
                while chunk := await reader.read(65536):
                    got += chunk
        except TimeoutError:
            pass  # still open: it waits for the rest of a frame, or for more frames
        writer.close()
        return got

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(DEVICE_BYTES)
    def one_device(sent: bytes) -> None:
        got = asyncio.run_coroutine_threadsafe(exchange(sent), loop).result(10)
        assert got.startswith(b"HTTP/1.1 101"), got[:80]
        code = _close_code(got)
        assert code is None or code in CLOSE_CODES, (sent[:80], code)
        codes.append(code)

    try:
        one_device()
        assert any(c is not None and c != 1000 for c in codes)  # the fuzzer did reach the closing paths
        survived = asyncio.run_coroutine_threadsafe(exchange(_client_frame(HELLO, 0x1, b"abcd")), loop).result(10)
        assert b'"op":"welcome"' in survived.replace(b" ", b"")  # a good device still gets in
    finally:
        asyncio.run_coroutine_threadsafe(transport.close(timeout=2), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
