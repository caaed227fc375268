"""WebSocket framing (RFC 6455) as STC needs it: the opening handshake, a device's frames in,
server frames out. Pure functions over bytes, so they are read and tested apart from sockets.

Only what the device protocol uses is accepted: masked client frames, text in one frame, ping,
pong and close. Everything else is a ProtocolViolation naming the close code PROTOCOL.md gives
it. A server frame is not masked, so one message framed once is the same bytes for every device.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
HEAD_MAX_BYTES = 8192  # an opening handshake larger than this is refused


class ProtocolViolation(Exception):
    """A peer broke the framing rules; code is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Request:
    """An HTTP request head: the method, the path without its query, and headers by lower-case name."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def wants_websocket(self) -> bool:
        return (
            self.headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in self.headers.get("connection", "").lower()
            and bool(self.headers.get("sec-websocket-key"))
        )


def parse_request(head: bytes) -> Request:
    """The request head up to (not including) the blank line; ValueError if it is not HTTP/1.1."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("not an HTTP/1.1 request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError("a header line without a colon")
        headers[name.strip().lower()] = value.strip()
    return Request(parts[0], parts[1].split("?", 1)[0], headers)


def accept(request: Request) -> bytes:
    """The 101 answer that opens a WebSocket for request (RFC 6455 section 4.2.2)."""
    key = request.headers["sec-websocket-key"].encode("latin-1")
    token = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
        + token
        + b"\r\n\r\n"
    )


def response(status: int, reason: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A whole HTTP response that closes the connection (the web device page, errors)."""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """A final, unmasked server frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with its code and at most 123 bytes of reason."""
    return frame(code.to_bytes(2, "big") + reason.encode("utf-8")[:123], CLOSE)


def close_code(payload: bytes) -> int:
    """The code of a device's close frame, to echo (1000 if it gave none). ProtocolViolation for
    a code no endpoint may send (1002, RFC 6455 section 7.4) or a reason that is not UTF-8 (1007)."""
    if not payload:
        return 1000
    if len(payload) == 1:
        raise ProtocolViolation(1002, "a close code takes two bytes")
    code = int.from_bytes(payload[:2], "big")
    if not (1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999):
        raise ProtocolViolation(1002, f"close code {code} may not be sent")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(1007, "a close reason must be UTF-8") from None
    return code


def unmask(data: bytes, mask: bytes) -> bytes:
    """data XOR the repeated 4-byte mask, as one big-integer operation (no loop per byte)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def next_frame(buf: bytes | bytearray, frame_max: int) -> tuple[int, int, bytes, int] | None:
    """The first whole frame of buf: (fin, opcode, unmasked payload, bytes it took), or None if
    more bytes are needed. Raises ProtocolViolation for an unmasked frame (1002), reserved bits
    (1002), a control frame fragmented or over 125 bytes (1002) or a payload over frame_max (1009)."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    if b0 & 0x70:
        raise ProtocolViolation(1002, "reserved bits set")
    if not b1 & 0x80:
        raise ProtocolViolation(1002, "a client frame must be masked")
    if b0 & 0x08 and (not b0 & 0x80 or b1 & 0x7F > 125):  # RFC 6455 section 5.5
        raise ProtocolViolation(1002, "a control frame must be final and at most 125 bytes")
    n, at = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = int.from_bytes(buf[2:10], "big"), 10
    if n > frame_max:
        raise ProtocolViolation(1009, f"frames are at most {frame_max} bytes")
    end = at + 4 + n
    if len(buf) < end:
        return None
    return b0 >> 7, b0 & 0x0F, unmask(bytes(buf[at + 4 : end]), bytes(buf[at : at + 4])), end
