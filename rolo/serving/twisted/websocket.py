"""WebSockets on Twisted: Autobahn speaks the protocol, a handler thread runs the application.

The path of an upgrade request through this module:

1. :class:`WebSocketUpgradeResource` gets the request from the site, refuses it with 503 when every
   handler slot is taken, and otherwise hands the connection's transport over from Twisted Web to a
   :class:`GatewayWebSocketProtocol`, replaying the request to it.
2. Autobahn validates the handshake (bad ones get a 4xx and never reach a handler) and calls
   :meth:`GatewayWebSocketProtocol.onConnect`, which starts the listener (the gateway) in a thread of
   its own with a :class:`~rolo.websocket.threaded.ThreadedWebSocketAdapter` in its environment, and
   returns a Deferred that the handler's ``accept`` fires.
3. From then on the adapter carries messages between the handler thread and :class:`AutobahnConnection`,
   which runs every protocol and transport call on the reactor thread: a message Autobahn parsed goes
   through :meth:`GatewayWebSocketProtocol.onMessage` into the adapter's inbox, and the handler is woken
   for it at the end of the reactor's turn (:class:`~rolo.serving.twisted.threads.HandlerTurns`); what
   the handler sends comes back through :meth:`AutobahnConnection.send` to
   :meth:`GatewayWebSocketProtocol.send_messages`, which frames a batch and writes it (:func:`write_now`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from rolo.websocket.adapter import WEBSOCKET_KEY, BytesMessage, Message, TextMessage, WebSocketListener
from rolo.websocket.admission import refusal
from rolo.websocket.origins import OriginPolicy
from rolo.websocket.threaded import CLOSE_CODE_ABNORMAL, CLOSE_CODE_GOING_AWAY, ThreadedWebSocketAdapter

from .environ import environ_for
from .threads import Activity, BatchedCallFromThread, HandlerThreads, HandlerTurns

__all__ = ["GatewayWebSocketProtocol", "WebSocketSettings", "WebSocketUpgradeResource"]

log = Logger()

_HANDSHAKE_LEFTOVERS = (
    "http_request_data",
    "http_status_line",
    "http_headers",
    "http_request_uri",
    "http_request_path",
    "http_request_params",
    "http_request_host",
    "http_response_data",
    "websocket_protocols",
    "websocket_origin",
    "websocket_extensions",
    "_wskey",
    "_transport_details",
)
"""What an Autobahn server protocol keeps of the opening handshake and never reads once it is open: the
request and response as sent, parsed and taken apart, and the transport details it gathers for WAMP
sessions (about 1.5 KB)."""


@dataclass(frozen=True)
class WebSocketSettings:
    """How :class:`~rolo.serving.twisted.TwistedGateway` serves WebSockets.

    :param max_connections: how many WebSocket handlers may run at once, each in a thread of its own; an
        upgrade request beyond it is answered ``503`` at once
    :param thread_stack_size: the stack size of those threads, in bytes: the address space each reserves and
        how deep its handler may call. Only the pages a thread touches are resident (12 KiB for a handler
        waiting for a message), whatever the size.
    :param max_queue: how many received messages may wait for a handler before the server stops reading
        from that connection's socket
    :param write_high_water: how many bytes a handler may have sent that the reactor has not yet written
        before ``send`` blocks
    :param max_message_size: the largest message accepted, in bytes; a larger one closes the connection
        with 1009 (message too big). ``0`` means no limit.
    :param compression: whether to accept the permessage-deflate extension when a client offers it
    :param ping_interval: seconds between the pings the server sends to idle connections (``0``: none)
    :param ping_timeout: seconds a peer may take to answer a ping before the connection is dropped
    :param open_timeout: seconds the opening handshake may take, from the request's arrival to the
        handler's ``accept``
    :param close_timeout: seconds the closing handshake may take before the connection is dropped
    :param allowed_origins: the ``Origin`` values allowed to connect, with ``*`` wildcards (e.g.
        ``["https://*.example.com"]``); others get 403 (see :class:`~rolo.websocket.origins.OriginPolicy`).
        ``None``, the default, allows any origin: set it for a server that browsers reach with cookies.
    """

    max_connections: int = 4096
    thread_stack_size: int = 512 * 1024
    max_queue: int = 16
    write_high_water: int = 64 * 1024
    max_message_size: int = 1024 * 1024
    compression: bool = True
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    open_timeout: float = 10.0
    close_timeout: float = 10.0
    allowed_origins: Sequence[str] | None = None


def _accept_permessage_deflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def _protocol_class(factory: WebSocketServerFactory) -> type[GatewayWebSocketProtocol]:
    """:class:`GatewayWebSocketProtocol` with ``factory``'s protocol options as class attributes.

    Autobahn copies each of its 29 options from the factory onto every protocol it builds, unless the
    protocol's class has it already: with them on the class, a connection's attributes take 1.7 KB less.
    """
    options = {}
    for name in GatewayWebSocketProtocol.CONFIG_ATTRS:
        value = getattr(factory, name)
        # a function on the class would be bound to the protocol, and called with it as first argument
        options[name] = staticmethod(value) if callable(value) else value
    return type(GatewayWebSocketProtocol.__name__, (GatewayWebSocketProtocol,), options)


class _ReactorTimer:
    """Autobahn's timer interface (``call_later``) on the reactor's clock, to the millisecond.

    Autobahn times its pings and handshakes with txaio's batched timer, which rounds each deadline down
    to a whole second: a ping timeout of 0.5 s could fire at once, and one of 20 s after 19.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, fn: Any, *args: Any, **kwargs: Any) -> _TimerCall:
        return _TimerCall(self._reactor.callLater(delay, fn, *args, **kwargs))


class _TimerCall:
    """A delayed call that, like txaio's, may be cancelled after it ran."""

    __slots__ = ("_call",)

    def __init__(self, call: Any) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class WebSocketUpgradeResource(Resource):
    """Takes WebSocket upgrade requests over from Twisted Web and serves them with a listener.

    :param listener: called in a handler thread with each upgrade request's environment
    :param settings: the WebSocket settings
    :param reactor: the reactor the server runs on
    """

    isLeaf = True

    def __init__(self, listener: WebSocketListener, settings: WebSocketSettings, reactor: Any) -> None:
        super().__init__()
        self.listener = listener
        self.settings = settings
        self.reactor = reactor
        self.pool = HandlerThreads(name="rolo-websocket", stack_size=settings.thread_stack_size)
        self.origins = OriginPolicy(settings.allowed_origins) if settings.allowed_origins is not None else None
        self.handlers = Activity(reactor)
        self.call_from_thread = BatchedCallFromThread(reactor)
        self.handler_turns = HandlerTurns(reactor, self.call_from_thread)
        self.accepting = True
        self.protocols: set[GatewayWebSocketProtocol] = set()
        self.factory = self._build_factory()
        # bound once, not per connection: each handler thread holds both for as long as it runs
        self._handler_calls = (self._handler_done, self._run_listener)

    def _build_factory(self) -> WebSocketServerFactory:
        settings = self.settings
        factory = WebSocketServerFactory(reactor=self.reactor)
        factory.server = None
        factory.upgrade_resource = self
        factory._batched_timer = _ReactorTimer(self.reactor)
        options: dict[str, Any] = dict(
            maxMessagePayloadSize=settings.max_message_size,
            maxFramePayloadSize=settings.max_message_size,
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_timeout,
            openHandshakeTimeout=settings.open_timeout,
            closeHandshakeTimeout=settings.close_timeout,
            # a protocol error (or a message over the limit) is answered with a close frame saying why
            # (1002, 1007, 1009 …) rather than a dropped connection the peer cannot tell from a crash
            failByDrop=False,
            # origins are checked in render (OriginPolicy); Autobahn's own check refuses "null" unless told
            allowNullOrigin=True,
        )
        if settings.compression:
            options["perMessageCompressionAccept"] = _accept_permessage_deflate
        factory.setProtocolOptions(**options)
        factory.protocol = _protocol_class(factory)
        return factory

    def render(self, request: Request) -> bytes | int:
        origin = request.getHeader("origin")
        refused = refusal(
            origin, self.origins, self.accepting, self.handlers.running, self.settings.max_connections
        )
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

    def start_handler(self, environ: dict[str, Any]) -> None:
        """Run the listener for one connection in a thread of its own (reactor thread).

        :raises RuntimeError: if no thread could be started for it; then it holds no handler slot
        """
        on_result, run_listener = self._handler_calls
        self.pool.callInThreadWithCallback(on_result, run_listener, environ)
        # counted once started: its end is counted through callFromThread, so always after this
        self.handlers.started()

    def _run_listener(self, environ: dict[str, Any]) -> None:
        try:
            self.listener(environ)
        except Exception:
            log.failure("WebSocket listener failed for {path}", path=environ.get("PATH_INFO"))

    def _handler_done(self, success: bool, result: Any) -> None:
        self.reactor.callFromThread(self.handlers.finished)

    def shutdown(self, grace_period: float) -> Deferred[bool]:
        """Stop taking connections, close every open one with 1001 (going away), and fire once every
        handler has returned (with ``True``) or ``grace_period`` seconds have passed (``False``)."""
        self.accepting = False
        for protocol in list(self.protocols):
            protocol.go_away()
        return self.handlers.idle(grace_period)


class GatewayWebSocketProtocol(WebSocketServerProtocol):
    """Autobahn's server protocol, reporting to a :class:`ThreadedWebSocketAdapter`.

    ``environ`` is set by :class:`WebSocketUpgradeResource` before the handshake is replayed.
    """

    environ: dict[str, Any]
    adapter: ThreadedWebSocketAdapter | None = None
    handshake: Deferred[Any] | None = None
    opened_at: float = 0.0
    was_open = False
    # whether the peer sent anything since the keep-alive ping was last scheduled
    heard_from_peer = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.send_queue = _WriteQueue()

    def dataReceived(self, data: bytes) -> None:
        self.heard_from_peer = True
        # straight to the protocol: Autobahn's Twisted dataReceived only adds a debug log line whose
        # arguments it formats (with terminal colours) on every read, even with debug logging off
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        # Autobahn's also fires its "message" event to observers, through Deferreds, for every message;
        # rolo registers none
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def send_messages(self, messages: list[Message]) -> None:
        """Frame ``messages`` and write them to the socket in one go.

        rolo frames its data messages itself rather than through Autobahn's ``sendMessage``: a server's
        frame is unmasked and rolo never fragments a message, which leaves a header to build, where
        ``sendMessage`` spends 5 µs on checks and statistics for a small message. Unlike ``sendMessage``,
        it does not hold the handler's messages to ``max_message_size``: that limits what the peer sends.
        """
        compressor = self._perMessageCompress
        pieces = []
        for message in messages:
            if isinstance(message, TextMessage):
                opcode, payload = OPCODE_TEXT, message.data.encode("utf-8")
            else:
                opcode, payload = OPCODE_BINARY, message.data
            if compressor is not None:
                compressor.start_compress_message()
                payload = compressor.compress_message_data(payload) + compressor.end_compress_message()
            pieces.append(frame_header(opcode, len(payload), compressed=compressor is not None))
            pieces.append(payload)
        write_now(self.transport, b"".join(pieces))

    def _sendAutoPing(self) -> None:
        # Autobahn pings on a fixed schedule; a peer that is sending proves it is alive, so only a
        # connection silent for a whole interval is pinged (and a ping never lands in a busy exchange)
        if self.heard_from_peer:
            self.heard_from_peer = False
            self.autoPingPendingCall = self.factory._batched_timer.call_later(
                self.autoPingInterval, self._sendAutoPing
            )
            return
        super()._sendAutoPing()

    def onConnect(self, request: ConnectionRequest) -> Deferred[Any]:
        resource: WebSocketUpgradeResource = self.factory.upgrade_resource
        settings = resource.settings
        self.opened_at = resource.reactor.seconds()
        self.adapter = ThreadedWebSocketAdapter(
            AutobahnConnection(self),
            resource.call_from_thread,
            max_queue=settings.max_queue,
            write_high_water=settings.write_high_water,
            close_timeout=settings.close_timeout + 1,
            wake_ups=resource.handler_turns,
        )
        self.environ[WEBSOCKET_KEY] = self.adapter
        self.handshake = Deferred()
        try:
            resource.start_handler(self.environ)
        except RuntimeError:
            log.failure("no thread for the WebSocket handler of {path}", path=self.environ.get("PATH_INFO"))
            self.adapter = None  # nothing for onClose to report to
            raise ConnectionDeny(int(HTTPStatus.SERVICE_UNAVAILABLE), "no thread for the handler")  # it wants an int
        resource.protocols.add(self)
        return self.handshake

    def onOpen(self) -> None:
        # the handler has the request in its environ; the server is done with the handshake
        attributes = vars(self)
        for name in _HANDSHAKE_LEFTOVERS:
            attributes.pop(name, None)
        self.transport.registerProducer(_WriteFlowControl(self.adapter), True)
        self.adapter.on_open()
        self.was_open = True
        log.info("WebSocket open {path} from {peer}", path=self.environ.get("PATH_INFO"), peer=self.peer)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.adapter.on_message(BytesMessage(payload) if isBinary else TextMessage(payload.decode("utf-8")))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.adapter is None:
            return  # the handshake never got to the application
        self.factory.upgrade_resource.protocols.discard(self)
        self.adapter.on_close(code, reason)
        if self.was_open:
            # say who ended it and with which code: onClose's code is only the peer's
            if self.closedByMe:
                ending, code = "closed by the server", self.localCloseCode
            elif self.remoteCloseCode is not None:
                ending, code = "closed by the peer", self.remoteCloseCode
            else:
                ending, code = "lost", CLOSE_CODE_ABNORMAL
            log.info(
                "WebSocket {ending} {path} from {peer}: code {code} after {duration:.3f}s",
                ending=ending,
                path=self.environ.get("PATH_INFO"),
                peer=self.peer,
                code=code,
                duration=self.factory.upgrade_resource.reactor.seconds() - self.opened_at,
            )

    def go_away(self) -> None:
        """Close with 1001 because the server is shutting down."""
        AutobahnConnection(self).close(CLOSE_CODE_GOING_AWAY, "server shutting down")


OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2


def frame_header(opcode: int, length: int, compressed: bool = False) -> bytes:
    """The header of a final, unmasked frame of ``length`` payload bytes: a server's (RFC 6455, 5.2).

    :param compressed: sets RSV1, which marks a message compressed by permessage-deflate (RFC 7692, 6)
    """
    first = 0x80 | (0x40 if compressed else 0) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to a TCP transport's socket at once when nothing waits before it, and buffer the rest.

    A transport's ``write`` only buffers: the bytes go out on a later turn of the reactor, once epoll says
    the socket is writable, which costs two ``epoll_ctl`` calls (to watch for writability and to stop) and
    that turn. The frames of a handler's sends usually fit in the socket's send buffer straight away.
    """
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    ):
        written = transport.writeSomeData(data)
        if isinstance(written, int):
            data = data[written:]
        # else the connection is lost: the buffered write below lets Twisted find out and close it
    if data:
        transport.write(data)


class _WriteQueue(list[tuple[bytes, bool]]):
    """Autobahn's queue of chopped and synchronous writes (``send_queue``), which rolo never makes.

    It only needs ``len``, ``append`` and ``popleft``: an empty list takes 56 bytes, an empty deque 760.
    """

    def popleft(self) -> tuple[bytes, bool]:
        return self.pop(0)


@implementer(IPushProducer)
class _WriteFlowControl:
    """Registered with the transport so that its buffer filling up holds the handler's ``send``."""

    __slots__ = ("_adapter",)

    def __init__(self, adapter: ThreadedWebSocketAdapter) -> None:
        self._adapter = adapter

    def pauseProducing(self) -> None:
        self._adapter.on_pause_writing()

    def resumeProducing(self) -> None:
        self._adapter.on_resume_writing()

    def stopProducing(self) -> None:
        self._adapter.on_resume_writing()


class AutobahnConnection:
    """The I/O side of a connection (:class:`~rolo.websocket.threaded.ServerConnection`) on Autobahn.

    Its methods run on the reactor thread.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: GatewayWebSocketProtocol) -> None:
        self._protocol = protocol

    def accept(self, subprotocol: str | None, headers: list[tuple[str, str]]) -> None:
        protocol = self._protocol
        if protocol.state != WebSocketProtocol.STATE_CONNECTING:
            return  # the peer left while the handler decided; the adapter knows from onClose
        grouped: dict[str, list[str]] = {}
        for name, value in headers:
            grouped.setdefault(name, []).append(value)
        handshake, protocol.handshake = protocol.handshake, None  # fired, it would hold its result
        handshake.callback((subprotocol, grouped))

    def reject(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        protocol = self._protocol
        if protocol.state != WebSocketProtocol.STATE_CONNECTING:
            return
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {status} {phrase}"]
        # framing is ours: the body is sent whole and the connection closes after it
        framing = ("content-length", "connection", "transfer-encoding")
        lines.extend(f"{name}: {value}" for name, value in headers if name.lower() not in framing)
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        protocol.sendData("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        protocol.wasClean = True  # an answered request, not a failure for Autobahn to warn about
        protocol.dropConnection(abort=False)
        log.info(
            "WebSocket rejected {path} from {peer}: {status}",
            path=protocol.environ.get("PATH_INFO"),
            peer=protocol.peer,
            status=status,
        )

    def send(self, messages: list[Message]) -> None:
        protocol = self._protocol
        if protocol.state == WebSocketProtocol.STATE_OPEN:
            protocol.send_messages(messages)

    def close(self, code: int, reason: str | None) -> None:
        protocol = self._protocol
        if protocol.state == WebSocketProtocol.STATE_OPEN:
            reason_bytes = reason.encode("utf-8") if reason else None  # the adapter fitted it to the frame
            # sendClose only allows the codes an application may use; a server also sends 1001 and 1011
            protocol.sendCloseFrame(code, reason_bytes, isReply=False)
        elif protocol.state == WebSocketProtocol.STATE_CONNECTING:
            protocol.dropConnection(abort=True)

    def pause_reading(self) -> None:
        self._protocol.transport.pauseProducing()

    def resume_reading(self) -> None:
        self._protocol.transport.resumeProducing()
