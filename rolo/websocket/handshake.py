"""The opening handshake's request, checked as RFC 6455 (section 4.2.1) asks of a server, without I/O.

A server that parses HTTP itself calls :func:`check_request` before any handler sees an upgrade request,
and answers a :class:`Refusal` as it is: a well-formed response with the headers its status requires
(``Allow`` for 405, ``Upgrade`` and ``Sec-WebSocket-Version`` for 426).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus

__all__ = ["SUPPORTED_VERSION", "Refusal", "check_request"]

SUPPORTED_VERSION = "13"
"""The version of the protocol rolo speaks, as the ``Sec-WebSocket-Version`` header names it."""


@dataclass(frozen=True)
class Refusal:
    """The HTTP response that refuses an upgrade request: a status, a plain-text reason for its body, and
    the headers the status requires."""

    status: HTTPStatus
    reason: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def body(self) -> bytes:
        """The body: the reason, as a line of UTF-8."""
        return self.reason.encode("utf-8") + b"\n"


def check_request(method: str, http_version: str, target: str, headers: Iterable[tuple[str, str]]) -> Refusal | None:
    """Why an upgrade request is not a valid opening handshake, or ``None`` if it is one.

    It checks what is the handshake's own: the method and version, and that the WebSocket headers are
    there, once, and well-formed. Routing (``Upgrade: websocket`` and ``Connection: upgrade`` made it an
    upgrade request), ``Host`` and ``Origin`` are checked elsewhere.

    :param method: the request's method, as sent
    :param http_version: ``HTTP/1.1`` or another, as sent
    :param target: the request target, as sent
    :param headers: the request's header fields, names in any case, repeated fields repeated
    """
    if method != "GET":
        return Refusal(HTTPStatus.METHOD_NOT_ALLOWED, "a WebSocket handshake is a GET request", (("Allow", "GET"),))
    if http_version != "HTTP/1.1":
        return Refusal(HTTPStatus.BAD_REQUEST, "a WebSocket upgrade needs HTTP/1.1")
    if "#" in target:
        return Refusal(HTTPStatus.BAD_REQUEST, "a WebSocket URI has no fragment")
    # one pass over the fields, for the few that are the handshake's; then each checked in turn
    versions: list[str] = []
    keys: list[str] = []
    origins = 0
    offered: list[str] = []
    for name, value in headers:
        field = name.lower()
        if field == "sec-websocket-version":
            versions.append(value)
        elif field == "sec-websocket-key":
            keys.append(value)
        elif field == "origin":
            origins += 1
        elif field == "sec-websocket-protocol":
            offered += (token.strip() for token in value.split(","))

    if len(versions) != 1:
        return Refusal(HTTPStatus.BAD_REQUEST, "a WebSocket handshake needs one Sec-WebSocket-Version header")
    if versions[0].strip() != SUPPORTED_VERSION:
        required = (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", SUPPORTED_VERSION))
        return Refusal(HTTPStatus.UPGRADE_REQUIRED, f"WebSocket version {SUPPORTED_VERSION} only", required)

    if len(keys) != 1:
        return Refusal(HTTPStatus.BAD_REQUEST, "a WebSocket handshake needs one Sec-WebSocket-Key header")
    try:
        nonce = b64decode(keys[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        nonce = b""
    if len(nonce) != 16:
        return Refusal(HTTPStatus.BAD_REQUEST, "Sec-WebSocket-Key is not 16 bytes in base64")

    if origins > 1:
        return Refusal(HTTPStatus.BAD_REQUEST, "more than one Origin header")
    if offered:
        offered = [token for token in offered if token]
        if len(offered) != len(set(offered)):
            return Refusal(HTTPStatus.BAD_REQUEST, "a subprotocol is offered twice in Sec-WebSocket-Protocol")
    return None
