"""The two echo servers the benchmark compares, each run in a process of its own.

``python -m bench.servers rolo PORT`` serves a :class:`~rolo.serving.twisted.TwistedGateway` whose
``WEBSOCKET`` route echoes every message from a handler thread; ``python -m bench.servers autobahn PORT``
serves Autobahn's :class:`WebSocketServerProtocol` with an ``onMessage`` that echoes on the reactor thread,
with no threads at all. Both run on the same Twisted reactor with the same Autobahn protocol options
(permessage-deflate off on both, UTF-8 validation on, no pings, 2 MiB message limit), log warnings only,
and print ``ready`` once they listen.
"""

from __future__ import annotations

import resource
import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner
from twisted.logger import textFileLogObserver

from rolo import Router, route
from rolo.gateway import Gateway
from rolo.gateway.handlers import RouterHandler
from rolo.serving.twisted import TwistedGateway
from rolo.websocket import WebSocketRequest

MAX_MESSAGE_SIZE = 2 * 1024 * 1024
MAX_CONNECTIONS = 12_000


@route("/echo", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest) -> None:
    with request.accept() as websocket:
        for message in websocket:
            websocket.send(message)


def rolo_site() -> TwistedGateway:
    router = Router()
    router.add(echo)
    gateway = Gateway(request_handlers=[RouterHandler(router, respond_not_found=True)])
    return TwistedGateway(
        gateway,
        max_connections=MAX_CONNECTIONS,
        max_message_size=MAX_MESSAGE_SIZE,
        compression=False,
        ping_interval=0,
    )


class AutobahnEcho(WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def autobahn_factory() -> WebSocketServerFactory:
    factory = WebSocketServerFactory()
    factory.protocol = AutobahnEcho
    # what rolo's factory is given, with the benchmark's settings (permessage-deflate is off by default)
    factory.setProtocolOptions(
        maxMessagePayloadSize=MAX_MESSAGE_SIZE,
        maxFramePayloadSize=MAX_MESSAGE_SIZE,
        autoPingInterval=0,
        autoPingTimeout=20,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=10,
    )
    return factory


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])], redirectStandardIO=False
    )
    factory = rolo_site() if kind == "rolo" else autobahn_factory()
    reactor.listenTCP(port, factory, backlog=4096, interface="127.0.0.1")
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
