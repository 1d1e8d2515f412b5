"""rolo.testing as users meet it: a test file of theirs, run by pytest in a subprocess with rolo installed.

Each case runs twice: under pytest-twisted (installed, so loaded, as in this suite), whose reactor runs
in a greenlet of the main thread and which runs every test on it; and with pytest-twisted disabled,
where rolo.testing runs the reactor in a thread of its own.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

APP = '''
import json
import urllib.request

from rolo import Response, Router, route
from rolo.websocket import WebSocketRequest


@route("/hello/<name>")
def hello(request, name):
    return f"hello {name}"


@route("/echo", methods=["POST"])
def echo(request):
    return {"got": request.get_data(as_text=True), "header": request.headers.get("X-Test")}


@route("/echo/<name>", methods=["WEBSOCKET"])
def echo_ws(request: WebSocketRequest, name: str):
    if name == "mallory":
        request.reject(Response("no dice", 403))
        return
    with request.accept() as websocket:
        websocket.send(f"thanks for connecting {name}")
        for line in websocket:
            websocket.send(f"echo: {line}")


router = Router()
router.add([hello, echo, echo_ws])
'''

PLAIN_TESTS = APP + '''

import sys

import pytest
import websocket
from websockets.sync.client import connect


def test_http_helpers(rolo_server):
    server = rolo_server(router)
    response = server.get("/hello/ann")
    assert (response.status, response.text) == (200, "hello ann")
    assert server.post("/echo", "body", headers={"X-Test": "yes"}).json() == {"got": "body", "header": "yes"}
    assert server.get("/nowhere").status == 404


def test_websocket_helper(rolo_server):
    server = rolo_server(echo_ws, max_queue=4)  # a route alone, and a setting
    ws = server.websocket("/echo/ann")
    assert ws.recv() == "thanks for connecting ann"
    ws.send("hi")
    assert ws.recv() == "echo: hi"
    with pytest.raises(websocket.WebSocketBadStatusException) as rejected:
        server.websocket("/echo/mallory")
    assert (rejected.value.status_code, rejected.value.resp_body) == (403, b"no dice")


def test_without_websocket_client_the_error_says_what_to_install(rolo_server, monkeypatch):
    server = rolo_server(echo_ws)
    monkeypatch.setitem(sys.modules, "websocket", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"needs websocket-client: install rolo's testing extra"):
        server.websocket("/echo/ann")


def test_any_blocking_client_and_two_servers(rolo_server):
    first, second = rolo_server(router), rolo_server(router)
    assert first.port != second.port
    with urllib.request.urlopen(second.url("/hello/bob"), timeout=10) as response:
        assert response.read() == b"hello bob"
    with connect(first.ws_url("/echo/bob")) as ws:
        assert ws.recv(timeout=10) == "thanks for connecting bob"


@pytest.fixture
def app_server(rolo_server):
    return rolo_server(router)


def test_a_server_from_a_fixture_of_the_users(app_server):
    assert app_server.get("/hello/dee").text == "hello dee"


def test_reactor_calls_from_the_test(rolo_server):
    from twisted.internet import reactor
    from twisted.internet.threads import blockingCallFromThread

    server = rolo_server(router)
    assert blockingCallFromThread(reactor, lambda: server.service.running)


def test_a_failure_is_reported(rolo_server):
    assert rolo_server(router).get("/hello/ann").text == "hello bob"


def test_plain_tests_without_the_fixture_are_left_alone():
    assert True
'''

ASYNC_TESTS = APP + '''

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread


@pytest_twisted.ensureDeferred
async def test_async_with_clients_in_threads(rolo_server):
    server = rolo_server(router)
    response = await deferToThread(server.get, "/hello/cy")
    assert response.text == "hello cy"

    def talk():
        ws = server.websocket("/echo/cy")
        return ws.recv()

    assert await deferToThread(talk) == "thanks for connecting cy"


@pytest_twisted.ensureDeferred
async def test_blocking_on_the_reactor_is_refused(rolo_server):
    server = rolo_server(router)
    with pytest.raises(RuntimeError, match="would block the reactor"):
        server.get("/hello/cy")
'''

MODES = {"pytest-twisted": [], "own reactor thread": ["-p", "no:twisted"]}


@pytest.mark.parametrize("mode", MODES)
def test_plain_test_functions_block_on_clients_while_the_server_serves(pytester, mode):
    pytester.makepyfile(test_user_app=PLAIN_TESTS)
    result = pytester.runpytest_subprocess("-q", *MODES[mode], timeout=120)
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["*assert 'hello ann' == 'hello bob'*"])


def test_async_tests_run_on_pytest_twisteds_reactor(pytester):
    pytester.makepyfile(test_user_async=ASYNC_TESTS)
    result = pytester.runpytest_subprocess("-q", timeout=120)
    result.assert_outcomes(passed=2)
