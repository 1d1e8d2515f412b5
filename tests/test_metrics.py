"""Prometheus metrics (rolo.metrics): a real server, real clients, and the metrics scraped over HTTP and read
with prometheus-client's own parser, on every server (Twisted, hypercorn, uvicorn)."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import pytest_twisted
import websocket as wsclient
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from rolo import Request, Response, route
from rolo.gateway import Gateway
from rolo.metrics import ServerCollector, register
from rolo.serving.twisted import TwistedGateway
from rolo.websocket import Hub, WebSocketRequest
from tests.documented import REPO
from tests.helpers import in_thread

TIMEOUT = 10.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels, as prometheus-client's parser reads it."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@contextmanager
def exposed(registry: CollectorRegistry) -> Iterator[Callable[[], Samples]]:
    """``registry`` exposed over HTTP on a loopback port, with prometheus-client's own server; yields a
    scrape."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"

    def scrape() -> Samples:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            return samples(response.read().decode())

    try:
        yield scrape
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def scrape_until(scrape: Callable[[], Samples], condition: Callable[[Samples], bool]) -> Samples:
    """The first scrape that satisfies ``condition``, within the timeout: the server counts a response or a
    close on its own loop, just after the client saw it, and has no event to wait on for that."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = scrape()
        if condition(found):
            return found
        assert time.monotonic() < deadline, f"the metrics never got there: {found}"
        time.sleep(0.01)


def gateway_with_a_hub(hub: Hub) -> Gateway:
    from tests.conftest import gateway_for

    @route("/hello/<name>")
    def hello(request: Request, name: str):
        return Response(f"hello {name}")

    @route("/boom")
    def boom(request: Request):
        raise RuntimeError("the HTTP handler fails, as the test wants")

    @route("/echo", methods=["WEBSOCKET"])
    def echo(request: WebSocketRequest):
        with request.accept() as websocket:
            for message in websocket:
                websocket.send(message)

    @route("/refuse", methods=["WEBSOCKET"])
    def refuse(request: WebSocketRequest):
        request.reject(Response("not you", 403))

    @route("/fail", methods=["WEBSOCKET"])
    def fail(request: WebSocketRequest):
        with request.accept():
            raise RuntimeError("the WebSocket handler fails, as the test wants")

    @route("/rooms/<room>", methods=["WEBSOCKET"])
    def member(request: WebSocketRequest, room: str):
        with request.accept() as websocket:
            hub.add(websocket, room)
            websocket.send("joined")
            for _ in websocket:
                pass

    @route("/rooms/<room>", methods=["POST"])
    def announce(request: Request, room: str):
        return {"sent": len(hub.broadcast(room, request.get_data(as_text=True)).sent)}

    return gateway_for(hello, boom, echo, refuse, fail, member, announce)


def close_code(ws: wsclient.WebSocket) -> int:
    """Read until the server's close frame, answer it, and return its code."""
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == wsclient.ABNF.OPCODE_CLOSE:
            ws.close()
            return int.from_bytes(frame.data[:2], "big")


def bad_status(url: str) -> int:
    with pytest.raises(wsclient.WebSocketBadStatusException) as refused:
        wsclient.create_connection(url, timeout=TIMEOUT)
    return refused.value.status_code


@pytest_twisted.ensureDeferred
async def test_what_clients_do_shows_in_the_scraped_metrics(serve_gateway):
    hub = Hub(name=f"test-{uuid.uuid4().hex[:8]}", broker=None)
    server = serve_gateway(gateway_with_a_hub(hub))
    registry = CollectorRegistry()
    register(server.app, registry)

    def clients() -> tuple[Samples, Samples]:
        with exposed(registry) as scrape:
            # two members of a room, open: the gauges count them
            members = [wsclient.create_connection(server.ws("/rooms/lobby"), timeout=TIMEOUT) for _ in range(2)]
            assert [member.recv() for member in members] == ["joined", "joined"]
            while_open = scrape()
            with urllib.request.urlopen(server.http("/rooms/lobby"), b"tea", timeout=TIMEOUT) as answer:
                assert json.loads(answer.read()) == {"sent": 2}
            assert [member.recv() for member in members] == ["tea", "tea"]
            for member in members:
                member.close()

            echo = wsclient.create_connection(server.ws("/echo"), timeout=TIMEOUT)
            for message in ("hello", "world"):
                echo.send(message)
                assert echo.recv() == message
            echo.send_binary(b"\x00\x01\x02")
            assert echo.recv() == b"\x00\x01\x02"
            echo.close()

            assert bad_status(server.ws("/refuse")) == 403
            assert bad_status(server.ws("/nowhere")) == 404
            assert close_code(wsclient.create_connection(server.ws("/fail"), timeout=TIMEOUT)) == 1011

            for path, status in (("/hello/ann", 200), ("/boom", 500), ("/nowhere", 404)):
                try:
                    with urllib.request.urlopen(server.http(path), timeout=TIMEOUT) as response:
                        assert response.status == status
                except urllib.error.HTTPError as error:
                    assert error.code == status

            def settled(found: Samples) -> bool:
                closes = sum(v for (name, _), v in found.items() if name == "rolo_websocket_closes_total")
                return (
                    closes == 4
                    and value(found, "rolo_http_request_duration_seconds_count") == 4
                    # a connection leaves just after its close is counted, a thread goes idle just after
                    # its response is out
                    and value(found, "rolo_websocket_connections") == 0
                    and value(found, "rolo_http_threads_busy") == 0
                )

            return while_open, scrape_until(scrape, settled)

    while_open, found = await in_thread(clients)
    assert value(while_open, "rolo_websocket_connections") == 2
    assert value(while_open, "rolo_websocket_handlers") == 2

    assert value(found, "rolo_websocket_upgrades_total", status="101") == 4  # 2 members, echo, fail
    assert value(found, "rolo_websocket_upgrades_total", status="403") == 1  # the handler's reject
    assert value(found, "rolo_websocket_upgrades_total", status="404") == 1  # routed nowhere
    assert value(found, "rolo_websocket_messages_received_total") == 3
    assert value(found, "rolo_websocket_received_bytes_total") == 5 + 5 + 3
    # 2 "joined", 2 "tea", 3 echoes
    assert value(found, "rolo_websocket_messages_sent_total") == 7
    assert value(found, "rolo_websocket_sent_bytes_total") == 6 * 2 + 3 * 2 + 5 + 5 + 3
    # hypercorn reports a close the peer starts as 1006, without its code
    peer_close = {"code": "1006", "by": "none"} if server.kind == "hypercorn" else {"code": "1000", "by": "peer"}
    assert value(found, "rolo_websocket_closes_total", **peer_close) == 3
    assert value(found, "rolo_websocket_closes_total", code="1011", by="server") == 1
    assert value(found, "rolo_handler_errors_total", kind="http") == 1
    assert value(found, "rolo_handler_errors_total", kind="websocket") == 1
    assert value(found, "rolo_http_requests_total", status="200") == 2  # hello and the room's POST
    assert value(found, "rolo_http_requests_total", status="500") == 1
    assert value(found, "rolo_http_requests_total", status="404") == 1
    assert value(found, "rolo_http_request_duration_seconds_bucket", le="+Inf") == 4
    assert value(found, "rolo_http_requests_queued") == 0
    assert value(found, "rolo_hub_deliveries_total", hub=hub.name, outcome="sent") == 2
    assert value(found, "rolo_hub_deliveries_total", hub=hub.name, outcome="slow") == 0
    assert value(found, "rolo_hub_deliveries_total", hub=hub.name, outcome="gone") == 0


@pytest_twisted.ensureDeferred
async def test_a_streamed_body_that_fails_is_a_handler_error(serve_gateway):
    # only a handler's error before the body began was counted; one its streamed body raised was not
    from tests.conftest import gateway_for

    @route("/broken")
    def broken(request: Request):
        def body() -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("the stream fails, as the test wants")

        return Response(body())

    server = serve_gateway(gateway_for(broken))
    registry = CollectorRegistry()
    register(server.app, registry)

    def read_the_broken_stream() -> Samples:
        with pytest.raises(http.client.IncompleteRead):
            with urllib.request.urlopen(server.http("/broken"), timeout=TIMEOUT) as answer:
                answer.read()
        # the server counted it before it cut the connection
        with exposed(registry) as scrape:
            return scrape()

    found = await in_thread(read_the_broken_stream)
    assert value(found, "rolo_handler_errors_total", kind="http") == 1


@pytest_twisted.ensureDeferred
async def test_a_streamed_response_whose_close_fails_is_a_handler_error(serve_gateway):
    # under ASGI the close ran in a thread of the pool and what it raised was left in a future nobody
    # awaited: neither counted nor logged by rolo
    from tests.conftest import gateway_for

    def refuse_to_close() -> None:
        raise RuntimeError("the close fails, as the test wants")

    @route("/closing")
    def closing(request: Request):
        response = Response(iter([b"whole"]))
        response.call_on_close(refuse_to_close)
        return response

    @route("/both")
    def both(request: Request):
        def body() -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("the stream fails, as the test wants")

        response = Response(body())
        response.call_on_close(refuse_to_close)
        return response

    @route("/after")
    def after(request: Request):
        return "after"

    # one HTTP thread: the request after runs once the responses' closes have
    server = serve_gateway(gateway_for(closing, both, after), http_threads=1)
    registry = CollectorRegistry()
    register(server.app, registry)

    def read_then_scrape() -> Samples:
        with urllib.request.urlopen(server.http("/closing"), timeout=TIMEOUT) as answer:
            assert answer.read() == b"whole"  # the body was whole: the response stands
        with pytest.raises(http.client.IncompleteRead):
            with urllib.request.urlopen(server.http("/both"), timeout=TIMEOUT) as answer:
                answer.read()
        with urllib.request.urlopen(server.http("/after"), timeout=TIMEOUT) as answer:
            assert answer.read() == b"after"
        with exposed(registry) as scrape:
            return scrape()

    found = await in_thread(read_then_scrape)
    # one each: a request whose body and close both failed is one error
    assert value(found, "rolo_handler_errors_total", kind="http") == 2


def test_the_documentation_lists_every_metric():
    names = {family.name for family in ServerCollector(TwistedGateway(Gateway())).collect()}
    section = (REPO / "docs" / "serving.rst").read_text().split("\nThe metrics\n~~~~~~~~~~~\n", 1)[1]
    table = section.split("\nA message's size", 1)[0]
    assert set(re.findall(r"^``(rolo_\w+)", table, re.MULTILINE)) == names
