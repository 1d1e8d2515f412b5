"""The hand-over of a WebSocket upgrade request from Twisted Web to Autobahn.

Twisted Web parses the request; :class:`WebSocketResource` asks the connection's
:class:`~rolo.websocket.host.WebSocketHost` whether to take it, then moves the connection's transport
from Twisted Web's HTTP channel to an Autobahn protocol (:mod:`rolo.serving.twisted.protocol`) and feeds
it the request as it arrived. Autobahn validates the handshake (a bad one gets a 4xx and never reaches a
handler) and calls the protocol's ``onConnect``, which has the host start the handler.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from rolo.websocket.adapter import WebSocketListener
from rolo.websocket.host import WebSocketHost

from .environ import environ_for
from .protocol import GatewayWebSocketProtocol, build_factory
from .settings import TwistedSettings
from .threads import BatchedCallFromThread, HandlerTurns

__all__ = ["WebSocketResource"]

log = Logger()


class WebSocketResource(Resource):
    """Serves WebSocket upgrade requests: each connection that is taken is handed over to Autobahn, and
    its handler runs on :attr:`host`.

    :param listener: called in a handler thread with each upgrade request's environment
    :param settings: the server's settings
    :param reactor: the reactor the server runs on
    :ivar host: the :class:`~rolo.websocket.host.WebSocketHost` of the server's connections
    """

    isLeaf = True

    def __init__(self, listener: WebSocketListener, settings: TwistedSettings, reactor: Any) -> None:
        super().__init__()
        self.call_from_thread = BatchedCallFromThread(reactor)
        self.host = WebSocketHost(
            listener, settings, self.call_from_thread, HandlerTurns(reactor, self.call_from_thread)
        )
        self.factory = build_factory(self.host, settings, reactor)

    def render(self, request: Request) -> bytes | int:
        origin = request.getHeader("origin")
        refused = self.host.refusal(origin)
        if refused is not None:
            status, text = refused
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            if status == HTTPStatus.SERVICE_UNAVAILABLE:
                request.setHeader(b"Retry-After", b"1")
            log.info(
                "WebSocket refused {path} (origin {origin!r}): {status}",
                path=request.path,
                origin=origin,
                status=int(status),
            )
            return text

        protocol: GatewayWebSocketProtocol = self.factory.buildProtocol(request.transport.getPeer())
        protocol.environ = environ_for(request, method="WEBSOCKET")

        # Twisted Web is done with this connection: detach its channel, which also holds the transport's
        # producer slot and may have paused reading while it dispatched the request
        channel = request.channel
        transport, channel.transport = channel.transport, None
        transport.unregisterProducer()
        # the channel and its request refer to each other: unlinked, both go once this request is done
        # with, instead of lingering until a full garbage collection (about 2 KB per connection)
        channel.requests.clear()
        if hasattr(transport, "wrappedProtocol"):  # TLS wraps the application protocol
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        transport.resumeProducing()

        # Autobahn parses the handshake itself: replay the request as it arrived
        lines = [b"%s %s %s" % (request.method, request.uri, request.clientproto)]
        for name, values in request.requestHeaders.getAllRawHeaders():
            lines.extend(b"%s: %s" % (name, value) for value in values)
        protocol.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n")
        return NOT_DONE_YET
