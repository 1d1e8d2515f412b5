"""WebSocket frames as a server writes them: opcodes, close codes and headers (RFC 6455, section 5).

This module knows no server and does no I/O. Servers use it to frame what they send, and everyone uses
:class:`CloseCode` to name close codes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "Close",
    "CloseCode",
    "Opcode",
    "fit_close_reason",
    "frame_header",
    "read_data_frame",
    "unmask",
]


class Opcode(enum.IntEnum):
    """The frame opcodes of RFC 6455, section 5.2."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """The close codes of RFC 6455, section 7.4.1, and of the IANA registry it set up.

    1005, 1006 and 1015 never appear in a close frame: they only report how a connection ended.
    """

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


@dataclass(frozen=True)
class Close:
    """What a close frame said: its code and its reason (``""`` when it gave none)."""

    code: int
    reason: str = ""

    def __str__(self) -> str:
        try:
            name = CloseCode(self.code).name.lower().replace("_", " ")
        except ValueError:
            name = "application code"
        return f"{self.code} ({name})" + (f" {self.reason!r}" if self.reason else "")


MAX_CLOSE_REASON_BYTES = 123
"""A close frame's payload is at most 125 bytes, two of which hold the code (RFC 6455, section 5.5)."""


def fit_close_reason(reason: str | None) -> str | None:
    """``reason`` cut to what a close frame holds, at a character boundary (it must stay valid UTF-8)."""
    if reason is None:
        return None
    return reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


def frame_header(opcode: int, length: int, compressed: bool = False) -> bytes:
    """The header of a final, unmasked frame of ``length`` payload bytes: a server's (RFC 6455, 5.2).

    :param opcode: the frame's :class:`Opcode`
    :param length: the payload's length in bytes
    :param compressed: sets RSV1, which marks a message compressed by permessage-deflate (RFC 7692, 6)
    """
    first = 0x80 | (0x40 if compressed else 0) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` with a client's masking undone (RFC 6455, 5.3): each byte XOR'ed with the 4-byte mask."""
    words = (len(payload) + 3) // 4
    unmasked = int.from_bytes(payload, "little") ^ int.from_bytes(mask * words, "little")
    return unmasked.to_bytes(4 * words, "little")[: len(payload)]


NOT_SIMPLE = -1
"""What :func:`read_data_frame` returns for a frame it leaves to a full parser."""

WHOLE_FRAME_LIMIT = 64 * 1024
"""The largest frame :func:`read_data_frame` waits to have whole, in bytes."""


def read_data_frame(data: bytes, start: int, max_size: int) -> tuple[int, int, int, bytes] | int | None:
    """Read the commonest frame a server receives: a whole data message in one frame, masked as a client
    must, with no extension bits (RFC 6455, 5.2).

    :param data: what was received
    :param start: where the frame starts in ``data``
    :param max_size: the largest payload taken, in bytes (``0``: no limit)
    :returns: ``(opcode, payload_start, end, mask)`` with the payload at ``data[payload_start:end]``, still
        masked; ``None`` if ``data`` holds only part of such a frame, of at most :data:`WHOLE_FRAME_LIMIT`
        bytes; :data:`NOT_SIMPLE` for any other frame (a control frame, a fragment, a compressed or
        unmasked frame, one over ``max_size``, one whose length is not minimally encoded, a larger one
        not yet whole), which a full parser must take, errors included
    """
    available = len(data) - start
    if available < 2:
        return None
    first, second = data[start], data[start + 1]
    if first not in (0x81, 0x82) or second < 0x80:  # FIN, no RSV, text or binary; masked
        return NOT_SIMPLE
    length = second & 0x7F
    head = 6
    if length == 126:
        if available < 4:
            return None
        length = int.from_bytes(data[start + 2 : start + 4], "big")
        if length < 126:
            return NOT_SIMPLE
        head = 8
    elif length == 127:
        if available < 10:
            return None
        length = int.from_bytes(data[start + 2 : start + 10], "big")
        if length < 0x10000:
            return NOT_SIMPLE
        head = 14
    if 0 < max_size < length or length >> 63:
        return NOT_SIMPLE
    end = start + head + length
    if len(data) < end:
        # a large frame is better parsed piece by piece as it comes than gathered whole first
        return None if length <= WHOLE_FRAME_LIMIT else NOT_SIMPLE
    return first & 0x0F, start + head, end, data[start + head - 4 : start + head]
