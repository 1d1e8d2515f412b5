"""wss:// through a Twisted ``ssl:`` endpoint, with a certificate made for the test."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request

import pytest
import pytest_twisted
import websocket as wsclient
from twisted.internet import reactor
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from websockets.sync.client import connect as websockets_connect

from rolo import Response, route
from rolo.serving.twisted import TwistedGateway
from rolo.websocket import WebSocketRequest
from tests.conftest import gateway_for
from tests.helpers import in_thread, self_signed_certificate
from tests.websocket.test_flow import echo_large_messages

# Twisted's ssl: endpoint still hands pyOpenSSL its own certificate and key types
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


@route("/echo", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest):
    with request.accept() as ws:
        ws.send(f"secure={request.is_secure}")
        for message in ws:
            ws.send(message)


@route("/hello")
def hello(request):
    return Response("hello over TLS")


@pytest.fixture
def tls_server(request, tmp_path):
    """A TwistedGateway on an ``ssl:`` endpoint: yields (port number, certificate path).

    Its header timeout is 10 seconds, or the seconds a test passes as the fixture's indirect parameter: a
    short one would cut off a client whose TLS handshake a loaded machine slows down.
    """
    key, cert = self_signed_certificate(tmp_path)
    header_timeout = getattr(request, "param", 10.0)
    site = TwistedGateway(gateway_for(echo, hello), header_timeout=header_timeout, max_message_size=2 * 1024 * 1024)
    key_argument, cert_argument = quoteStringArgument(str(key)), quoteStringArgument(str(cert))
    description = f"ssl:0:interface=127.0.0.1:privateKey={key_argument}:certKey={cert_argument}"
    port = pytest_twisted.blockon(serverFromString(reactor, description).listen(site))
    yield port.getHost().port, cert
    pytest_twisted.blockon(port.stopListening())
    pytest_twisted.blockon(site.stop())


@pytest_twisted.ensureDeferred
async def test_wss_with_websocket_client(tls_server):
    port, cert = tls_server

    def client():
        ws = wsclient.create_connection(f"wss://127.0.0.1:{port}/echo", timeout=10, sslopt={"ca_certs": str(cert)})
        try:
            greeting = ws.recv()
            ws.send("over TLS")
            return greeting, ws.recv(), ws.sock.version()
        finally:
            ws.close()

    greeting, echoed, version = await in_thread(client)
    print(f"wss via websocket-client: {version}")
    assert (greeting, echoed) == ("secure=True", "over TLS")


@pytest_twisted.ensureDeferred
async def test_large_messages_arrive_whole_over_tls(tls_server):
    # over TLS the server copies each piece of a large frame as it comes, where over TCP it reads the rest
    # of the frame straight into its buffer
    port, cert = tls_server

    def client() -> bool:
        ws = wsclient.create_connection(f"wss://127.0.0.1:{port}/echo", timeout=10, sslopt={"ca_certs": str(cert)})
        assert ws.recv() == "secure=True"
        return echo_large_messages(ws)

    assert await in_thread(client)


@pytest_twisted.ensureDeferred
async def test_wss_with_websockets_and_https_on_the_same_port(tls_server):
    port, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))

    def client():
        with websockets_connect(f"wss://localhost:{port}/echo", ssl=context, open_timeout=10) as ws:
            greeting = ws.recv(timeout=10)
            ws.send(b"\x00binary\xff")
            echoed = ws.recv(timeout=10)
        with urllib.request.urlopen(f"https://localhost:{port}/hello", context=context, timeout=10) as response:
            return greeting, echoed, response.read()

    assert await in_thread(client) == ("secure=True", b"\x00binary\xff", b"hello over TLS")


@pytest_twisted.ensureDeferred
async def test_untrusted_client_certificate_check_fails_and_server_keeps_serving(tls_server):
    port, cert = tls_server

    def clients():
        with pytest.raises(ssl.SSLCertVerificationError):
            wsclient.create_connection(f"wss://127.0.0.1:{port}/echo", timeout=10)  # the system's CAs only
        ws = wsclient.create_connection(f"wss://127.0.0.1:{port}/echo", timeout=10, sslopt={"ca_certs": str(cert)})
        greeting = ws.recv()
        ws.close()
        return greeting

    assert await in_thread(clients) == "secure=True"


@pytest.mark.parametrize("tls_server", [0.5], indirect=True)
@pytest_twisted.ensureDeferred
async def test_client_that_never_starts_tls_is_dropped(tls_server):
    port, _ = tls_server

    def silent():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            started = time.monotonic()
            try:
                closed = sock.recv(4096) == b""
            except ConnectionResetError:
                closed = True  # cut off: it never took the 408, which waits for a TLS handshake
            return closed, time.monotonic() - started

    closed, elapsed = await in_thread(silent)
    print(f"silent TLS client dropped after {elapsed:.2f}s")
    assert closed and elapsed < 5
