"""The errors a WebSocket handler may see.

::

    WebSocketError (an OSError)
    ├── WebSocketDisconnectedError   the connection is closed; says who closed it and with what
    └── WebSocketProtocolError       something the WebSocket protocol does not allow was asked for
        └── WebSocketStateError      ... in the connection's present state (also a ValueError)
"""

from __future__ import annotations

from .frames import Close, CloseCode

__all__ = ["WebSocketDisconnectedError", "WebSocketError", "WebSocketProtocolError", "WebSocketStateError"]


class WebSocketError(IOError):
    """Base class of the WebSocket errors."""


class WebSocketDisconnectedError(WebSocketError):
    """The connection is closed: by the peer, by the server (its handler, a shutdown, a
    :class:`~rolo.websocket.Hub`), or because it was lost.

    :ivar code: how the connection ended: the code of the peer's close frame when one came
        (:attr:`received`; ``1005``, :attr:`CloseCode.NO_STATUS_RCVD`, for a frame without a code, as RFC
        6455, section 7.1.5 reports it), otherwise ``1006`` (:attr:`CloseCode.ABNORMAL_CLOSURE`): it ended
        without one
    :ivar reason: the reason of the peer's close frame (``None`` without one)
    :ivar received: the peer's close frame, or ``None`` if none came
    :ivar sent: the server's close frame, or ``None`` if it sent none
    :ivar closed_by: ``"peer"`` if the peer's close frame came first, ``"server"`` if the server's went
        first, ``None`` if the connection was lost before either

    What a server can know differs. On Twisted all of it is known. Under ASGI only what the ASGI server
    reports: uvicorn reports a peer that vanished as ``1005`` (no status received), and hypercorn reports
    a close the peer started as ``1006`` without its code; :attr:`sent` is what the application asked the
    ASGI server to send.
    """

    def __init__(
        self,
        code: int | None = None,
        reason: str | None = None,
        *,
        received: Close | None = None,
        sent: Close | None = None,
        closed_by: str | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.received = received
        self.sent = sent
        self.closed_by = closed_by
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.closed_by == "server" and self.sent is not None:
            replied = f", and the peer replied {self.received}" if self.received else ", and the peer did not reply"
            return f"WebSocket closed by the server with {self.sent}{replied}"
        if self.closed_by == "peer" and self.received is not None:
            replied = f", and the server replied {self.sent}" if self.sent else ""
            return f"WebSocket closed by the peer with {self.received}{replied}"
        if self.code == CloseCode.ABNORMAL_CLOSURE and self.received is None:
            return "WebSocket lost: the connection ended without a closing handshake (code 1006)"
        return f"WebSocket is closed (code={self.code}, reason={self.reason!r})"


class WebSocketProtocolError(WebSocketError):
    """Something was asked of the connection that the WebSocket protocol does not allow, such as sending
    what is neither text nor bytes."""


class WebSocketStateError(WebSocketProtocolError, ValueError):
    """The connection is not in a state for what was asked: accepting or rejecting a request twice, or
    sending before accepting. It is also a :class:`ValueError`, as rolo raises for these."""
