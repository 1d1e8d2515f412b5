"""The WebSocket upgrade request a handler accepts or rejects."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable, Mapping

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Response as _WerkzeugResponse

from rolo.request import Request

from .adapter import WEBSOCKET_KEY, CreateConnection, WebSocketAdapter, WebSocketEnvironment, WebSocketListener
from .errors import WebSocketProtocolError, WebSocketStateError
from .websocket import WebSocket

__all__ = ["WebSocketRequest"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A field name: a token (RFC 9110, 5.1 and 5.6.2)."""

_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
"""A field value: visible characters, spaces and tabs, and obs-text (RFC 9110, 5.5); nothing a line break
could hide in, and nothing beyond Latin-1, the only text HTTP/1.1 carries."""


def _checked_fields(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` as a list, each checked to be a valid header field for a response, so that a handler's
    mistake fails in its own thread rather than splitting or stalling the response the server writes.

    :raises ValueError: naming the field, for a name that is not a token or a value with a control
        character or a character beyond Latin-1
    """
    fields = list(headers)
    for name, value in fields:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"not a valid header name: {name!r}")
        if not _FIELD_VALUE.fullmatch(value):
            raise ValueError(f"not a valid value for the header {name}: {value!r}")
    return fields


class _Outcome(enum.Enum):
    PENDING = "pending"
    UPGRADED = "upgraded"
    REJECTED = "rejected"


class WebSocketRequest(Request):
    """A WebSocket upgrade request. Its method is ``WEBSOCKET``, so routes with ``methods=["WEBSOCKET"]``
    match it; otherwise it is a :class:`rolo.Request` with the headers, path, arguments and peer of the
    handshake.

    The handler must either :meth:`accept` it, which opens the connection and returns a
    :class:`~rolo.websocket.WebSocket`, or :meth:`reject` it with an HTTP response.
    """

    def __init__(self, environ: WebSocketEnvironment) -> None:
        environ["REQUEST_METHOD"] = "WEBSOCKET"
        super().__init__(environ)
        self._adapter: WebSocketAdapter = environ[WEBSOCKET_KEY]
        self._outcome = _Outcome.PENDING
        self._websocket: WebSocket | None = None

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered in ``Sec-WebSocket-Protocol``, in its order of preference."""
        offered = ",".join(self.headers.getlist("Sec-WebSocket-Protocol"))
        return [token.strip() for token in offered.split(",") if token.strip()]

    def accept(
        self,
        subprotocol: str | None = None,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        timeout: float | None = None,
    ) -> WebSocket:
        """Complete the opening handshake and return the open connection.

        :param subprotocol: the subprotocol to speak; it must be one the client offered
        :param headers: extra headers for the ``101 Switching Protocols`` response
        :param timeout: how long to wait for the handshake to complete, in seconds
        :raises WebSocketStateError: (a ``ValueError``) if the request was accepted or rejected already
        :raises ValueError: if ``subprotocol`` was not offered, or a header is not a valid field (RFC 9110,
            5.1 and 5.5: a name that is not a token, a value with a control character or beyond Latin-1)
        :raises WebSocketDisconnectedError: if the client went away before the handshake completed
        """
        self._check_pending()
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered (offered: {self.subprotocols})")
        fields = _checked_fields(Headers(headers).items() if headers else ())
        self._outcome = _Outcome.UPGRADED
        event = self._adapter.receive(timeout)
        if not isinstance(event, CreateConnection):
            raise WebSocketProtocolError(f"expected the opening handshake, got {event!r}")
        self._adapter.accept(subprotocol, fields, timeout)
        self._websocket = WebSocket(self._adapter)
        return self._websocket

    def reject(self, response: _WerkzeugResponse) -> None:
        """Answer with ``response`` (status, headers and body exactly) instead of upgrading, then close. The
        server adds the headers it adds to every response (``Date``, ``Server``) where ``response`` has none.

        :raises WebSocketStateError: (a ``ValueError``) if the request was accepted or rejected already
        :raises ValueError: if a header of ``response`` is not a valid field (see :meth:`accept`)
        """
        self._check_pending()
        fields = _checked_fields(response.headers.items())
        self._outcome = _Outcome.REJECTED
        # the body is read here, in the handler's thread, so a streamed body never blocks the server
        body = response.get_data()
        self._adapter.reject(response.status_code, fields, body)
        response.close()

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection if it was accepted; a request neither accepted nor rejected is left alone."""
        if self._websocket is not None:
            self._websocket.close(code, reason)

    def is_upgraded(self) -> bool:
        """Whether :meth:`accept` was called."""
        return self._outcome is _Outcome.UPGRADED

    def is_rejected(self) -> bool:
        """Whether :meth:`reject` was called."""
        return self._outcome is _Outcome.REJECTED

    def _check_pending(self) -> None:
        if self._outcome is not _Outcome.PENDING:
            raise WebSocketStateError(f"the request was {self._outcome.value} already")

    @classmethod
    def listener(cls, fn: Callable[[WebSocketRequest], None]) -> WebSocketListener:
        """Turn ``fn(request)`` (for example :meth:`rolo.gateway.Gateway.accept`) into a listener that a
        server calls with each upgrade request's environment."""

        @functools.wraps(fn)
        def listen(environ: WebSocketEnvironment) -> None:
            fn(cls(environ))

        return listen
