"""Behind a proxy: the client's address and scheme come from Forwarded, or X-Forwarded-For and
X-Forwarded-Proto, on connections from the proxies ``forwarded_allow_ips`` trusts, and only from them: in
``request.remote_addr`` and ``request.scheme``, for HTTP and WebSocket requests, and in the log.

The proxy here is the test itself, sending the headers over a real socket from 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

import pytest
import pytest_twisted
import websocket as wsclient
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from rolo import route
from rolo.serving.twisted import TwistedGateway, TwistedSettings
from rolo.serving.twisted.forwarded import TrustedProxies
from rolo.serving.twisted.tap import Options
from rolo.websocket import WebSocketRequest

from ..conftest import gateway_for
from ..helpers import in_thread


@route("/who")
def who(request):
    return f"{request.remote_addr} {request.scheme}"


@route("/who/ws", methods=["WEBSOCKET"])
def who_ws(request: WebSocketRequest):
    with request.accept() as websocket:
        websocket.send(f"{request.remote_addr} {request.scheme}")


@pytest.fixture
def serve_behind():
    """``await serve_behind(endpoint, **settings)`` serves the routes above; gives its listening port."""
    ports, sites = [], []

    async def start(endpoint: str = "tcp:0:interface=127.0.0.1", **settings: Any) -> Any:
        site = TwistedGateway(gateway_for(who, who_ws), **settings)
        port = await serverFromString(reactor, endpoint).listen(site)
        ports.append(port)
        sites.append(site)
        return port

    yield start
    for port, site in zip(ports, sites):
        pytest_twisted.blockon(port.stopListening())
        pytest_twisted.blockon(site.stop())


def get(address: Any, headers: dict[str, str], family: int = socket.AF_INET) -> str:
    """``GET /who`` with ``headers``, as a proxy would forward it: the body of the answer."""
    lines = ["GET /who HTTP/1.1", "Host: app.example", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1"))
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), reply
    return body.decode()


CASES = [
    # (headers, the client and scheme the handler sees)
    ({}, "127.0.0.1 http"),
    ({"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7 http"),
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}, "203.0.113.7 https"),
    # read from the right: the address the client wrote itself (198.51.100.1) is not believed
    ({"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}, "203.0.113.7 http"),
    ({"X-Forwarded-For": "2001:db8::7"}, "2001:db8::7 http"),
    ({"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}, "2001:db8::7 https"),
    ({"Forwarded": "for=198.51.100.1, for=203.0.113.7;proto=https, for=10.1.2.3"}, "203.0.113.7 https"),
    ({"Forwarded": "For=203.0.113.7;Proto=HTTPS"}, "203.0.113.7 https"),
    ({"Forwarded": "for=unknown"}, "unknown http"),
    # Forwarded, the standard, wins over the X- headers
    ({"Forwarded": "for=203.0.113.7", "X-Forwarded-For": "198.51.100.1"}, "203.0.113.7 http"),
    ({"X-Forwarded-Proto": "https"}, "127.0.0.1 http"),  # a scheme without a client says nothing
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "gopher"}, "203.0.113.7 http"),
]


@pytest.mark.parametrize(("headers", "seen"), CASES)
@pytest_twisted.ensureDeferred
async def test_a_trusted_proxy_says_who_the_client_is(serve_behind, headers, seen):
    port = await serve_behind(forwarded_allow_ips=["127.0.0.1", "10.0.0.0/8"])
    assert await in_thread(get, ("127.0.0.1", port.getHost().port), headers) == seen


@pytest.mark.parametrize("trusted", [None, ["10.0.0.0/8"], ["::1"]])
@pytest_twisted.ensureDeferred
async def test_any_other_peer_is_the_client_whatever_it_says(serve_behind, trusted):
    port = await serve_behind(forwarded_allow_ips=trusted)
    for headers, _ in CASES:
        assert await in_thread(get, ("127.0.0.1", port.getHost().port), headers) == "127.0.0.1 http"


@pytest_twisted.ensureDeferred
async def test_every_peer_trusted_takes_the_first_address(serve_behind):
    port = await serve_behind(forwarded_allow_ips=["*"])
    headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    assert await in_thread(get, ("127.0.0.1", port.getHost().port), headers) == "198.51.100.1 http"


@pytest_twisted.ensureDeferred
async def test_a_proxy_on_a_unix_socket_is_trusted_as_unix(serve_behind, tmp_path):
    path = str(tmp_path / "app.sock")
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    await serve_behind(f"unix:{path}", forwarded_allow_ips=["unix"])
    assert await in_thread(get, path, headers, socket.AF_UNIX) == "203.0.113.7 https"
    other = str(tmp_path / "other.sock")
    await serve_behind(f"unix:{other}", forwarded_allow_ips=["127.0.0.1"])
    assert (await in_thread(get, other, headers, socket.AF_UNIX)).endswith(" http")


@pytest_twisted.ensureDeferred
async def test_websocket_requests_and_the_log_show_the_client(serve_behind, caplog):
    port = (await serve_behind(forwarded_allow_ips=["127.0.0.1"])).getHost().port
    headers = ["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"]

    def client() -> str:
        ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/who/ws", header=headers, timeout=10)
        try:
            return ws.recv()
        finally:
            ws.close()

    with caplog.at_level(logging.INFO, logger="rolo"):
        assert await in_thread(client) == "203.0.113.7 https"
        assert await in_thread(get, ("127.0.0.1", port), {"X-Forwarded-For": "203.0.113.7"}) == "203.0.113.7 http"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("rolo.serving")]
    via = r"203\.0\.113\.7 via tcp4:127\.0\.0\.1:\d+"
    assert any(re.fullmatch(rf"WebSocket open /who/ws from {via}", line) for line in lines), lines
    assert any(re.fullmatch(rf"GET /who from {via}: 200 in \d+\.\d+s", line) for line in lines), lines


def test_the_setting_is_validated_and_a_twistd_option():
    with pytest.raises(ValueError, match=r"forwarded_allow_ips lists 'proxy\.local', which is not an IP address"):
        TwistedSettings(forwarded_allow_ips=["proxy.local"])
    with pytest.raises(ValueError, match="forwarded_allow_ips must be a list"):
        TwistedSettings(forwarded_allow_ips="127.0.0.1")
    options = Options()
    options.parseOptions(["--app", "m:a", "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8,unix"])
    assert TwistedSettings(**options.settings()).forwarded_allow_ips == ("127.0.0.1", "10.0.0.0/8", "unix")
    assert TwistedSettings().forwarded_allow_ips is None


def test_trusted_proxies_match_addresses_and_networks():
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])
    assert [proxies.trusts(host) for host in ("127.0.0.1", "10.9.8.7", "fd12::1", "127.0.0.2", "unknown")] == [
        True,
        True,
        True,
        False,
        False,
    ]
