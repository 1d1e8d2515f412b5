"""What a client and the operator see when a request and a route disagree about WebSockets: a plain request
to a WebSocket route, and an upgrade request to a route declared for HTTP."""

from __future__ import annotations

import http.client
import logging

import pytest
import pytest_twisted
import websocket as wsclient
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.test import EnvironBuilder

from rolo import Request, Response, Router, route
from rolo.routing import UpgradeRequired
from rolo.websocket import WebSocketRequest

from ..helpers import in_thread


@route("/chat", methods=["WEBSOCKET"])
def chat(request: WebSocketRequest):
    with request.accept() as websocket:
        websocket.send("hi")


@route("/status")  # no methods: it matches upgrade requests too
def status(request):
    return Response("all good", 200, headers={"X-From": "status"})


@route("/quiet")  # no methods, and nothing to say
def quiet(request):
    return None


def get(host: str, port: int, path: str) -> http.client.HTTPResponse:
    """A plain GET on a connection kept alive (urllib's would say Connection: close)."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest_twisted.ensureDeferred
async def test_a_plain_get_to_a_websocket_route_is_told_to_upgrade(serve):
    server = serve(chat)
    response = await in_thread(get, server.host, server.port, "/chat")
    # RFC 9110 15.5.22: 426 with the protocol to upgrade to; 7.8: and Connection: Upgrade with it
    assert response.status == 426
    assert response.reason == ("" if server.kind == "hypercorn" else "Upgrade Required")  # hypercorn sends none
    assert response.headers.get_all("Upgrade") == ["websocket"]
    assert response.headers.get_all("Connection") == ["Upgrade"]
    assert response.headers.get("Allow") is None


def test_the_router_raises_a_426_that_code_catching_405_still_catches():
    router = Router()
    router.add(chat)
    with pytest.raises(MethodNotAllowed) as raised:
        router.dispatch(Request(EnvironBuilder("/chat").get_environ()))
    assert isinstance(raised.value, UpgradeRequired)
    assert (raised.value.code, raised.value.valid_methods) == (426, ["WEBSOCKET"])


@pytest_twisted.ensureDeferred
async def test_an_upgrade_to_an_http_route_gets_its_response_and_the_log_says_how_to_declare(serve, caplog):
    server = serve(status, quiet)

    def client(path: str) -> tuple[int, bytes, str | None]:
        with pytest.raises(wsclient.WebSocketBadStatusException) as refused:
            wsclient.create_connection(server.ws(path), timeout=10)
        headers = {name.lower(): value for name, value in (refused.value.resp_headers or {}).items()}
        return refused.value.status_code, refused.value.resp_body, headers.get("x-from")

    with caplog.at_level(logging.WARNING, logger="rolo.gateway"):
        # the endpoint's own response, where it used to be a 500
        assert await in_thread(client, "/status") == (200, b"all good", "status")
        # an endpoint that answered nothing: nobody settled the upgrade, a 500
        assert (await in_thread(client, "/quiet"))[0] == 500

    lines = [record.getMessage() for record in caplog.records if record.name == "rolo.gateway"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("the handler of /status answered a WebSocket upgrade with 200")
    assert lines[1].startswith("the handler of /quiet neither accepted nor rejected the WebSocket upgrade")
    assert all('methods=["WEBSOCKET"]' in line for line in lines)
