"""The WebSocket upgrade request a handler accepts or rejects."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Mapping

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Response as _WerkzeugResponse

from rolo.request import Request

from .adapter import WEBSOCKET_KEY, CreateConnection, WebSocketAdapter, WebSocketEnvironment, WebSocketListener
from .errors import WebSocketProtocolError, WebSocketStateError
from .websocket import WebSocket

__all__ = ["WebSocketRequest"]


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
        :raises ValueError: if ``subprotocol`` was not offered
        :raises WebSocketDisconnectedError: if the client went away before the handshake completed
        """
        self._decide(_Outcome.UPGRADED)
        if subprotocol is not None and subprotocol not in self.subprotocols:
            self._outcome = _Outcome.PENDING
            raise ValueError(f"subprotocol {subprotocol!r} was not offered (offered: {self.subprotocols})")
        event = self._adapter.receive(timeout)
        if not isinstance(event, CreateConnection):
            raise WebSocketProtocolError(f"expected the opening handshake, got {event!r}")
        self._adapter.accept(subprotocol, list(Headers(headers).items()) if headers else [], timeout)
        self._websocket = WebSocket(self._adapter)
        return self._websocket

    def reject(self, response: _WerkzeugResponse) -> None:
        """Answer with ``response`` (status, headers and body exactly) instead of upgrading, then close.

        :raises WebSocketStateError: (a ``ValueError``) if the request was accepted or rejected already
        """
        self._decide(_Outcome.REJECTED)
        # the body is read here, in the handler's thread, so a streamed body never blocks the server
        body = response.get_data()
        self._adapter.reject(response.status_code, list(response.headers.items()), body)
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

    def _decide(self, outcome: _Outcome) -> None:
        if self._outcome is not _Outcome.PENDING:
            raise WebSocketStateError(f"the request was {self._outcome.value} already")
        self._outcome = outcome

    @classmethod
    def listener(cls, fn: Callable[[WebSocketRequest], None]) -> WebSocketListener:
        """Turn ``fn(request)`` (for example :meth:`rolo.gateway.Gateway.accept`) into a listener that a
        server calls with each upgrade request's environment."""

        @functools.wraps(fn)
        def listen(environ: WebSocketEnvironment) -> None:
            fn(cls(environ))

        return listen
