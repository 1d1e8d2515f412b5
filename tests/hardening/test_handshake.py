"""Malformed opening handshakes get a 4xx, never reach a handler, and leave the server serving."""

from __future__ import annotations

import pytest
import pytest_twisted
import websocket as wsclient

from rolo import route
from rolo.websocket import WebSocketRequest

from tests.helpers import in_thread

from .support import WEBSOCKET_KEY, response_head, status_of, upgrade_request

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
