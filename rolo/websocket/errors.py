"""The errors a WebSocket handler may see."""

from __future__ import annotations

__all__ = ["WebSocketError", "WebSocketDisconnectedError", "WebSocketProtocolError"]


class WebSocketError(IOError):
    """Base class of the WebSocket errors."""


class WebSocketDisconnectedError(WebSocketError):
    """The connection is closed: by the peer, by the handler, or because it was lost.

    ``code`` is the close code (1006 when the connection was lost without a closing handshake) and
    ``reason`` the close reason the peer gave, if any.
    """

    def __init__(self, code: int | None = None, reason: str | None = None) -> None:
        super().__init__(f"WebSocket is closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


class WebSocketProtocolError(WebSocketError):
    """Something was asked of the connection that the WebSocket protocol does not allow."""
