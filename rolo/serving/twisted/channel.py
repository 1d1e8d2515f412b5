"""The HTTP connection and request of Twisted Web as a gateway serves them."""

from __future__ import annotations

from typing import Any

from twisted.web.http import HTTPChannel
from twisted.web.server import Request

__all__ = ["GatewayChannel", "GatewayRequest"]


class GatewayRequest(Request):
    """A Twisted Web request that also holds its headers as sent, ``raw_headers`` in order, when its
    request line arrived, ``received_at`` (by the site's reactor clock), and whether its response has
    been ``logged``."""

    logged = False

    def __init__(self, channel: HTTPChannel, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.received_at: float = channel.site.reactor.seconds()


class GatewayChannel(HTTPChannel):
    """Twisted Web's HTTP connection, with four changes:

    - it records each header line's name before Twisted canonicalises it (``GatewayRequest.raw_headers``);
    - a request's line and headers must arrive within ``header_timeout`` seconds, counted from the
      connection's start or from the first byte of a later request on it, or the client gets a ``408``
      and the connection closes. Twisted's own timeout is an idle one, which a client trickling one byte
      at a time (slowloris) resets forever;
    - a request line or header line over ``MAX_LENGTH`` bytes gets a ``414`` or ``431`` where Twisted
      would close the connection without a word;
    - once a request upgrades the connection (:meth:`switch_protocols`), the bytes behind it go to the new
      protocol rather than wait for a next HTTP request.
    """

    header_timeout: float | None = None
    _header_deadline: Any = None
    _refused = False
    _switched_to: Any = None  # the protocol that took the connection over (a WebSocket's)

    def switch_protocols(self, protocol: Any) -> None:
        """Hand what the client sends from now on to ``protocol``, which has taken the connection over:
        the bytes that came behind the request being handled, in the same read, first (RFC 9110 7.8)."""
        self._switched_to = protocol

    def rawDataReceived(self, data: bytes) -> None:
        if self._switched_to is not None:
            self._switched_to.dataReceived(data)
            return
        super().rawDataReceived(data)

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_header_deadline()

    def dataReceived(self, data: bytes) -> None:
        if self._header_deadline is None and self.line_mode and not self._handlingRequest:
            self._start_header_deadline()  # the first bytes of another request on this connection
        super().dataReceived(data)

    def headerReceived(self, line: bytes) -> bool:
        accepted = super().headerReceived(line)
        if accepted:
            name, _, value = line.partition(b":")
            request = self.requests[-1]
            if isinstance(request, GatewayRequest):
                request.raw_headers.append((name, value.strip(b" \t")))
        return accepted

    def allHeadersReceived(self) -> None:
        self._cancel_header_deadline()
        super().allHeadersReceived()

    def lineLengthExceeded(self, line: bytes) -> None:
        # no line completed yet means the request line itself is the long one
        if self._receivedHeaderSize == 0:
            self._refuse(b"414 URI Too Long")
        else:
            self._refuse(b"431 Request Header Fields Too Large")

    def connectionLost(self, reason: Any) -> None:
        self._cancel_header_deadline()
        super().connectionLost(reason)

    def _start_header_deadline(self) -> None:
        if self.header_timeout:
            self._header_deadline = self.callLater(self.header_timeout, self._header_timed_out)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            if self._header_deadline.active():
                self._header_deadline.cancel()
            self._header_deadline = None

    def _header_timed_out(self) -> None:
        self._header_deadline = None
        self._refuse(b"408 Request Timeout")
        # a client that reads nothing (or never finished its TLS handshake) cannot be closed politely:
        # it gets one more header_timeout to take the answer, then the connection is cut
        self._abortingCall = self.callLater(self.header_timeout, self.forceAbortClient)

    def _refuse(self, status: bytes) -> None:
        if self._refused:
            return  # more of the same request arrived before the connection closed
        self._refused = True
        self.transport.write(b"HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" % status)
        self.loseConnection()
