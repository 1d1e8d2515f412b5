"""Applications that the serving tests run under ``twistd rolo --app tests.serving.apps:…``."""

from __future__ import annotations

import logging
import os
import threading
from types import SimpleNamespace

from rolo import Response, Router, route
from rolo.gateway import Gateway, as_gateway
from rolo.gateway.asgi import AsgiGateway
from rolo.gateway.handlers import RouterHandler
from rolo.websocket import WebSocketRequest
from tests.websocket.test_api import echo_handler  # the seed's echo server, at /echo/<name>


@route("/hello/<name>")
def hello(request, name: str):
    return Response(f"hello {name}")


@route("/stuck", methods=["WEBSOCKET"])
def stuck(request: WebSocketRequest):
    """A handler that never returns, whatever its peer does."""
    with request.accept() as websocket:
        websocket.send("stuck")
        threading.Event().wait()


@route("/never-accepts", methods=["WEBSOCKET"])
def never_accepts(request: WebSocketRequest):
    """A handler that never accepts nor rejects its connection, nor returns."""
    threading.Event().wait()


@route("/pid")
def pid(request):
    """The serving process's pid: which worker answered."""
    return Response(str(os.getpid()))


@route("/ws/pid", methods=["WEBSOCKET"])
def pid_websocket(request: WebSocketRequest):
    """Says the serving process's pid, then echoes until the peer or the server closes."""
    with request.accept() as websocket:
        websocket.send(str(os.getpid()))
        for message in websocket:
            websocket.send(message)


@route("/boom")
def boom(request):
    raise RuntimeError("no luck today")


@route("/note/<level>")
def note(request, level: str):
    """Logs a line of ``level`` through the application's own stdlib logger of that name (a child of
    ``tests.serving.apps``), with no handler configured anywhere; ``tests.serving.apps.debug`` has its level
    set to DEBUG."""
    logging.getLogger(f"tests.serving.apps.{level}").log(logging.getLevelName(level.upper()), "a note at %s", level)
    return Response("noted")


logging.getLogger("tests.serving.apps.debug").setLevel(logging.DEBUG)

router = Router()
router.add([echo_handler, hello, stuck, never_accepts, pid, pid_websocket, boom, note])

server = SimpleNamespace(router=router)  # an attribute path: tests.serving.apps:server.router


def make_gateway() -> Gateway:
    return Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])


not_an_app = 42


def failing_factory() -> Gateway:
    raise RuntimeError("no gateway today")


def fragile_factory() -> Gateway:
    """A gateway, unless the file $ROLO_TEST_BROKEN exists."""
    if os.path.exists(os.environ["ROLO_TEST_BROKEN"]):
        raise RuntimeError("broken on purpose")
    return make_gateway()


@route("/fault")
def http_fault(request):
    raise RuntimeError("the HTTP handler's fault")


@route("/fault/ws", methods=["WEBSOCKET"])
def websocket_fault(request: WebSocketRequest):
    with request.accept():
        raise RuntimeError("the WebSocket handler's fault")


faults = Router()  # handlers that raise, whose tracebacks the operator must see
faults.add([http_fault, websocket_fault])
faults_asgi = AsgiGateway(as_gateway(faults))
