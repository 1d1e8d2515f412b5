"""WebSockets: the upgrade request a handler accepts or rejects, and the connection it then talks to.

A handler registered with ``methods=["WEBSOCKET"]`` receives a :class:`WebSocketRequest`::

    @route("/echo/<name>", methods=["WEBSOCKET"])
    def handler(request: WebSocketRequest, name: str) -> None:
        with request.accept() as websocket:
            for line in websocket:
                websocket.send(f"echo: {line}")

A :class:`Hub` lets any thread push to open connections, by id or by named group; with a
:class:`RedisBroker`, those of every process that shares it.

Servers plug in below this API through :mod:`rolo.websocket.adapter`.
"""

from .adapter import (
    WEBSOCKET_KEY,
    BytesMessage,
    CreateConnection,
    TextMessage,
    WebSocketAdapter,
    WebSocketEnvironment,
    WebSocketListener,
)
from .broker import BrokerError, RedisBroker
from .errors import WebSocketDisconnectedError, WebSocketError, WebSocketProtocolError
from .hub import Delivery, Hub
from .origins import OriginPolicy
from .request import WebSocketRequest
from .websocket import Received, WebSocket

__all__ = [
    "WEBSOCKET_KEY",
    "BrokerError",
    "BytesMessage",
    "CreateConnection",
    "Delivery",
    "Hub",
    "OriginPolicy",
    "Received",
    "RedisBroker",
    "TextMessage",
    "WebSocket",
    "WebSocketAdapter",
    "WebSocketDisconnectedError",
    "WebSocketEnvironment",
    "WebSocketError",
    "WebSocketListener",
    "WebSocketProtocolError",
    "WebSocketRequest",
]
