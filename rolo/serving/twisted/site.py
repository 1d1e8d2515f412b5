"""TwistedGateway: one Twisted Web site serving a gateway's HTTP and WebSockets on one port."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from rolo.gateway import App, as_gateway
from rolo.heap import freeze_startup_heap
from rolo.settings import refuse_unknown
from rolo.target import InvalidTarget, is_valid_authority, split_target
from rolo.websocket import WebSocketRequest

from ._twisted import dispatch_directly
from .channel import GatewayChannel, GatewayRequest
from .forwarded import TrustedProxies
from .http import HttpResource, log_response, note_refusal
from .logs import logger, show_rolo_logs
from .settings import TwistedSettings
from .threads import idle_within
from .upgrade import WebSocketResource

if TYPE_CHECKING:
    from ._interfaces import IServingReactor

__all__ = ["TwistedGateway", "is_websocket_upgrade"]

log = logger(__name__)


def _tokens(request: Request, header: bytes) -> set[bytes]:
    """The comma-separated tokens of a header, lowercase, over all its lines."""
    values = request.requestHeaders.getRawHeaders(header, [])
    return {token.strip() for token in b",".join(values).lower().split(b",")}


def is_websocket_upgrade(request: Request) -> bool:
    """Whether the request asks to upgrade to WebSocket (``Connection: upgrade``, ``Upgrade: websocket``)."""
    return b"websocket" in _tokens(request, b"upgrade") and b"upgrade" in _tokens(request, b"connection")


def _may_be_upgrade(request: Request) -> bool:
    """Whether the request has any of the headers :func:`is_websocket_upgrade` and
    :func:`_is_partial_upgrade` look at: most have none, and are plain HTTP."""
    headers = request.requestHeaders
    return (
        headers.hasHeader(b"upgrade")
        or headers.hasHeader(b"sec-websocket-key")
        or headers.hasHeader(b"sec-websocket-version")
    )


def _is_partial_upgrade(request: Request) -> bool:
    """Whether a request that does not ask to upgrade still carries part of a WebSocket handshake."""
    headers = request.requestHeaders
    return (
        headers.hasHeader(b"sec-websocket-key")
        or headers.hasHeader(b"sec-websocket-version")
        or b"websocket" in _tokens(request, b"upgrade")
    )


class _GatewayResource(Resource):
    """The site's only resource: upgrade requests go to the WebSocket side, the rest to the HTTP side."""

    isLeaf = True
    takes_whole_path = True
    """Its render takes any path as it is: a GatewayRequest renders it without Twisted Web's lookup."""

    def __init__(self, http: HttpResource, websocket: WebSocketResource, proxies: TrustedProxies | None) -> None:
        super().__init__()
        self.http = http
        self.websocket = websocket
        self.proxies = proxies

    def render(self, request: Request) -> bytes | int:
        if self.proxies is not None and isinstance(request, GatewayRequest):
            request.forwarded = self.proxies.client_of(request)
        try:
            target = split_target(request.uri, request.method)
        except InvalidTarget as invalid:
            return _bad_request(request, str(invalid))
        problem = _host_problem(request)
        if problem is not None:
            return _bad_request(request, problem)
        try:
            if not _may_be_upgrade(request):
                return self.http.render(request, target)
            if is_websocket_upgrade(request):
                refusal = self.websocket.render(request)
                if refusal is not NOT_DONE_YET and isinstance(request, GatewayRequest):
                    request.logged = True  # the refusal has its line, "WebSocket refused …"
                return refusal
            if _is_partial_upgrade(request):
                # RFC 6455 4.2.1: a handshake missing its Upgrade or Connection is refused, not served
                # as HTTP (where a WebSocket-only route could only answer 405, or 500 without a handler
                # for HTTP errors)
                return _bad_request(request, "a WebSocket handshake needs Upgrade and Connection headers")
            return self.http.render(request, target)
        except UnicodeDecodeError:
            return _bad_request(request, "the request path is not valid UTF-8")


def _host_problem(request: Request) -> str | None:
    """Why the request's Host header makes it one to refuse before any handler sees it (RFC 9112 3.2),
    or None."""
    hosts = request.requestHeaders.getRawHeaders(b"host", [])
    if len(hosts) > 1:
        return "more than one Host header"
    if not hosts:
        return "no Host header" if request.clientproto == b"HTTP/1.1" else None
    if not is_valid_authority(hosts[0]):
        return "the Host header is not a valid host"
    return None


def _bad_request(request: Request, reason: str) -> bytes:
    note_refusal(request, reason)
    request.setResponseCode(400)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return reason.encode("utf-8") + b"\n"


class TwistedGateway(Site):
    """A :class:`twisted.web.server.Site` that serves a gateway: HTTP through Twisted Web, WebSockets
    through Autobahn, on whichever ports it listens on::

        reactor.listenTCP(8000, TwistedGateway(gateway))
        serverFromString(reactor, "tcp:8000").listen(TwistedGateway(gateway))

    HTTP handlers run in a pool of ``http_threads`` threads; WebSocket handlers in threads of their own,
    up to ``max_connections`` of them. Neither can starve the other.

    :param gateway: the gateway to serve, or a router (served as :func:`~rolo.gateway.as_gateway` makes it
        a gateway)
    :param reactor: the reactor to run on (the global one by default)
    :param settings: the fields of :class:`~rolo.serving.twisted.TwistedSettings` (``http_threads``,
        ``max_connections``, ``max_message_size``, ``ping_interval`` …)
    :raises ValueError: for a setting's bad value
    :raises TypeError: for a keyword that is not one of those settings, naming it and where the settings are
        listed (see :func:`~rolo.settings.refuse_unknown`)
    :ivar settings: the :class:`~rolo.serving.twisted.TwistedSettings`
    :ivar http: the :class:`~rolo.serving.twisted.http.HttpResource` serving plain HTTP
    :ivar websocket: the :class:`~rolo.serving.twisted.upgrade.WebSocketResource` serving upgrades, whose
        ``host`` runs the WebSocket handlers
    """

    # Twisted types it as its wrapper that speaks HTTP/1.1 or HTTP/2; this site speaks HTTP/1.1 alone (see
    # acceptableProtocols), with the channel Twisted's wrapper uses for it
    protocol = GatewayChannel  # type: ignore[assignment]
    noisy = False  # each response is logged (see log); "Starting factory" lines add nothing
    if TYPE_CHECKING:
        reactor: IServingReactor  # Twisted Web types it as the least it needs, IReactorTime

    def __init__(self, gateway: App, *, reactor: Any = None, **settings: Any) -> None:
        if reactor is None:
            from twisted.internet import reactor
        refuse_unknown(settings, "TwistedGateway", TwistedSettings)
        self.settings = TwistedSettings(**settings)
        show_rolo_logs()
        self.gateway = gateway = as_gateway(gateway)
        self.websocket = WebSocketResource(WebSocketRequest.listener(gateway.accept), self.settings, reactor)
        self.http = HttpResource(gateway, self.settings, reactor)
        proxies = self.settings.forwarded_allow_ips
        super().__init__(
            _GatewayResource(self.http, self.websocket, TrustedProxies(proxies) if proxies else None),
            requestFactory=GatewayRequest,
            reactor=reactor,
            timeout=self.settings.keep_alive_timeout,  # Twisted Web's idle timeout: between requests only
            # Twisted Web would parse every form body into request.args, which rolo never reads, on the
            # reactor thread: a 16 MiB urlencoded body held every other connection for seconds. The
            # handler's werkzeug request parses the body, in its thread, if the handler asks for the form
            parsePOSTFormSubmission=False,
        )

    def log(self, request: http.Request) -> None:
        """Log each response as one line through :mod:`twisted.logger` (in place of Twisted Web's access
        log): method, path, peer, status and duration."""
        if TYPE_CHECKING:
            assert isinstance(request, GatewayRequest)  # the site's request factory
        log_response(request, self.reactor.seconds())

    def acceptableProtocols(self) -> list[bytes]:
        """The protocols a TLS endpoint offers in ALPN (RFC 7301): HTTP/1.1 only, what this site serves.

        Twisted Web's ``Site`` offers ``h2`` too whenever the ``h2`` package is installed, and clients
        that speak HTTP/2 (curl, browsers) then choose it. rolo serves HTTP/1.1 only: Twisted's HTTP/2
        streams have no transport of their own, their request bodies bypass the channel's limits and
        backpressure, the header timeout does not apply to them, and a WebSocket cannot be opened over
        them (Twisted has no RFC 8441). Browsers open ``wss:`` over HTTP/1.1 either way.
        """
        return [b"http/1.1"]

    def startFactory(self) -> None:
        """Start serving (Twisted calls it as the first port starts listening): the objects made until
        now, the application's among them, are left out of the garbage collector's later runs unless the
        ``freeze_heap`` setting is off (see :func:`rolo.heap.freeze_startup_heap`); an epoll reactor
        handles each I/O event without the legacy log context Twisted puts around it (see
        :func:`~rolo.serving.twisted._twisted.dispatch_directly`)."""
        super().startFactory()
        dispatch_directly(self.reactor)
        if self.settings.freeze_heap:
            freeze_startup_heap()

    def buildProtocol(self, addr: Any) -> GatewayChannel:  # type: ignore[override]  # see protocol
        channel: GatewayChannel = super().buildProtocol(addr)
        settings = self.settings
        channel.header_timeout = settings.header_timeout
        channel.body_timeout = settings.body_timeout
        channel.max_body_size = settings.max_body_size
        channel.write_timeout = settings.write_timeout
        return channel

    def stop(self, grace_period: float | None = None) -> Deferred[None]:
        """Stop serving: refuse new WebSockets (503), close the open ones with 1001 (going away), wait at
        most ``grace_period`` seconds (the ``grace_period`` setting if ``None``) for the WebSocket and HTTP
        handlers still running to return, then stop the thread pools. Stop listening on the ports first,
        so that no new connections come.

        Handlers still running after the grace period are logged and left to finish on their own: their
        threads are daemon threads, so they do not keep the process alive. HTTP responses still streaming
        then are cut (their connections closed), so that their handlers return. Calling it again once
        stopped does nothing.
        """
        if grace_period is None:
            grace_period = self.settings.grace_period
        host = self.websocket.host

        async def stop() -> None:
            host.go_away()
            dropping = self.reactor.callLater(host.closing_time(grace_period), host.drop_open)
            websocket_done, http_done = await gatherResults(
                [
                    idle_within(host.handlers, grace_period, self.reactor),
                    idle_within(self.http.handlers, grace_period, self.reactor),
                ]
            )
            if dropping.active():  # every handler returned first: the closes left finish in their own time
                dropping.cancel()
            if not (websocket_done and http_done):
                log.warn(
                    "{websocket} WebSocket and {http} HTTP handlers still running {grace_period}s after "
                    "shutdown began; not waiting for them",
                    websocket=host.handlers.running,
                    http=self.http.handlers.running,
                    grace_period=grace_period,
                )
            # a handler still streaming to a client that does not read would wait on it forever
            self.http.stop_writing()
            host.stop()
            self.http.pool.stop()

        return ensureDeferred(stop())
