"""TwistedGateway: one Twisted Web site serving a gateway's HTTP and WebSockets on one port."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from rolo.gateway import Gateway
from rolo.websocket import WebSocketRequest

from .channel import GatewayRequest, RawHeadersChannel
from .http import HttpResource
from .threads import HandlerThreadPool
from .websocket import WebSocketSettings, WebSocketUpgradeResource

__all__ = ["TwistedGateway", "is_websocket_upgrade"]


def is_websocket_upgrade(request: Request) -> bool:
    """Whether the request asks to upgrade to WebSocket (``Connection: upgrade``, ``Upgrade: websocket``)."""
    headers = request.requestHeaders
    upgrade = b",".join(headers.getRawHeaders(b"upgrade", [])).lower()
    connection = b",".join(headers.getRawHeaders(b"connection", [])).lower()
    return b"websocket" in (t.strip() for t in upgrade.split(b",")) and b"upgrade" in (
        t.strip() for t in connection.split(b",")
    )


class _GatewayResource(Resource):
    """The site's only resource: upgrade requests go to the WebSocket side, the rest to the HTTP side."""

    isLeaf = True

    def __init__(self, http: HttpResource, websocket: WebSocketUpgradeResource) -> None:
        super().__init__()
        self.http = http
        self.websocket = websocket

    def render(self, request: Request) -> bytes | int:
        try:
            if is_websocket_upgrade(request):
                return self.websocket.render(request)
            return self.http.render(request)
        except UnicodeDecodeError:
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"the request path is not valid UTF-8\n"


class TwistedGateway(Site):
    """A :class:`twisted.web.server.Site` that serves a gateway: HTTP through Twisted Web, WebSockets
    through Autobahn, on whichever ports it listens on::

        reactor.listenTCP(8000, TwistedGateway(gateway))
        serverFromString(reactor, "tcp:8000").listen(TwistedGateway(gateway))

    HTTP handlers run in a pool of ``http_threads`` threads; each WebSocket handler in a thread of a
    separate pool sized by ``max_connections``. Neither can starve the other.

    :param gateway: the gateway to serve
    :param http_threads: how many HTTP requests are handled at once (at least 1)
    :param reactor: the reactor to run on (the global one by default)
    :param websocket_settings: the fields of :class:`WebSocketSettings` (``max_connections``,
        ``max_message_size``, ``ping_interval`` …)
    """

    protocol = RawHeadersChannel

    def __init__(
        self,
        gateway: Gateway,
        *,
        http_threads: int = 32,
        reactor: Any = None,
        **websocket_settings: Any,
    ) -> None:
        if http_threads < 1:
            raise ValueError(f"http_threads must be at least 1, not {http_threads}")  # 0 would never answer
        if reactor is None:
            from twisted.internet import reactor
        self.gateway = gateway
        self.websocket_settings = WebSocketSettings(**websocket_settings)
        self.http_pool = HandlerThreadPool(reactor, name="rolo-http", max_threads=http_threads)
        self.websocket = WebSocketUpgradeResource(
            WebSocketRequest.listener(gateway.accept), self.websocket_settings, reactor
        )
        self.http = HttpResource(gateway, self.http_pool, reactor)
        root = _GatewayResource(self.http, self.websocket)
        super().__init__(root, requestFactory=GatewayRequest, reactor=reactor)

    def stop(self, grace_period: float = 10.0) -> Deferred[None]:
        """Stop serving: refuse new WebSockets, close the open ones with 1001, wait for their handlers (at
        most ``grace_period`` seconds), cut the HTTP responses still streaming, and stop the thread pools.
        Stop listening on the ports first."""

        async def stop() -> None:
            await self.websocket.shutdown(grace_period)
            self.http.stop_writing()
            for pool in (self.websocket.pool, self.http_pool):
                pool.stop()

        return ensureDeferred(stop())
