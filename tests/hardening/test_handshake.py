"""Malformed opening handshakes get a 4xx, never reach a handler, and leave the server serving."""

from __future__ import annotations

import http.client
import io
import socket
import time
from http import HTTPStatus

import pytest
import pytest_twisted
import websocket as wsclient

from rolo import Response, route
from rolo.websocket import WebSocketRequest
from tests.helpers import in_thread

from .support import WEBSOCKET_KEY, client_frame, response_head, status_of, upgrade_request

GOOD = [
    ("Host", "127.0.0.1"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", WEBSOCKET_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def without(name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in GOOD if n != name]


def replaced(name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n == name else v) for n, v in GOOD]


def plus(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    return GOOD + list(extra)


MALFORMED = {
    "missing key": upgrade_request(headers=without("Sec-WebSocket-Key")),
    "empty key": upgrade_request(headers=replaced("Sec-WebSocket-Key", "")),
    "key not base64": upgrade_request(headers=replaced("Sec-WebSocket-Key", "not*base64*at*all*!!!!==")),
    "key of 8 bytes": upgrade_request(headers=replaced("Sec-WebSocket-Key", "AAAAAAAAAAA=")),
    "two keys": upgrade_request(headers=plus(("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="))),
    "missing version": upgrade_request(headers=without("Sec-WebSocket-Version")),
    "version 12": upgrade_request(headers=replaced("Sec-WebSocket-Version", "12")),
    "version not a number": upgrade_request(headers=replaced("Sec-WebSocket-Version", "thirteen")),
    "two versions": upgrade_request(headers=plus(("Sec-WebSocket-Version", "13"))),
    "missing Connection": upgrade_request(headers=without("Connection")),
    "Connection keep-alive": upgrade_request(headers=replaced("Connection", "keep-alive")),
    "missing Upgrade": upgrade_request(headers=without("Upgrade")),
    "Upgrade h2c": upgrade_request(headers=replaced("Upgrade", "h2c")),
    "POST": upgrade_request(method="POST"),
    "HEAD": upgrade_request(method="HEAD"),
    "HTTP/1.0": upgrade_request(version="HTTP/1.0"),
    "no HTTP version": b"GET /ws\r\nHost: 127.0.0.1\r\n\r\n",
    "missing Host": upgrade_request(headers=without("Host")),
    "empty Host": upgrade_request(headers=replaced("Host", "")),
    "Host with a space": upgrade_request(headers=replaced("Host", "exa mple.com")),
    "Host with a path": upgrade_request(headers=replaced("Host", "example.com/evil")),
    "Host with a bad port": upgrade_request(headers=replaced("Host", "127.0.0.1:http")),
    "two Hosts": upgrade_request(headers=plus(("Host", "evil.example"))),
    "header line over 16 KiB": upgrade_request(headers=plus(("X-Big", "x" * 20_000))),
    "headers over 16 KiB": upgrade_request(headers=plus(*[(f"X-Big-{i}", "x" * 4000) for i in range(5)])),
    "600 headers": upgrade_request(headers=plus(*[(f"X-{i}", "x") for i in range(600)])),
    "request line over 16 KiB": upgrade_request(path="/ws?" + "q" * 20_000),
    "percent-encoded path not UTF-8": upgrade_request(path="/ws/%FF%FE"),
    "raw path not UTF-8": upgrade_request().replace(b"/ws", b"/ws/\xff\xfe", 1),
    "header without a colon": upgrade_request(headers=plus(("X-No-Colon", "x"))).replace(b"X-No-Colon: ", b"X"),
    "space before colon": upgrade_request(headers=plus(("X-Name ", "x"))),
    "NUL in a header value": upgrade_request(headers=plus(("X-Nul", "a\x00b"))),
    "fragment in target": upgrade_request(path="/ws#fragment"),
    "Content-Length not a number": upgrade_request(headers=plus(("Content-Length", "abc"))),
    "Transfer-Encoding gzip": upgrade_request(headers=plus(("Transfer-Encoding", "gzip"))),
    "Content-Length and chunked": upgrade_request(
        headers=plus(("Content-Length", "4"), ("Transfer-Encoding", "chunked"))
    ),
    "duplicate subprotocols": upgrade_request(headers=plus(("Sec-WebSocket-Protocol", "chat, chat"))),
    "a subprotocol in two headers": upgrade_request(
        headers=plus(("Sec-WebSocket-Protocol", "chat, , v2"), ("sec-websocket-protocol", " chat"))
    ),
    "two Origins": upgrade_request(headers=plus(("Origin", "http://127.0.0.1"), ("origin", "http://127.0.0.1"))),
    "version 13 and, in lower case, 12": upgrade_request(headers=plus(("sec-websocket-version", "12"))),
}

calls: list[str] = []


@route("/ws", methods=["WEBSOCKET"])
def recorded_echo(request: WebSocketRequest):
    calls.append(request.path)
    with request.accept() as ws:
        for message in ws:
            ws.send(message)


@pytest.fixture(params=["HTTP errors handled", "router only"])
def server(request, serve):
    calls.clear()
    server = serve(recorded_echo)
    if request.param == "router only":
        # as the seed's gateway: without WerkzeugExceptionHandler an HTTP error from routing is a 500
        server.app.gateway.exception_handlers.clear()
    return server


def echo_once(url: str) -> str:
    ws = wsclient.create_connection(url, timeout=10)
    try:
        ws.send("still serving")
        return ws.recv()
    finally:
        ws.close()


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
@pytest_twisted.ensureDeferred
async def test_malformed_upgrade_gets_4xx_and_never_reaches_a_handler(server, request_bytes):
    address = (server.host, server.port)
    head = await in_thread(response_head, address, request_bytes)
    status = status_of(head)
    assert status is not None and 400 <= status < 500, head[:200]
    assert calls == []
    assert await in_thread(echo_once, server.ws("/ws")) == "still serving"
    assert calls == ["/ws"]


def test_at_least_twenty_kinds():
    assert len(MALFORMED) >= 20


RFC_9110_PHRASES = {413: "Content Too Large", 414: "URI Too Long", 422: "Unprocessable Content"}


def parsed_response(head_and_body: bytes) -> http.client.HTTPResponse:
    """The response as an HTTP client parses it (http.client raises for one that is not well-formed)."""

    class Received(io.BytesIO):
        def makefile(self, *args, **kwargs):
            return self

    response = http.client.HTTPResponse(Received(head_and_body))  # type: ignore[arg-type]
    response.begin()
    return response


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
@pytest_twisted.ensureDeferred
async def test_every_refusal_is_a_well_formed_response_with_the_headers_its_status_requires(server, request_bytes):
    head = await in_thread(response_head, (server.host, server.port), request_bytes)
    response = parsed_response(head)
    if response.status == 405:  # RFC 9110 15.5.6
        assert response.getheader("Allow") == "GET"
    if response.status == 426:  # RFC 9110 15.5.22, RFC 6455 4.4
        assert response.getheader("Upgrade") == "websocket"
        assert response.getheader("Sec-WebSocket-Version") == "13"
    # a reason phrase is the status's (as RFC 9110 or Python names it), not a library's message
    phrases = (HTTPStatus(response.status).phrase, RFC_9110_PHRASES.get(response.status))
    assert response.reason in phrases, response.reason


@pytest.mark.parametrize("behind", [1, 40_000], ids=["one frame", "40 KB of frames"])
@pytest_twisted.ensureDeferred
async def test_what_the_client_sends_with_the_upgrade_request_is_not_lost(server, behind):
    """A client may send its first frames in the same packet as the upgrade request; none may be lost or
    left behind in the HTTP layer, and the connection goes on reading after them."""
    frames = [client_frame(0x1, f"{n:06d}".encode()) for n in range(max(1, behind // 12))]

    def client() -> list[bytes]:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(upgrade_request() + b"".join(frames))
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            head, echoed = received.split(b"\r\n\r\n", 1)
            assert status_of(head) == 101
            wanted = len(frames) * 8  # each echo: 2 bytes of header, 6 of payload
            while len(echoed) < wanted:
                echoed += sock.recv(65536)
            sock.sendall(client_frame(0x1, b"after"))
            while len(echoed) < wanted + 7:
                echoed += sock.recv(65536)
            return [echoed[i + 2 : i + 8] for i in range(0, wanted, 8)] + [echoed[wanted + 2 :]]

    echoed = await in_thread(client)
    assert echoed == [f"{n:06d}".encode() for n in range(len(frames))] + [b"after"]


BAD_FIELDS = {
    "value beyond Latin-1": ("X-A", "☃"),
    "line feed in a value": ("X-A", "a\nb"),
    "carriage return in a value": ("X-A", "a\rSet-Cookie: evil=1"),
    "line break in a name": ("X-A\r\nSet-Cookie", "evil=1"),
    "space in a name": ("X A", "1"),
    "empty name": ("", "1"),
}


@pytest.mark.parametrize("field", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
@pytest.mark.parametrize("answer", ["accept", "reject"])
@pytest_twisted.ensureDeferred
async def test_a_header_the_handler_gives_that_is_not_a_valid_field_fails_in_its_thread(serve, answer, field):
    """The handler's accept or reject raises ValueError, and the gateway's usual 500 follows at once:
    never a split response, nor a client left waiting for the open timeout."""
    errors: list[Exception] = []

    @route("/bad", methods=["WEBSOCKET"])
    def bad(request: WebSocketRequest):
        try:
            if answer == "accept":
                request.accept(headers=[field])
            else:
                request.reject(Response("no", 403, headers=[field]))
        except ValueError as error:
            errors.append(error)
            raise

    server = serve(bad, open_timeout=30)

    def refused() -> tuple[int, float]:
        started = time.monotonic()
        with pytest.raises(wsclient.WebSocketBadStatusException) as info:
            wsclient.create_connection(server.ws("/bad"), timeout=30)
        return info.value.status_code, time.monotonic() - started

    status, took = await in_thread(refused)
    print(f"{answer} with {field!r}: {status} after {took * 1000:.0f} ms")
    assert status == 500
    assert len(errors) == 1
