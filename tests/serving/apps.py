"""Applications that the serving tests run under ``twistd rolo --app tests.serving.apps:…``."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from rolo import Response, Router, route
from rolo.gateway import Gateway
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


router = Router()
router.add([echo_handler, hello, stuck])

server = SimpleNamespace(router=router)  # an attribute path: tests.serving.apps:server.router


def make_gateway() -> Gateway:
    return Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])


not_an_app = 42


def failing_factory() -> Gateway:
    raise RuntimeError("no gateway today")
