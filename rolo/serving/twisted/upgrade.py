"""The hand-over of a WebSocket upgrade request from Twisted Web to Autobahn.

Twisted Web parses the request; :class:`WebSocketResource` checks it is a valid opening handshake
(:func:`~rolo.websocket.handshake.check_request`) and asks the server's
:class:`~rolo.websocket.host.WebSocketHost` whether to take it, answering a refusal as a well-formed HTTP
response. Then it moves the connection's transport from Twisted Web's HTTP channel to an Autobahn protocol
(:mod:`rolo.serving.twisted.protocol`) and gives it the request as Autobahn's own parser would
(:func:`~rolo.serving.twisted._autobahn.parsed_handshake`), followed by whatever the client sent behind it;
the protocol's ``onConnect`` has the host start the handler. A request that Autobahn would refuse for
what rolo does not check is written out again for Autobahn to parse and answer.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from rolo.websocket.adapter import WebSocketListener
from rolo.websocket.handshake import Refusal, check_request
from rolo.websocket.host import WebSocketHost

from ._autobahn import parsed_handshake
from .channel import GatewayChannel
from .environ import environ_for, request_headers
from .forwarded import peer_description
from .logs import logger
from .protocol import GatewayWebSocketProtocol, build_factory
from .settings import TwistedSettings
from .threads import BatchedCallFromThread, HandlerTurns

__all__ = ["WebSocketResource"]

log = logger(__name__)


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
            listener, settings, self.call_from_thread.__call__, HandlerTurns(reactor, self.call_from_thread)
        )
        self.factory = build_factory(self.host, settings, reactor)

    def render(self, request: Request) -> bytes | int:
        headers = request_headers(request)
        refused = check_request(
            request.method.decode("latin-1"),
            request.clientproto.decode("latin-1"),
            request.uri.decode("latin-1"),
            headers,
        ) or self.host.refusal(request.getHeader("origin"))
        if refused is not None:
            self.host.counters.upgrades.add(refused.status)
            return self._refuse(request, refused)

        channel = request.channel
        assert isinstance(channel, GatewayChannel), "served by a TwistedGateway, whose channels switch protocols"
        transport = channel.transport
        assert transport is not None, "the request is rendered on its open connection"
        protocol = self.factory.buildProtocol(transport.getPeer())
        assert isinstance(protocol, GatewayWebSocketProtocol)
        protocol.environ = environ_for(request, method="WEBSOCKET", headers=headers)

        # Twisted Web is done with this connection: detach its channel, which also holds the transport's
        # producer slot and may have paused reading while it dispatched the request; what the client sent
        # behind the request goes to the protocol
        channel.transport = None
        transport.unregisterProducer()
        channel.switch_protocols(protocol)
        # the channel and its request refer to each other: unlinked, both go once this request is done
        # with, instead of lingering until a full garbage collection (about 2 KB per connection)
        channel.requests.clear()
        if hasattr(transport, "wrappedProtocol"):  # TLS wraps the application protocol
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol  # type: ignore[attr-defined]  # Twisted's TCP and UNIX transports'
        protocol.makeConnection(transport)
        if getattr(request, "forwarded", None) is not None:
            protocol.peer = peer_description(request)  # its lines name the client behind the proxy
        transport.resumeProducing()
        parsed = parsed_handshake(protocol, request.uri.decode("latin-1"), headers)
        if parsed is not None:
            protocol.take_handshake(parsed)
        else:
            protocol.dataReceived(_replayed(request, headers))
        return NOT_DONE_YET

    @staticmethod
    def _refuse(request: Request, refused: Refusal) -> bytes:
        request.setResponseCode(refused.status, refused.status.phrase.encode("ascii"))
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        for name, value in refused.headers:
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        origin = request.getHeader("origin")
        log.info(
            "WebSocket refused {path} from {peer}{origin}: {status} ({reason})",
            path=request.path.decode("utf-8", "replace"),
            peer=peer_description(request),
            origin=f" (origin {origin!r})" if origin is not None else "",  # said where the request had one
            status=int(refused.status),
            reason=refused.reason,
        )
        return refused.body


# Autobahn refuses these when they come in more than one line; RFC 9110 (5.3) makes them one
_JOINED = {"sec-websocket-extensions", "sec-websocket-protocol"}


def _replayed(request: Request, headers: list[tuple[str, str]]) -> bytes:
    """The request as Autobahn parses it, where it parses the handshake itself."""
    lines = [f"GET {request.uri.decode('latin-1')} HTTP/1.1"]
    joined: dict[str, int] = {}  # the line of each header joined so far
    for name, value in headers:
        key = name.lower()
        if key in joined:
            lines[joined[key]] += f", {value}"
            continue
        if key in _JOINED:
            joined[key] = len(lines)
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
