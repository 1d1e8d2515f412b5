"""listen(): serving a gateway on the reactor the application runs (here, the test's)."""

from __future__ import annotations

import http.client
import logging
import re
import socket
import urllib.request
from typing import Any

import pytest
import pytest_twisted
import websocket as wsclient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint

from rolo.serving.twisted import GatewayService, listen
from rolo.serving.twisted.app import AppError, load_app
from tests.helpers import in_thread

from .apps import make_gateway, router
from .test_twistd import close_frame

LOOPBACK = "tcp:0:interface=127.0.0.1"


class RecordingEndpoint:
    """A server endpoint that remembers the port it listened on, and its number."""

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self.endpoint = endpoint
        self.port: Any = None
        self.number = 0

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        def record(port: IListeningPort) -> IListeningPort:
            self.port, self.number = port, port.getHost().port
            return port

        return self.endpoint.listen(factory).addCallback(record)


def refuses_connections(port: int) -> bool:
    with socket.socket() as client:
        return client.connect_ex(("127.0.0.1", port)) != 0


@pytest_twisted.ensureDeferred
async def test_listen_serves_until_stopped_and_stopping_says_going_away():
    service = await listen(router, LOOPBACK)
    assert isinstance(service, GatewayService) and service.running
    port = service.ports[0].getHost().port

    def talk() -> wsclient.WebSocket:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/dan", timeout=10) as response:
            assert response.read() == b"hello dan"
        ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/dan", timeout=10)
        assert ws.recv() == "thanks for connecting dan"
        return ws

    ws = await in_thread(talk)
    closing = in_thread(close_frame, ws)
    await service.stopService()
    assert await closing == (1001, b"server shutting down")
    ws.close()
    assert not service.running and service.ports == []
    assert await in_thread(refuses_connections, port)
    await service.stopService()  # again: nothing to do


@pytest_twisted.ensureDeferred
async def test_listen_on_several_endpoints(tmp_path):
    path = tmp_path / "rolo.sock"
    service = await listen(make_gateway(), LOOPBACK, f"unix:{path}")
    try:
        _tcp, unix = service.ports
        assert unix.getHost().name in (str(path), str(path).encode())

        def get_over_unix() -> bytes:
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(10)
                client.connect(str(path))
                client.sendall(b"GET /hello/unix HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return b"".join(iter(lambda: client.recv(4096), b""))

        assert (await in_thread(get_over_unix)).endswith(b"hello unix")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_listen_fails_on_a_taken_port_and_closes_the_other_endpoints():
    first = RecordingEndpoint(serverFromString(reactor, LOOPBACK))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListenError):
            await listen(router, first, f"tcp:{port}:interface=127.0.0.1")
    assert first.port is not None and not first.port.connected
    assert await in_thread(refuses_connections, first.number)


@pytest_twisted.ensureDeferred
async def test_listen_rejects_a_bad_endpoint_or_app():
    with pytest.raises(ValueError, match="bad endpoint 'tcp:nope'"):
        await listen(router, "tcp:nope")
    with pytest.raises(TypeError, match="expected a rolo Gateway or Router"):
        await listen(object(), LOOPBACK)  # type: ignore[arg-type]


def test_load_app_takes_a_router_a_gateway_or_a_factory_of_either():
    gateway = load_app("tests.serving.apps:router")
    assert gateway.request_handlers[0].router is router
    assert load_app("tests.serving.apps:make_gateway").request_handlers[0].router is router
    assert load_app("tests.serving.apps:server.router").request_handlers[0].router is router
    with pytest.raises(AppError, match=r"has no attribute server\.nosuch"):
        load_app("tests.serving.apps:server.nosuch")


@pytest_twisted.ensureDeferred
async def test_a_connection_kept_alive_past_the_stop_gets_503():
    service = await listen(router, LOOPBACK)
    connection = http.client.HTTPConnection("127.0.0.1", service.ports[0].getHost().port, timeout=10)

    def get() -> tuple[int, bytes, str | None]:
        connection.request("GET", "/hello/kept")
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Connection")

    try:
        assert (await in_thread(get))[:2] == (200, b"hello kept")
        await service.stopService()
        assert await in_thread(get) == (503, b"server shutting down\n", "close")
    finally:
        connection.close()


def open_without_answering_closes(port: int, path: str) -> socket.socket:
    """A WebSocket client on a raw socket, opened on ``path`` and past the server's first message: one
    that will not answer the server's close."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        received += client.recv(4096)
    assert received.startswith(b"HTTP/1.1 101 "), received
    return client


def read_until_gone(client: socket.socket) -> bytes:
    """What the server sends until it ends the connection (closes or resets it)."""
    received = []
    try:
        while chunk := client.recv(4096):
            received.append(chunk)
    except ConnectionResetError:  # the server dropped it
        pass
    return b"".join(received)


@pytest_twisted.ensureDeferred
async def test_a_client_that_does_not_answer_the_shutdowns_close_leaves_its_handler_time_to_return(caplog):
    # close_timeout and grace_period alike, as by default: the closing handshake used to run out as the
    # grace period did, and the handler, woken only then, was reported as still running
    service = await listen(router, LOOPBACK, grace_period=2, close_timeout=2)
    client = await in_thread(open_without_answering_closes, service.ports[0].getHost().port, "/ws/pid")
    try:
        received = in_thread(read_until_gone, client)
        started = reactor.seconds()
        with caplog.at_level(logging.INFO, logger="rolo.serving.twisted.protocol"):
            await service.stopService()
        assert service.site.websocket.host.handlers.running == 0
        assert "still running" not in caplog.text
        # dropped at half the grace period, and its handler returned within the other half
        assert reactor.seconds() - started < 2
        assert (await received).endswith(b"\x88\x16\x03\xe9server shutting down")
    finally:
        client.close()
    # its line says it was dropped, unanswered, where it said "closed by the server" as after a closing handshake
    ends = [message for message in caplog.messages if message.startswith(("WebSocket closed", "WebSocket dropped"))]
    assert len(ends) == 1, ends
    dropped = re.fullmatch(
        r"WebSocket dropped by the server /ws/pid from tcp4:127\.0\.0\.1:\d+: code 1001 after \d+\.\d{3}s: "
        r"server shutting down; the client did not answer the close in (\d+\.\d{3})s",
        ends[0],
    )
    assert dropped is not None, ends[0]
    assert float(dropped[1]) >= 1.0  # the closing time: half the grace period


@pytest_twisted.ensureDeferred
async def test_a_shutdown_whose_clients_answer_its_close_leaves_no_drop_behind():
    # the drop is for clients that do not answer in time: once every handler has returned first, it is
    # cancelled, or it would still cut connections later (those of the service started again meanwhile)
    service = await listen(router, LOOPBACK, grace_period=10, close_timeout=10)
    port = service.ports[0].getHost().port
    client = await in_thread(wsclient.create_connection, f"ws://127.0.0.1:{port}/ws/pid", timeout=10)
    try:
        await in_thread(client.recv)  # the pid: the handler runs
        answered = in_thread(client.recv)  # websocket-client answers the close as it receives it
        await service.stopService()
        await answered
        assert service.site.websocket.host.handlers.running == 0
        drop_open = service.site.websocket.host.drop_open
        assert [call for call in reactor.getDelayedCalls() if call.func == drop_open] == []
    finally:
        client.close()



class FirstRecord(logging.Handler):
    """A logging handler whose :attr:`logged` fires with the first record's message, once the logging call
    that made it has returned: fired within it, the test would go on and end while the record still goes
    on to the root logger's handlers, those of whichever test runs next."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: Deferred[str] = Deferred()
        self._seen = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self._seen:
            self._seen = True
            reactor.callLater(0, self.logged.callback, record.getMessage())


@pytest_twisted.ensureDeferred
async def test_a_request_whose_connection_ends_amid_its_body_once_stopping_says_so():
    # the process's exit cuts such a connection too, after the stop: its line said "the client left"
    service = await listen(router, LOOPBACK, grace_period=1)
    port = service.ports[0].getHost().port

    def send_half() -> socket.socket:
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
        return client

    http_log = logging.getLogger("rolo.serving.twisted.http")
    first = FirstRecord()
    http_log.addHandler(first)
    level = http_log.level
    http_log.setLevel(logging.INFO)
    try:
        client = await in_thread(send_half)
        await service.stopService()
        client.close()
        line = await first.logged.addTimeout(10, reactor)
    finally:
        http_log.removeHandler(first)
        http_log.setLevel(level)
    assert re.fullmatch(
        r"POST /upload from tcp4:127\.0\.0\.1:\d+: - in \d+\.\d{3}s "
        r"\(server stopping: the connection ended before the request body did\)",
        line,
    )
