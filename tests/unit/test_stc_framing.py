"""WebSocket framing without sockets: the handshake answer, frames out, a device's frames in."""

from __future__ import annotations

import os

import pytest

from services.stc import framing


def masked(payload: bytes, opcode: int = framing.TEXT, fin: bool = True, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    """A client frame as a device sends it."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_the_handshake_answers_with_the_rfc_accept_token() -> None:
    head = (
        b"GET /v1/device?x=1 HTTP/1.1\r\nHost: stc\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
    )
    request = framing.parse_request(head)
    assert (request.method, request.path, request.wants_websocket) == ("GET", "/v1/device", True)
    answer = framing.accept(request)
    assert answer.startswith(b"HTTP/1.1 101 ") and answer.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer  # RFC 6455 section 1.3's example
    plain = framing.parse_request(b"GET /device.js HTTP/1.1\r\nHost: stc")
    assert plain.path == "/device.js" and not plain.wants_websocket
    for bad in (b"GET /\r\nHost: x", b"HELLO", b"GET / HTTP/1.1\r\nno colon here"):
        with pytest.raises(ValueError):
            framing.parse_request(bad)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_round_trip_at_every_length_encoding(size: int) -> None:
    payload = os.urandom(size)
    out = framing.frame(payload)
    assert out[0] == 0x81 and out.endswith(payload)
    assert len(out) - size == (2 if size < 126 else 4 if size < 65536 else 10)
    # the same bytes, masked as a client would send them, read back whole
    got = framing.next_frame(masked(payload), 1 << 20)
    assert got is not None and got[:3] == (1, framing.TEXT, payload) and got[3] == len(masked(payload))


def test_a_frame_is_read_only_once_whole_and_then_the_next_one() -> None:
    two = masked(b'{"op":"ping"}') + masked(b"bye", framing.CLOSE)
    for cut in range(1, len(masked(b'{"op":"ping"}'))):
        assert framing.next_frame(two[:cut], 8192) is None
    fin, opcode, payload, used = framing.next_frame(two, 8192)  # type: ignore[misc]
    assert (fin, opcode, payload) == (1, framing.TEXT, b'{"op":"ping"}')
    assert framing.next_frame(two[used:], 8192)[:3] == (1, framing.CLOSE, b"bye")  # type: ignore[index]
    assert framing.next_frame(masked(b"part", fin=False), 8192)[0] == 0  # type: ignore[index]


def test_frames_that_break_the_rules_name_their_close_code() -> None:
    with pytest.raises(framing.ProtocolViolation) as e:
        framing.next_frame(framing.frame(b"unmasked"), 8192)
    assert e.value.code == 1002
    with pytest.raises(framing.ProtocolViolation) as e:
        framing.next_frame(bytes((0xC1,)) + masked(b"x")[1:], 8192)  # RSV1 without an extension
    assert e.value.code == 1002
    with pytest.raises(framing.ProtocolViolation) as e:
        framing.next_frame(masked(b"x" * 9000)[:20], 8192)  # refused from its header alone
    assert e.value.code == 1009


def test_close_frames_carry_the_code_and_a_short_reason() -> None:
    out = framing.close_frame(4001, "é" * 100)
    assert out[0] == 0x88 and int.from_bytes(out[2:4], "big") == 4001 and len(out) == 2 + 2 + 123
    assert framing.unmask(b"", b"abcd") == b""
    assert framing.unmask(framing.unmask(b"hello world", b"abcd"), b"abcd") == b"hello world"


def test_http_answers_close_the_connection_and_say_their_length() -> None:
    out = framing.response(404, "Not Found", b"not found\n")
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n") and b"Content-Length: 10\r\n" in out
    assert b"Connection: close\r\n" in out and out.endswith(b"\r\n\r\nnot found\n")


def test_a_devices_close_code_is_echoed_unless_no_endpoint_may_send_it() -> None:
    assert framing.close_code(b"") == 1000
    assert framing.close_code((1001).to_bytes(2, "big") + b"bye") == 1001
    assert framing.close_code((4321).to_bytes(2, "big")) == 4321
    for bad in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535):
        with pytest.raises(framing.ProtocolViolation) as err:
            framing.close_code(bad.to_bytes(2, "big"))
        assert err.value.code == 1002, bad
    with pytest.raises(framing.ProtocolViolation) as one_byte:
        framing.close_code(b"\x03")
    assert one_byte.value.code == 1002
    with pytest.raises(framing.ProtocolViolation) as not_utf8:
        framing.close_code((1000).to_bytes(2, "big") + b"\xff")
    assert not_utf8.value.code == 1007


@pytest.mark.parametrize(
    "first_byte,length", [(0x08, 2), (0x09, 0), (0x89, 126)]
)  # unfinished close or ping; a long ping
def test_a_control_frame_must_be_final_and_short(first_byte: int, length: int) -> None:
    wire = bytes([first_byte, 0x80 | min(length, 126)]) + (length.to_bytes(2, "big") if length >= 126 else b"")
    with pytest.raises(framing.ProtocolViolation) as err:
        framing.next_frame(wire + b"\x00" * (4 + length), 1000)
    assert err.value.code == 1002
