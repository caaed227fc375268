"""Property-based fuzzing, a bounded number of examples per run: whatever a device or a caller
sends, the device protocol answers with a frame or a protocol close code, and every operation
of every Slice interface with its result or a named Slice error (never a TypeError, a KeyError
or a hang). The operations' inputs come from slice/ itself (slice_values.py)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import Ice
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glacier2.partner import Backends, PartnerDevicesI, PartnerPushI
from services.common.contract import PushGrid
from services.common.msgid import MsgIdGenerator
from services.dbagent.servant import DBAgentI
from services.push.servant import PushServiceI
from services.stc import framing, protocol
from services.stc.engine import Engine, Settings
from services.stc.protocol import Close
from services.stc.servant import STCI, Identity
from services.tagalias.servant import TagAliasI
from tests.unit import slice_values
from tests.unit.fakes import APP, FakeMailbox
from tests.unit.push_fakes import FakeDB, FakePublisher
from tests.unit.stc_fakes import FakeDirectory, FakeReceipts
from tests.unit.test_dbagent_servant import FakeStore
from tests.unit.test_tagalias_servant import FakeStore as TagAliasStore

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


# ---------------------------------------------------------------- every Slice operation

NOW = 1_800_000_000_000
_LOOP = asyncio.new_event_loop()  # STC's servant hands work to its engine's loop
threading.Thread(target=_LOOP.run_forever, daemon=True).start()


class ShapedStore(FakeStore):
    """DBAgent's FakeStore, answering in the shape the servant reads back where it reads it."""

    def verify_devices(self, items: list[tuple[str, str, str]]) -> list[None]:
        return [None] * len(items)  # one answer per device checked: none verified

    def get_messages(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], PushGrid.MessageRecord]:
        return {}  # none of them found


def _push() -> PushServiceI:
    return PushServiceI(FakeDB(), FakePublisher(), MsgIdGenerator(worker=1, clock=lambda: NOW), clock=lambda: NOW)


def _stc() -> STCI:
    engine = Engine(Settings(stc_id="S"), FakeDirectory(), FakeMailbox(), FakeReceipts())
    return STCI(engine, _LOOP, Identity("S", "n", "ws://x/"))


def _backends() -> Backends:
    """The partner door's backends: the real servants, over fakes of their own stores."""
    return Backends(push=_push(), tagalias=TagAliasI(TagAliasStore()), dbagent=DBAgentI(ShapedStore()))


# Each interface's servant, as its server builds it, over fakes of what it calls. The partner's
# session object takes no input (its three operations have no parameters).
SERVANTS: dict[str, Callable[[], Any]] = {
    "DBAgent": lambda: DBAgentI(ShapedStore()),
    "TagAlias": lambda: TagAliasI(TagAliasStore()),
    "PushService": _push,
    "STC": _stc,
    "PartnerPush": lambda: PartnerPushI(APP, _backends()),
    "PartnerDevices": lambda: PartnerDevicesI(APP, _backends()),
}
OPERATIONS = [(i, op) for i in SERVANTS for op in slice_values.operations(i)]


def test_every_interface_that_takes_input_is_fuzzed() -> None:
    takes_input = {i for i, ops in slice_values.model().interfaces.items() if any(o.params for o in ops)}
    assert takes_input <= set(SERVANTS), takes_input - set(SERVANTS)
    assert len(OPERATIONS) >= 80


@pytest.mark.parametrize("interface,operation", OPERATIONS, ids=[f"{i}.{op}" for i, op in OPERATIONS])
def test_every_operation_answers_or_raises_a_named_error(interface: str, operation: str) -> None:
    """Whatever Slice lets a caller send: an answer, or a PushGridError with a reason; never a
    TypeError, a KeyError or a hang (those reach the caller as UnknownException)."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(slice_values.arguments(interface, operation))
    def run(args: tuple[Any, ...]) -> None:
        servant = SERVANTS[interface]()
        try:
            answer = getattr(servant, operation)(*args)
            if isinstance(answer, Future | Ice.Future):
                answer.result(timeout=10)
        except PushGrid.PushGridError as named:
            assert named.reason, f"{operation}{args!r}: {type(named).__name__} without a reason"

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
