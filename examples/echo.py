"""The echo server from rolo's WebSocket documentation.

Run it with ``./dev echo`` (or ``python examples/echo.py [PORT]``), then talk to it::

    websocat ws://localhost:8000/echo/alice

It greets you by the name in the URL, echoes every line you type, and says goodbye to ``exit``.
"""

import sys

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

from rolo import Router, route
from rolo.gateway import Gateway
from rolo.gateway.handlers import RouterHandler
from rolo.serving.twisted import TwistedGateway
from rolo.websocket import WebSocketRequest


@route("/echo/<name>", methods=["WEBSOCKET"])
def handler(request: WebSocketRequest, name: str):
    with request.accept() as websocket:
        websocket.send(f"thanks for connecting {name}")
        for line in websocket:
            websocket.send(f"echo: {line}")
            if line == "exit":
                websocket.send("ok bye!")
                return


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    router = Router()
    router.add(handler)
    gateway = Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    reactor.listenTCP(port, TwistedGateway(gateway))
    print(f"echo server on ws://localhost:{port}/echo/<name>", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
