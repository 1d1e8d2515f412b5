"""WebSocket frames as a server writes them: opcodes, close codes and headers (RFC 6455, section 5).

This module knows no server and does no I/O. Servers use it to frame what they send, and everyone uses
:class:`CloseCode` to name close codes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "WHOLE_FRAME_LIMIT",
    "Close",
    "CloseCode",
    "Opcode",
    "fit_close_reason",
    "frame_header",
    "read_frame",
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


# read once here rather than as a global and an attribute twice per frame unmasked
_from_bytes = int.from_bytes

_MASK_REPEATS = 32
"""Payloads up to this many words of 4 bytes (128 bytes: those whose length fits in a frame's second byte)
are unmasked with the tables below (15 KB)."""

_REPEAT = tuple(sum(1 << (32 * word) for word in range(words)) for words in range(_MASK_REPEATS + 1))
"""By a payload's length in words (rounded up): the number that, multiplied by a 4-byte mask read as an
integer, repeats it as many times (no product of two words carries into the next)."""

_LOW_BYTES = tuple((1 << (8 * length)) - 1 for length in range(4 * _MASK_REPEATS + 1))
"""By a payload's length in bytes: the number that keeps that many low bytes of another."""


def unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` with a client's masking undone (RFC 6455, 5.3): each byte XOR'ed with the 4-byte mask."""
    length = len(payload)
    words = (length + 3) >> 2
    if words <= _MASK_REPEATS:
        # the mask repeated by a multiplication and cut to the payload's length, where repeating its bytes
        # makes a bytes object, and cutting the result's another: a frame of 32 bytes in 15% less time
        repeated = _from_bytes(mask, "little") * _REPEAT[words] & _LOW_BYTES[length]
        return (_from_bytes(payload, "little") ^ repeated).to_bytes(length, "little")
    unmasked = _from_bytes(payload, "little") ^ _from_bytes(mask * words, "little")
    return unmasked.to_bytes(4 * words, "little")[:length]


NOT_SIMPLE = -1
"""What :func:`read_frame` returns for a frame it leaves to a full parser, with its errors."""

WHOLE_FRAME_LIMIT = 64 * 1024
"""The largest frame a server waits to have whole before parsing it; a larger one is parsed piece by
piece as it comes, in bytes."""

FIN = 0x80
"""The bit of a frame's first byte that ends a message (RFC 6455, 5.2)."""

RSV = 0x70
"""The bits of a frame's first byte that extensions use (RFC 6455, 5.2; RFC 7692 uses RSV1)."""


def read_frame(data: bytes, start: int) -> tuple[int, int, int, bytes] | int | None:
    """Read the head of a frame as a client must send it: masked, its length minimally encoded (RFC
    6455, 5.2).

    :param data: what was received
    :param start: where the frame starts in ``data``
    :returns: ``(first, payload_start, end, mask)``: the frame's first byte (``FIN``, ``RSV`` and the
        opcode), and its payload at ``data[payload_start:end]`` (perhaps not all received yet), still
        masked with ``mask``; ``None`` if ``data`` holds only part of the head; :data:`NOT_SIMPLE` for a
        frame that breaks the rules (unmasked, a length not minimally encoded or of 2 ** 63 bytes or
        more), which a full parser must refuse
    """
    available = len(data) - start
    if available < 2:
        return None
    second = data[start + 1]
    if second < 0x80:
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
        if length < 0x10000 or length >> 63:
            return NOT_SIMPLE
        head = 14
    if available < head:
        return None
    return data[start], start + head, start + head + length, data[start + head - 4 : start + head]
