"""A TwistedGateway in a process of its own, so a test can measure the server's memory, threads and
file descriptors without counting its own.

``python -m tests.hardening.server '{"max_queue": 16}'`` serves on an ephemeral loopback port, prints the
port number, and serves until terminated. Routes:

- ``/echo`` (WebSocket): sends back every message;
- ``/flood`` (WebSocket): spends 10 ms on each message, checks that the first 8 bytes of each binary
  message count up from 0, and answers the text message ``done`` with a JSON summary;
- ``/stuck`` (WebSocket): accepts, then never reads, until the connection closes;
- ``/stats`` (HTTP): the WebSocket side's running handlers and pool threads, and the process's threads,
  descriptors and memory, as JSON; with ``?idle=1``, answers once no handler runs (at most 10 s);
- ``/blob`` (HTTP): 1 MiB; ``/stream`` (HTTP): 1 GiB of zeros, streamed in 64 KiB chunks;
  ``/fast`` (HTTP): ``ok``; ``/ignore`` (HTTP, any method): ``ignored``, without reading the body;
  ``/hold`` (HTTP): waits (in its HTTP thread) until released;
- ``/control`` (WebSocket, so that it answers while every HTTP thread is busy): the message ``stats``
  gets the HTTP side's figures and the process's as JSON (see :func:`http_stats`); ``release`` lets every
  ``/hold`` handler return, now and from then on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter

from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread

from rolo import Request, Response, route
from rolo.serving.twisted import TwistedGateway
from rolo.serving.twisted.threads import idle_within
from rolo.websocket import WebSocketRequest
from tests.conftest import gateway_for
from tests.hardening.support import process_usage

WORK_PER_MESSAGE = 0.010
KiB = 1024

released = threading.Event()
runs: Counter[str] = Counter()  # HTTP handlers run, by route

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
            "busy_threads": pool.busy,
            # counted here, while this request's connection is open, so that no earlier one is
            **process_usage(os.getpid()),
        }
    )


@route("/blob")
def blob(request: Request):
    runs["blob"] += 1
    return Response(b"x" * (1024 * KiB))  # a body of its own, as a handler's usually is


@route("/stream")
def stream(request: Request):
    runs["stream"] += 1
    chunk = bytes(64 * KiB)
    return Response(chunk for _ in range(16 * KiB))


@route("/fast")
def fast(request: Request):
    runs["fast"] += 1
    return Response("ok")


@route("/ignore", methods=["GET", "POST", "PUT"])
def ignore(request: Request):
    runs["ignore"] += 1
    return Response("ignored")


@route("/hold")
def hold(request: Request):
    runs["hold"] += 1
    released.wait(60)
    return Response("held")


def http_stats() -> dict[str, int]:
    """The HTTP pool's busy threads and waiting requests, the requests between their arrival and their
    handler's return, the handlers run by route (``runs_blob`` …), and the process's usage."""
    http = site.http
    return {
        "http_busy": http.pool.busy,
        "http_waiting": http.pool.waiting,
        "http_running": http.handlers.running,
        **{f"runs_{name}": count for name, count in runs.items()},
        **process_usage(os.getpid()),
    }


@route("/control", methods=["WEBSOCKET"])
def control(request: WebSocketRequest):
    with request.accept() as ws:
        for message in ws:
            if message == "release":
                released.set()
                ws.send("released")
            else:
                ws.send(json.dumps(blockingCallFromThread(reactor, http_stats)))


def main() -> None:
    settings = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    global site
    site = TwistedGateway(
        gateway_for(echo, flood, stuck, stats, blob, stream, fast, ignore, hold, control), **settings
    )
    port = reactor.listenTCP(0, site, backlog=1024, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
