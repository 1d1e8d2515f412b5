"""Applications that the serving tests run under ``twistd rolo --app tests.serving.apps:…``."""

from __future__ import annotations

import threading

from rolo import Response, Router, route
from rolo.gateway import Gateway
from rolo.gateway.handlers import RouterHandler
from rolo.websocket import WebSocketRequest


@route("/echo/<name>", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest, name: str):
    with request.accept() as websocket:
        websocket.send(f"thanks for connecting {name}")
        for line in websocket:
            websocket.send(f"echo: {line}")


@route("/hello/<name>")
def hello(request, name: str):
    return Response(f"hello {name}")


@route("/stuck", methods=["WEBSOCKET"])
def stuck(request: WebSocketRequest):
    """A handler that never returns, whatever its peer does."""
    with request.accept() as websocket:
        websocket.send("stuck")
        threading.Event().wait()


router = Router()
router.add([echo, hello, stuck])


def make_gateway() -> Gateway:
    return Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])


not_an_app = 42


def failing_factory() -> Gateway:
    raise RuntimeError("no gateway today")
