"""The fast paths through Autobahn's and Twisted's private parts give what the public paths give, and are
in use with the versions tested (a fallback taken silently would only cost time)."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import autobahn.util
import autobahn.websocket.protocol
import pytest
import pytest_twisted
import websocket as wsclient
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import base, epollreactor, reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python import log
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from rolo import route
from rolo.serving.twisted import _autobahn, _twisted
from rolo.serving.twisted.protocol import GatewayWebSocketProtocol
from rolo.serving.twisted.upgrade import _replayed
from rolo.websocket import WebSocketRequest
from rolo.websocket.frames import Opcode, frame_header, unmask

from ..helpers import in_thread


@pytest.mark.parametrize("length", [0, 1, 125, 126, 0xFFFF, 0x10000, 3 * 0x10000 + 7])
@pytest.mark.parametrize("binary", [False, True])
def test_frame_header_is_what_autobahn_frames_for_a_server(length, binary):
    payload = b"x" * length
    autobahn_frame = PreparedMessage(payload, binary, applyMask=False, doNotCompress=True).payloadHybi
    ours = frame_header(Opcode.BINARY if binary else Opcode.TEXT, length) + payload
    assert ours == autobahn_frame


def test_a_compressed_frame_sets_rsv1_and_nothing_else():
    assert frame_header(Opcode.TEXT, 5, compressed=True)[0] == frame_header(Opcode.TEXT, 5)[0] | 0x40


def test_the_fast_paths_are_in_use_with_the_versions_tested():
    assert _twisted._FAST_WRITE
    assert _twisted._PARSER_FIELDS
    assert _twisted._REQUEST_LINE_FIELDS
    assert _twisted._BAD_REQUEST_FIELDS
    assert "_respondToBadRequestAndDisconnect" in vars(_twisted.HTTPChannel)
    assert _twisted._ADOPT_UNIX
    assert _autobahn._RECEIVE is not None
    assert _autobahn._SEND_AUTO_PING is not None
    assert _autobahn._IN_PLACE
    assert _autobahn._TAKE_PARSED
    assert _twisted._READ_INTO
    assert _twisted._DIRECT_DISPATCH
    assert _twisted._WAKE_BY_PIPE
    assert _twisted._READ_WAKER
    assert _twisted._READ_ALONE
    assert _twisted._TIMEOUT_KNOWN
    assert "_sendAutoPing" in vars(_autobahn.ProtocolInternals)
    assert autobahn.util.hl("plain") == "plain"  # no colours for debug lines nobody shows
    assert autobahn.websocket.protocol.hltype is _autobahn._hltype_once
    assert issubclass(GatewayWebSocketProtocol, _autobahn.ProtocolInternals)


@pytest.mark.parametrize("in_place", [True, False])
def test_unmasked_gives_what_unmasking_in_python_gives_in_place_or_through_process(monkeypatch, in_place):
    # in place through the native masker (whose SSE2 path takes an unaligned head, 16-byte blocks and a
    # tail), or through Autobahn's public process() where the native masker is not there
    monkeypatch.setattr(_autobahn, "_IN_PLACE", in_place)
    mask = bytes([0x5A, 0x01, 0xFF, 0x80])
    for size in (1, 3, 15, 16, 17, 33, 4099, 70_001):
        payload = (bytes(range(256)) * (size // 256 + 1))[:size]
        assert _autobahn.unmasked(bytearray(unmask(payload, mask)), mask) == payload, size


class _Sink(Protocol):
    """The server side of a loopback connection, handed to the test once connected; keeps what it
    receives, and fires ``received`` once it has ``expected`` bytes."""

    expected = 0

    def connectionMade(self) -> None:
        self.data = bytearray()
        self.received: Deferred[None] = Deferred()
        self.factory.connected.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.expected and not self.received.called:
            self.received.callback(None)


@asynccontextmanager
async def loopback() -> AsyncIterator[tuple[_Sink, socket.socket]]:
    """A TCP connection over loopback: the server side's protocol, on the reactor, and the client's socket."""
    factory = Factory.forProtocol(_Sink)
    factory.connected = Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    try:
        yield await factory.connected, client
    finally:
        client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_write_now_delivers_what_transport_write_does_in_the_same_order():
    factory = Factory.forProtocol(_Sink)
    factory.connected = Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small windows: the sockets take part of
    client.settimeout(10)  # a large write, whatever the machine's buffer sizes
    client.connect(("127.0.0.1", port.getHost().port))
    try:
        server = await factory.connected
        server.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        pattern = bytes(range(251))  # a prime period: a remainder cut at the wrong byte shows
        shared = (b"h" * 14, pattern * 1_200, b"c" * 5)  # one frame, as a broadcast writes to every member
        writes = [(pattern[:10],), shared, (pattern * 280,), shared, (b"x", b"y")]
        for pieces in writes:
            _twisted.write_now(server.transport, pieces)
        # the socket took only part of the first large write: the rest waits in Twisted's buffer, and the
        # later writes behind it
        assert server.transport.dataBuffer or server.transport._tempDataLen
        assert shared == (b"h" * 14, pattern * 1_200, b"c" * 5)  # written to many, changed for none
        server.transport.write(b"e" * 7)  # the public path after the fast one
        server.transport.loseConnection()

        def read_all() -> bytes:
            received = bytearray()
            while data := client.recv(65536):
                received += data
            return bytes(received)

        assert await in_thread(read_all) == b"".join(b"".join(pieces) for pieces in writes) + b"e" * 7
    finally:
        client.close()
        await port.stopListening()


class _RaisingTransport:
    """A transport whose writes raise (as one whose producer raised would)."""

    def writeSequence(self, pieces: object) -> None:
        raise RuntimeError("refused")


@pytest_twisted.ensureDeferred
async def test_write_each_delivers_to_each_what_transport_write_does_in_the_same_order():
    # three members of a broadcast: one whose socket takes part of a large frame (small windows, whatever
    # the machine's buffer sizes), one that takes all, one with bytes already waiting in Twisted's buffer
    factory = Factory.forProtocol(_Sink)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    clients: list[socket.socket] = []
    servers: list[_Sink] = []
    try:
        for small in (True, False, False):
            factory.connected = Deferred()
            client = socket.socket()
            if small:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.settimeout(10)
            client.connect(("127.0.0.1", port.getHost().port))
            clients.append(client)
            servers.append(await factory.connected)
        servers[0].transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        servers[2].transport.write(b"before")
        transports = [server.transport for server in servers]
        pattern = bytes(range(251))  # a prime period: a remainder cut at the wrong byte shows
        large = (pattern * 1_200,)  # one frame, shared by every member
        writes = [(pattern[:10],), large, (b"h" * 14, pattern * 3), large, (b"x",)]
        failures: list[tuple[object, Exception]] = []
        broken = _RaisingTransport()
        for pieces in writes:  # a transport whose write raises costs only itself the frame
            _twisted.write_each([*transports[:2], broken, transports[2]], pieces, lambda *f: failures.append(f))
        assert large == (pattern * 1_200,)  # written to many, changed for none
        assert [(transport, str(error)) for transport, error in failures] == [(broken, "refused")] * len(writes)
        # the first member's socket took part of the first large frame: the rest waits in Twisted's buffer,
        # and the later writes behind it
        assert transports[0].dataBuffer or transports[0]._tempDataLen
        for transport in transports:
            transport.write(b"e" * 7)  # the public path after the fast one
            transport.loseConnection()

        def read_all(client: socket.socket) -> bytes:
            received = bytearray()
            while data := client.recv(65536):
                received += data
            return bytes(received)

        expected = b"".join(b"".join(pieces) for pieces in writes) + b"e" * 7
        assert [await in_thread(lambda c=c: read_all(c)) for c in clients] == [expected, expected, b"before" + expected]
    finally:
        for client in clients:
            client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_read_into_fills_the_buffer_then_the_transport_reads_as_usual():
    async with loopback() as (server, client):
        buffer = bytearray(3_000_000)
        counts: list[int] = []
        full: Deferred[None] = Deferred()

        def received(count: int) -> None:
            counts.append(count)
            if sum(counts) == len(buffer):
                full.callback(None)

        assert _twisted.read_into(server.transport, memoryview(buffer), received)
        sent = bytes(range(256)) * (len(buffer) // 256) + b"<" * (len(buffer) % 256)
        server.expected = 5
        await in_thread(lambda: client.sendall(sent + b"after"))
        await full
        await server.received
        assert buffer == sent
        assert bytes(server.data) == b"after"  # what follows comes to dataReceived, as usual
        assert "doRead" not in vars(server.transport)


@pytest_twisted.ensureDeferred
async def test_read_now_reads_what_the_socket_holds_without_waiting_for_the_reactor():
    async with loopback() as (server, client):
        server.transport.pauseProducing()  # the reactor leaves the socket alone
        await in_thread(lambda: client.sendall(b"abc"))
        assert select.select([server.transport.socket], [], [], 10)[0]
        buffer = bytearray(3)
        counts: list[int] = []
        assert _twisted.read_into(server.transport, memoryview(buffer), counts.append)
        _twisted.read_now(server.transport)
        assert (buffer, counts) == (b"abc", [3])
        assert "doRead" not in vars(server.transport)
        _twisted.read_now(server.transport)  # reading as usual again: nothing to do
        server.transport.resumeProducing()


@pytest_twisted.ensureDeferred
async def test_stop_reading_into_puts_the_usual_read_back():
    async with loopback() as (server, client):
        assert _twisted.read_into(server.transport, memoryview(bytearray(10)), lambda count: None)
        _twisted.stop_reading_into(server.transport)
        server.expected = 20
        await in_thread(lambda: client.sendall(b"x" * 20))
        await server.received
        assert bytes(server.data) == b"x" * 20
        assert not _twisted.read_into(object(), memoryview(bytearray(10)), lambda count: None)


def test_forget_exit_signal_clears_the_signal_twistd_would_re_raise():
    class Reactor:
        _exitSignal = 15

    stopped = Reactor()
    _twisted.forget_exit_signal(stopped)
    assert stopped._exitSignal is None
    _twisted.forget_exit_signal(object())  # no such field: nothing to do


@pytest_twisted.ensureDeferred
async def test_unsent_bytes_counts_what_the_transport_holds():
    async with loopback() as (server, _):
        assert _twisted.unsent_bytes(server.transport) == 0
        server.transport.write(b"x" * 8_000_000)
        assert _twisted.unsent_bytes(server.transport) == 8_000_000  # written on the reactor's next turn
        assert _twisted.unsent_bytes(object()) is None  # not a TCP transport: unknown


def _head() -> tuple[bytes, bytes, bytes, Headers]:
    headers = Headers({b"Content-Type": [b"text/plain"], b"Set-Cookie": [b"a=1", b"b=2"]})
    return b"HTTP/1.1", b"200", b"OK", headers


def test_collect_head_gathers_what_write_headers_writes_and_puts_the_transport_back():
    written, gathered = StringTransport(), [b"before"]
    channel = HTTPChannel()
    channel.makeConnection(written)
    channel.writeHeaders(*_head())
    assert _twisted.collect_head(channel, gathered, *_head())
    assert gathered[0] == b"before" and b"".join(gathered[1:]) == written.value()
    assert written.value().endswith(b"\r\n\r\n") and b"Set-Cookie: b=2\r\n" in written.value()
    assert channel.transport is written


def test_collect_head_declines_when_write_headers_asks_more_of_the_transport(monkeypatch):
    def write_headers(self, version, code, reason, headers):
        self.transport.getHost()  # something a future Twisted might do
        self.transport.writeSequence([version, b" ", code, b"\r\n\r\n"])

    monkeypatch.setattr(HTTPChannel, "writeHeaders", write_headers)
    transport, gathered = StringTransport(), [b"before"]
    channel = HTTPChannel()
    channel.makeConnection(transport)
    assert not _twisted.collect_head(channel, gathered, *_head())
    assert gathered == [b"before"] and channel.transport is transport


class _Recording(WebSocketServerProtocol):
    """A server protocol that keeps the request its onConnect is given, and leaves the handshake waiting."""

    request = None

    def onConnect(self, request):
        self.request = request
        return Deferred()


_KEY = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
_UPGRADE = [("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"), _KEY, ("Sec-WebSocket-Version", "13")]


class _RecordingInternals(_autobahn.ProtocolInternals, _Recording):
    """rolo's base of its protocol, recording as :class:`_Recording`."""


def _connected(kind: type[_Recording] = _Recording) -> tuple[_Recording, StringTransport]:
    factory = WebSocketServerFactory()
    factory.protocol = kind
    protocol = factory.buildProtocol(None)
    transport = _Transport()
    protocol.makeConnection(transport)
    return protocol, transport


class _Transport(StringTransport):
    """A transport that, like a TCP one, lets go of no producer without complaint."""

    def unregisterProducer(self) -> None:
        self.producer = None


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/echo", [("Host", "example.com"), *_UPGRADE]),
        (
            "/a/b?x=1&x=2&y=%20",
            [
                ("host", "example.com:8080"),
                *_UPGRADE,
                ("Origin", "https://Example.org:8443"),
                ("Sec-WebSocket-Protocol", "chat, superchat"),
                ("Sec-WebSocket-Protocol", "v2"),
                ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
                ("Sec-WebSocket-Extensions", 'x-other; a="1"'),
                ("X-Many", "1"),
                ("X-Many", " 2 "),
            ],
        ),
        ("http://example.com/abs?q", [("Host", "[::1]"), *_UPGRADE, ("Origin", "null")]),
    ],
)
def test_parsed_handshake_gives_what_autobahn_parses_from_the_request(target, headers):
    parsed, _ = _connected()
    request = _autobahn.parsed_handshake(parsed, target, headers)
    autobahn_parsed, _ = _connected()
    replayed = _replayed(Request(target), headers)
    autobahn_parsed.dataReceived(replayed)
    assert request is not None and autobahn_parsed.request is not None
    fields = ConnectionRequest.__slots__
    assert {name: getattr(request, name) for name in fields} == {
        name: getattr(autobahn_parsed.request, name) for name in fields
    }
    for name in ("http_status_line", "http_request_uri", "_wskey", "websocket_extensions", "websocket_protocols"):
        assert getattr(parsed, name) == getattr(autobahn_parsed, name), name


@pytest.mark.parametrize(
    "headers",
    [
        _UPGRADE,  # no Host
        [("Host", "a"), ("Host", "b"), *_UPGRADE],
        [("Host", "example.com:http"), *_UPGRADE],
        [("Host", "example.com"), *_UPGRADE, ("Origin", "https://")],
        [("Host", "example.com"), *_UPGRADE, ("Sec-WebSocket-Protocol", "a, a")],
    ],
)
def test_parsed_handshake_leaves_to_autobahn_a_request_it_refuses(headers):
    # Autobahn parses these itself and answers 400, as it did before rolo gave it parsed requests
    protocol, transport = _connected()
    assert _autobahn.parsed_handshake(protocol, "/echo", headers) is None
    protocol.dataReceived(_replayed(Request("/echo"), headers))
    assert protocol.request is None
    assert transport.value().startswith(b"HTTP/1.1 400 ")


def test_parsed_handshake_takes_a_header_line_as_twisted_web_parsed_it():
    # Twisted Web ends a header line at CR LF only; Autobahn's parser, up to 26.10, also at other Unicode
    # line breaks, so that a value holding one smuggled a second Host line past rolo's checks, and Autobahn
    # refused it. Autobahn 26.11 ends a line at CR LF only, as Twisted Web does, and takes the replay whole
    headers = [("Host", "example.com"), *_UPGRADE, ("X-A", "a\x85Host: elsewhere")]
    protocol, _ = _connected()
    request = _autobahn.parsed_handshake(protocol, "/echo", headers)
    assert request is not None
    assert (request.host, request.headers["x-a"]) == ("example.com", "a\x85Host: elsewhere")
    replayed, transport = _connected()
    replayed.dataReceived(_replayed(Request("/echo"), headers))
    # either way, no second Host gets through Autobahn's own parser
    refused = transport.value().startswith(b"HTTP/1.1 400 ")
    parsed = replayed.http_headers
    taken_whole = (parsed["host"], parsed["x-a"]) == ("example.com", "a\x85Host: elsewhere")
    assert refused or taken_whole


def test_an_open_protocol_holds_only_what_differs_from_its_class():
    protocol, _ = _connected(_RecordingInternals)
    vars(protocol).update(dict.fromkeys(_autobahn._HANDSHAKE_LEFTOVERS + _autobahn._UNOBSERVED, "kept"))
    if protocol.openHandshakeTimeoutCall is not None:  # as the end of the opening handshake does
        protocol.openHandshakeTimeoutCall.cancel()
        protocol.openHandshakeTimeoutCall = None
    protocol.failedByMe = True  # differs from the value the class gives: stays
    _autobahn.drop_handshake_leftovers(protocol)
    held = set(vars(protocol))
    assert not held & set(_autobahn._HANDSHAKE_LEFTOVERS + _autobahn._UNOBSERVED)
    assert held & set(_autobahn._UNTIL_CLOSING) == {"failedByMe"}
    assert (protocol.failedByMe, protocol.wasClean, protocol.closeHandshakeTimeoutCall) == (True, False, None)


def test_an_open_protocol_makes_what_it_dropped_when_read_and_keeps_a_deferred_someone_waits_for():
    # the Deferreds fired as it opens and as it closes, the UTF-8 validator and the traffic counters:
    # about 0.55 KB a connection, none read by rolo while the connection is idle
    protocol, _ = _connected(_RecordingInternals)
    _autobahn.drop_handshake_leftovers(protocol)  # as onOpen does, just before Autobahn fires is_open
    protocol.is_open.callback(None)
    assert not {"is_open", "is_closed", "utf8validator", "trafficStats"} & set(vars(protocol))
    assert protocol.is_open.called and protocol.is_open.result is None
    assert not protocol.is_closed.called
    assert isinstance(protocol.utf8validator, _autobahn.Utf8Validator)
    protocol.trafficStats.incomingWebSocketMessages += 1  # counted with every other connection
    assert protocol.trafficStats is _autobahn.ProtocolInternals.trafficStats
    closed = protocol.is_closed  # made when read: the same one from then on
    waiting, _ = _connected(_RecordingInternals)
    waiting.is_open.addCallback(lambda _: None)
    waiting.is_closed.addCallback(lambda _: None)
    _autobahn.drop_handshake_leftovers(waiting)
    waiting.is_open.callback(None)
    assert {"is_open", "is_closed"} <= set(vars(waiting))
    assert protocol.is_closed is closed


class Request:
    """What :func:`_replayed` reads of a Twisted Web request."""

    def __init__(self, target: str) -> None:
        self.uri = target.encode("latin-1")


def test_autobahn_names_what_logs_as_it_did_once_per_function():
    protocol, _ = _connected()
    named = (protocol.onConnect, _Recording.onConnect, protocol.processHandshake, _Recording, object())
    for obj in named * 2:  # the second time, from what was kept
        assert _autobahn._hltype_once(obj) == autobahn.util.hltype(obj)
    assert set(_autobahn._NAMED) >= {_Recording.onConnect, WebSocketServerProtocol.processHandshake}


class _FailsAsItCloses(_Sink):
    def connectionLost(self, reason: object = None) -> None:
        raise RuntimeError("a protocol that fails as its connection closes")


@asynccontextmanager
async def failing_connection(protocol: type[_Sink]) -> AsyncIterator[tuple[_Sink, socket.socket, Deferred[dict]]]:
    """A connection over loopback to a ``protocol`` that fails, on the reactor dispatching directly: the
    server side's protocol, the client's socket, and the first failure the legacy log records."""
    assert _twisted.dispatch_directly(reactor)
    assert vars(reactor)["doIteration"].__func__ is _twisted._do_poll  # what a TwistedGateway's start does
    logged: Deferred[dict] = Deferred()

    def observe(event: dict) -> None:
        if "failure" in event and not logged.called:  # a legacy log.err
            reactor.callLater(0, logged.callback, event)  # not from inside the poll: the test runs on it

    globalLogPublisher.addObserver(observe)
    factory = Factory.forProtocol(protocol)
    factory.connected = Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as client:
            yield await factory.connected, client, logged.addTimeout(10, reactor)
    finally:
        globalLogPublisher.removeObserver(observe)
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_reactor_dispatching_directly_logs_what_an_event_raises_under_the_connection_and_goes_on():
    async with failing_connection(_FailsAsItCloses) as (server, client, logged):
        client.close()  # the read event ends the connection, whose connectionLost raises out of the event
        event = await logged
        assert event["failure"].check(RuntimeError)
        assert event["log_system"] == server.transport.logPrefix()
    async with loopback() as (sink, other):  # the reactor still serves
        sink.expected = 5
        await in_thread(lambda: other.sendall(b"hello"))
        await sink.received
        assert bytes(sink.data) == b"hello"


class _FailsAsItReads(_Sink):
    def dataReceived(self, data: bytes) -> None:
        raise RuntimeError("a protocol that fails as it reads")


@pytest_twisted.ensureDeferred
async def test_the_reactor_dispatching_directly_still_logs_what_a_protocol_raises_as_it_reads():
    # Twisted catches it and logs it itself, under the legacy log's context, which the direct dispatch does
    # not push: the failure is logged (with "-" as its system, as docs/serving.rst says) and the connection
    # closed
    async with failing_connection(_FailsAsItReads) as (_, client, logged):
        client.sendall(b"x")
        event = await logged
        assert event["failure"].check(RuntimeError) and event["log_system"] == "-"
        assert await in_thread(client.recv, 1) == b""  # the connection is closed


@pytest_twisted.ensureDeferred
async def test_calls_after_the_poll_run_in_order_and_one_that_raises_is_logged_without_stopping_the_rest():
    assert _twisted.dispatch_directly(reactor)  # what a TwistedGateway's start does
    ran: list[str] = []
    failures: list[dict] = []
    done: Deferred[None] = Deferred()

    def observe(event: dict) -> None:
        if "failure" in event:  # a legacy log.err
            failures.append(event)

    def first() -> None:
        ran.append("first")
        _twisted.call_after_poll(reactor, later)  # made by a call after the poll: after the next poll

    def raising() -> None:
        ran.append("raising")
        raise RuntimeError("a call after the poll that fails")

    def later() -> None:
        ran.append("later")
        done.callback(None)

    globalLogPublisher.addObserver(observe)
    try:
        for call in (first, raising, lambda: ran.append("after the one that raised")):
            assert _twisted.call_after_poll(reactor, call)
        await done.addTimeout(10, reactor)  # the poll does not wait for an event: none comes
    finally:
        globalLogPublisher.removeObserver(observe)
    assert ran == ["first", "raising", "after the one that raised", "later"]
    assert [event["failure"].check(RuntimeError) for event in failures] == [RuntimeError]


@pytest_twisted.ensureDeferred
async def test_a_call_after_the_poll_interrupted_leaves_the_calls_behind_it_to_run():
    # a KeyboardInterrupt passes out of the poll (as out of log.callWithLogger); the reactor's main loop
    # logs it and goes on. Before, the calls made for after the poll behind the interrupted one were
    # dropped unrun: a turn of WebSocket handlers among them was never run, and no turn after it either
    assert _twisted.dispatch_directly(reactor)  # what a TwistedGateway's start does
    ran: list[str] = []
    done: Deferred[None] = Deferred()

    def interrupted() -> None:
        ran.append("interrupted")
        raise KeyboardInterrupt

    def behind() -> None:
        ran.append("behind")
        done.callback(None)

    for call in (interrupted, behind):
        assert _twisted.call_after_poll(reactor, call)
    await done.addTimeout(10, reactor)
    assert ran == ["interrupted", "behind"]


@pytest_twisted.ensureDeferred
async def test_calls_from_threads_run_on_the_reactor_in_order():
    call_from_thread = _twisted.call_from_thread(reactor)
    assert call_from_thread != reactor.callFromThread  # the fast path, with the versions tested
    reactor_thread = threading.get_ident()
    ran: list[tuple[int, bool]] = []
    done: Deferred[None] = Deferred()

    def make_calls() -> None:
        for number in range(1000):
            call_from_thread(lambda number=number: ran.append((number, threading.get_ident() == reactor_thread)))
        call_from_thread(lambda: done.callback(None))

    await in_thread(make_calls)
    await done.addTimeout(10, reactor)
    assert ran == [(number, True) for number in range(1000)]


@pytest_twisted.ensureDeferred
async def test_a_call_from_a_thread_finds_the_waker_pipe_full_and_still_runs():
    # filled here, on the reactor's thread, so that the reactor cannot read it meanwhile: the wake-up's
    # write fails with EAGAIN, which says the reactor has wake-ups to read already
    for size in (4096, 1):  # a write of up to 4 KiB is all or nothing: the last bytes one at a time
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(reactor.waker.o, b"x" * size)
    done: Deferred[str] = Deferred()
    _twisted.call_from_thread(reactor)(lambda: done.callback("ran"))
    assert await done.addTimeout(10, reactor) == "ran"


@pytest.mark.parametrize(("delay", "elapsed"), [(None, 0.0), (1.0, 6.0), (0.0, 0.0), (3.5, 0.0), (1e10, 0.0)])
def test_the_reactors_timeout_without_min_and_max_is_twisteds(delay, elapsed):
    other = epollreactor.EPollReactor()  # never run: its clock is set below
    try:
        other.seconds = lambda: 1000.0
        if delay is not None:
            other.callLater(delay, lambda: None)
        other.seconds = lambda: 1000.0 + elapsed
        ours = _twisted._timeout(other)
        assert ours == base.ReactorBase.timeout(other)
        assert type(ours) is type(base.ReactorBase.timeout(other))
    finally:
        other.waker.connectionLost(None)
        other._poller.close()


@pytest_twisted.ensureDeferred
async def test_the_poll_reads_the_wakers_pipe_and_the_reactor_sleeps_again():
    assert _twisted.dispatch_directly(reactor)  # what a TwistedGateway's start does
    assert "timeout" in vars(reactor)
    # each wake-up read (8 KiB at most at a time: a test before may have filled the pipe), or the pipe
    # would stay readable and the poll never wait
    for _ in range(20):
        done: Deferred[None] = Deferred()
        await in_thread(lambda done=done: _twisted.call_from_thread(reactor)(lambda: done.callback(None)))
        await done.addTimeout(10, reactor)
        readable, _, _ = select.select([reactor.waker.i], [], [], 0)
        if not readable:
            break
    assert not readable


def test_a_reactor_that_wakes_otherwise_calls_from_threads_its_own_way():
    class Reactor:
        def callFromThread(self, call):
            pass

    other = Reactor()
    assert _twisted.call_from_thread(other) == other.callFromThread


@pytest_twisted.ensureDeferred
async def test_a_reactor_whose_wake_up_does_more_than_the_one_tested_is_woken_through_it(monkeypatch):
    # as a Twisted whose ReactorBase.wakeUp does more than call the waker's would be: call_from_thread
    # stands in for that wakeUp too, so it takes the public path rather than skip what it does
    woken: list[int] = []  # the threads that woke the reactor
    wake_up = base.ReactorBase.wakeUp

    def counted_wake_up(self) -> None:
        woken.append(threading.get_ident())
        wake_up(self)

    monkeypatch.setattr(base.ReactorBase, "wakeUp", counted_wake_up)
    done: Deferred[None] = Deferred()
    call_from_thread = _twisted.call_from_thread(reactor)

    def call() -> int:
        call_from_thread(lambda: done.callback(None))
        return woken.count(threading.get_ident())

    assert await in_thread(call) == 1
    await done.addTimeout(10, reactor)


def test_a_poll_that_names_more_than_the_one_tested_is_kept():
    def do_poll(self, timeout):  # names what EPollReactor.doPoll does, and one thing more
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as error:
            if error.errno == errno.EINTR:
                return
            raise
        for fd, event in events:
            try:
                selectable = self._selectables[fd]
            except KeyError:
                continue
            log.callWithLogger(selectable, self._doReadOrWrite, selectable, fd, event)
            self.events_handled += 1

    assert not _twisted.poll_is_known(do_poll)


@route("/echo-frames", methods=["WEBSOCKET"])
def _echo_frames(request: WebSocketRequest) -> None:
    with request.accept() as websocket:
        for message in websocket:
            websocket.send(message)


@pytest.mark.servers("twisted", reason="Autobahn's receive path, which only TwistedGateway takes")
@pytest.mark.parametrize("parses_directly", [True, False])
@pytest_twisted.ensureDeferred
async def test_reads_go_to_the_parser_directly_or_through_autobahns_data_received_alike(
    serve, monkeypatch, parses_directly
):
    # the protocol hands an open connection's reads to rolo's parser itself where Autobahn's dataReceived
    # is the one it was written against; otherwise Autobahn's dataReceived does, with the same result
    monkeypatch.setattr(_autobahn.ProtocolInternals, "parses_directly", parses_directly)
    server = serve(_echo_frames)

    def client() -> list[tuple[int, bytes]]:
        ws = wsclient.create_connection(server.ws("/echo-frames"), timeout=10)
        try:
            got = []
            for payload in (b"a", b"t" * 125, b"u" * 126, "zwölf".encode()):
                ws.send(payload.decode(), opcode=wsclient.ABNF.OPCODE_TEXT)
                got.append(ws.recv_data())
            ws.send_binary(bytes(range(256)) * 300)
            got.append(ws.recv_data())
            # a message in three fragments with a ping between them, and two frames in one write
            ws.send_frame(wsclient.ABNF.create_frame(b"frag", wsclient.ABNF.OPCODE_TEXT, fin=0))
            ws.ping(b"p")
            ws.send_frame(wsclient.ABNF.create_frame(b"men", wsclient.ABNF.OPCODE_CONT, fin=0))
            ws.send_frame(wsclient.ABNF.create_frame(b"ted", wsclient.ABNF.OPCODE_CONT, fin=1))
            got.append(ws.recv_data(control_frame=True))  # the pong
            got.append(ws.recv_data())
            both = b"".join(
                wsclient.ABNF.create_frame(text, wsclient.ABNF.OPCODE_TEXT).format() for text in (b"one", b"two")
            )
            ws.sock.sendall(both)
            got += [ws.recv_data(), ws.recv_data()]
            return got
        finally:
            ws.close()

    text, binary, pong = wsclient.ABNF.OPCODE_TEXT, wsclient.ABNF.OPCODE_BINARY, wsclient.ABNF.OPCODE_PONG
    assert await in_thread(client) == [
        (text, b"a"),
        (text, b"t" * 125),
        (text, b"u" * 126),
        (text, "zwölf".encode()),
        (binary, bytes(range(256)) * 300),
        (pong, b"p"),
        (text, b"fragmented"),
        (text, b"one"),
        (text, b"two"),
    ]
