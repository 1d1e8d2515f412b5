"""The WebSocket object a handler talks to once it has accepted a connection."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from .adapter import BytesMessage, Message, TextMessage, WebSocketAdapter
from .errors import WebSocketDisconnectedError, WebSocketProtocolError
from .frames import CloseCode
from .threaded import offer_each as offer_each_adapters

__all__ = ["INTERNAL_ERROR_REASON", "Received", "WebSocket", "message_for", "offer_each"]

INTERNAL_ERROR_REASON = "internal error"
"""The reason of the close frame (1011) that a handler's error ends its connection with."""


Received = str | Any
"""What :meth:`WebSocket.receive` returns and iterating over a :class:`WebSocket` yields: a ``str`` for a
text message, ``bytes`` for a binary one.

A type checker cannot know which of the two a peer sends. Typed ``str | bytes``, every use of a message would
need an ``isinstance`` first, even in a handler that only ever talks text (``mypy --strict`` rejects
``f"echo: {message}"``, as it would format a binary message as ``b'...'``). So it is typed ``str | Any``, as
typeshed types :meth:`re.Match.group`: code written for text type-checks as such, and code that needs
``bytes`` narrows first (``isinstance(message, bytes)``), as it must, since a peer may send text.
"""


def message_for(data: str | bytes) -> Message:
    """The message that sends ``data``: text for ``str``, binary for ``bytes``.

    :raises WebSocketProtocolError: if ``data`` is neither ``str`` nor ``bytes``
    :raises UnicodeEncodeError: if ``data`` is a ``str`` that has no UTF-8 form (a lone surrogate, as
        ``"\\ud800"``), which a text message must have
    """
    if isinstance(data, str):
        if not data.isascii():
            # checked here, where the handler can be told: the server encodes it later, elsewhere
            data.encode("utf-8")
        return TextMessage(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return BytesMessage(bytes(data))
    raise WebSocketProtocolError(f"can only send str or bytes, not {type(data).__name__}")


def offer_each(
    websockets: Sequence[WebSocket], message: Message
) -> tuple[list[bool | WebSocketDisconnectedError], Callable[[], None]]:
    """Send a message made by :func:`message_for` on each connection that has room for it now, without
    waiting for any (a broadcast): the server is handed the sends of all at once, when the caller calls
    the ``hand_over`` returned (best just before it blocks), and frames the message once.

    :returns: ``(outcomes, hand_over)``: for each connection, in order, ``True`` if it took the message,
        ``False`` if it had no room (where :meth:`WebSocket.send_message` with ``timeout=0`` raises
        ``TimeoutError``), or the :class:`~rolo.websocket.errors.WebSocketDisconnectedError` it raises for
        a closed connection; and what hands the sends to the server (call it once)
    """
    return offer_each_adapters([websocket._adapter for websocket in websockets], message)


class WebSocket:
    """An open WebSocket connection: send and receive whole messages, blocking the calling thread.

    Iterating over it yields each message received until the peer closes the connection. Used as a context
    manager, it closes the connection on exit: with 1000 (normal closure), or with 1011 (internal error,
    reason ``"internal error"``) when the block raised.
    """

    def __init__(self, adapter: WebSocketAdapter) -> None:
        self._adapter = adapter

    def send(self, data: str | bytes, timeout: float | None = None) -> None:
        """Send ``data``: ``str`` as a text message, ``bytes`` as a binary message.

        Blocks while the peer is not reading and the server's buffer is full.

        :raises WebSocketProtocolError: if ``data`` is neither ``str`` nor ``bytes``
        :raises UnicodeEncodeError: if ``data`` is a ``str`` that has no UTF-8 form (a lone surrogate, as
            ``"\\ud800"``), which a text message must have
        :raises TimeoutError: if the peer made no room within ``timeout`` seconds
        :raises WebSocketDisconnectedError: if the connection is closed
        """
        if type(data) is str and data.isascii():
            # ASCII text, the commonest, handed over as it is: no message is made for it (send_text),
            # and it has a UTF-8 form without the check message_for makes
            self._adapter.send_text(data, timeout)
        else:
            self._adapter.send(message_for(data), timeout)

    def send_message(self, message: Message, timeout: float | None = None) -> None:
        """Send a message made by :func:`message_for`: for one message sent to many connections, which the
        server then frames once (as a :class:`~rolo.websocket.Hub` does).

        :raises TimeoutError: if the peer made no room within ``timeout`` seconds
        :raises WebSocketDisconnectedError: if the connection is closed
        """
        self._adapter.send(message, timeout)

    def receive(self, timeout: float | None = None) -> Received:
        """The next message: ``str`` for a text message, ``bytes`` for a binary one.

        :raises TimeoutError: if no message came within ``timeout`` seconds
        :raises WebSocketDisconnectedError: once the peer closed the connection, with its code and reason
        """
        return self._adapter.receive_data(timeout)

    def close(self, code: int = 1000, reason: str | None = None, timeout: float | None = None) -> None:
        """Perform the closing handshake with ``code`` and ``reason``. Closing a closed socket does nothing.

        :raises TimeoutError: if the handshake did not complete within ``timeout`` seconds (the server's
            close timeout by default); the server drops the connection when its own close timeout ends
        """
        self._adapter.close(code, reason, timeout)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the connection is closed, however it ends (at once if it is closed).

        It runs in whichever thread learns of the close, often the server's event loop: keep it short and
        non-blocking, e.g. removing the connection from a registry.
        """
        self._adapter.add_close_listener(callback)

    def __iter__(self) -> Iterator[Received]:
        # its own iterator: a handler that waits in ``for message in websocket`` holds no generator (about
        # 200 bytes) for as long as its connection is open
        return self

    def __next__(self) -> Received:
        """The next message, as :meth:`receive` gives it; the iteration ends once the connection is closed
        (then :meth:`receive` raises the :class:`WebSocketDisconnectedError` that says how)."""
        try:
            return self._adapter.receive_data()  # receive, without its call
        except WebSocketDisconnectedError:
            raise StopIteration from None

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, WebSocketDisconnectedError):
            self.close(CloseCode.INTERNAL_ERROR, INTERNAL_ERROR_REASON)
        else:
            self.close(CloseCode.NORMAL_CLOSURE)
