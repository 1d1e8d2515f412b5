"""rolo's server: one gateway, served by ``TwistedGateway`` or by ``AsgiGateway`` under uvicorn or hypercorn.

Each WebSocket handler is the plain blocking code a user would write; the room is a :class:`rolo.websocket.Hub`.
"""

from __future__ import annotations

from bench.servers import HELLO, MAX_CONNECTIONS, MAX_MESSAGE_SIZE
from rolo import Response, Router, route
from rolo.gateway import Gateway
from rolo.gateway.handlers import RouterHandler
from rolo.websocket import Hub, WebSocketRequest

hub = Hub()


@route("/echo", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest) -> None:
    with request.accept() as websocket:
        for message in websocket:
            websocket.send(message)


@route("/room", methods=["WEBSOCKET"])
def room(request: WebSocketRequest) -> None:
    with request.accept() as websocket:
        hub.add(websocket, "room")
        websocket.send("joined")
        for _ in websocket:
            pass


@route("/publish", methods=["WEBSOCKET"])
def publish(request: WebSocketRequest) -> None:
    with request.accept() as websocket:
        for message in websocket:
            hub.broadcast("room", message)


@route("/hello", methods=["GET"])
def hello(request) -> Response:
    return Response(HELLO, mimetype="text/plain")


def gateway() -> Gateway:
    router = Router()
    for endpoint in (echo, room, publish, hello):
        router.add(endpoint)
    return Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])


def _site(deflate: bool):
    from rolo.serving.twisted import TwistedGateway

    return TwistedGateway(
        gateway(),
        max_connections=MAX_CONNECTIONS,
        max_message_size=MAX_MESSAGE_SIZE,
        compression=deflate,
        ping_interval=0,
    )


def serve_twisted(port: int, deflate: bool) -> None:
    from bench.servers import twisted_run

    twisted_run.run(_site(deflate), port)


def serve_twisted_metrics(port: int, deflate: bool) -> None:
    """As :func:`serve_twisted`, with the site's metrics registered and served on a port of their own, as
    ``twistd rolo --metrics tcp:0`` serves them."""
    from bench.servers import twisted_run
    from rolo.serving.twisted.metrics import MetricsService

    site = _site(deflate)
    metrics = MetricsService(site, "tcp:0")
    metrics.privilegedStartService()
    metrics.startService()
    twisted_run.run(site, port)


def _asgi_app():
    from rolo.gateway.asgi import AsgiGateway

    return AsgiGateway(gateway(), max_connections=MAX_CONNECTIONS)


def serve_uvicorn(port: int, deflate: bool) -> None:
    from bench.servers import asgi_app

    asgi_app.run_uvicorn(_asgi_app(), port, deflate)


def serve_hypercorn(port: int, deflate: bool) -> None:
    from bench.servers import asgi_app

    asgi_app.run_hypercorn(_asgi_app(), port, deflate)
