"""A TwistedGateway in a process of its own, so a test can measure the server's memory, threads and
file descriptors without counting its own.

``python -m tests.hardening.server '{"max_queue": 16}'`` serves on an ephemeral loopback port, prints the
port number, and serves until terminated. Routes:

- ``/echo`` (WebSocket): sends back every message;
- ``/flood`` (WebSocket): spends 10 ms on each message, checks that the first 8 bytes of each binary
  message count up from 0, and answers the text message ``done`` with a JSON summary;
- ``/stuck`` (WebSocket): accepts, then never reads, until the connection closes;
- ``/stats`` (HTTP): the WebSocket side's running handlers and pool threads, and the process's threads,
  descriptors and memory, as JSON; with ``?idle=1``, answers once no handler runs (at most 10 s).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread

from rolo import Request, Response, route
from rolo.serving.twisted import TwistedGateway
from rolo.serving.twisted.threads import idle_within
from rolo.websocket import WebSocketRequest

from tests.conftest import gateway_for
from tests.hardening.support import process_usage

WORK_PER_MESSAGE = 0.010

site: TwistedGateway


@route("/echo", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest):
    with request.accept() as ws:
        for message in ws:
            ws.send(message)


@route("/flood", methods=["WEBSOCKET"])
def flood(request: WebSocketRequest):
    count = size = 0
    in_order = True
    with request.accept() as ws:
        for message in ws:
            if message == "done":
                ws.send(json.dumps({"count": count, "bytes": size, "in_order": in_order}))
                continue
            time.sleep(WORK_PER_MESSAGE)  # the handler's work, slower than the client sends
            in_order = in_order and int.from_bytes(message[:8], "big") == count
            count += 1
            size += len(message)


@route("/stuck", methods=["WEBSOCKET"])
def stuck(request: WebSocketRequest):
    closed = threading.Event()
    with request.accept() as ws:
        ws.on_close(closed.set)
        closed.wait(120)


@route("/stats")
def stats(request: Request):
    host = site.websocket.host
    if request.args.get("idle"):
        blockingCallFromThread(reactor, idle_within, host.handlers, 10, reactor)
    pool = host.pool
    return Response.for_json(
        {
            "active_handlers": host.handlers.running,
            "pool_threads": len(pool.threads),
            # counted here, while this request's connection is open, so that no earlier one is
            **process_usage(os.getpid()),
        }
    )


def main() -> None:
    settings = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    global site
    site = TwistedGateway(gateway_for(echo, flood, stuck, stats), **settings)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
