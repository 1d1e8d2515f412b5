"""run_in_thread in a process of its own (the test process's reactor belongs to pytest-twisted).

Run as ``python -m tests.serving.background_script``; prints what it saw as one ``RESULT {json}`` line.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.request

import websocket as wsclient
from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import globalLogBeginner, textFileLogObserver

from rolo import Router, route
from rolo.serving.twisted import run_in_thread

from .apps import make_gateway, router, stuck
from .test_twistd import close_frame

LOOPBACK = "tcp:0:interface=127.0.0.1"


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


def thread_names() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate() if thread is not threading.current_thread())


def main() -> None:
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    seen: dict = {}

    with run_in_thread(router, LOOPBACK, grace_period=5) as server:
        host, port = server.address
        seen["address"] = [host, port == server.port]
        seen["http"] = get(port, "/hello/eve")
        ws = wsclient.create_connection(f"ws://127.0.0.1:{port}/echo/eve", timeout=10)
        seen["greeting"] = ws.recv()
        closed: list = []
        reader = threading.Thread(target=lambda: closed.append(close_frame(ws)))
        reader.start()
    reader.join(10)
    ws.close()
    seen["close"] = [closed[0][0], closed[0][1].decode()]
    seen["threads_after_stop"] = thread_names()

    # the reactor does not run twice: a second server is served by the same reactor thread
    second = run_in_thread(make_gateway(), LOOPBACK)
    seen["second_http"] = get(second.port, "/hello/again")
    seen["threads_while_second_runs"] = [name for name in thread_names() if not name.startswith("rolo-http-")]
    seen["second_stopped_cleanly"] = second.stop()

    # on the reactor thread it cannot wait for the reactor
    try:
        blockingCallFromThread(reactor, run_in_thread, router, LOOPBACK)
    except RuntimeError as error:
        seen["on_reactor_thread"] = str(error)

    # a handler that never returns is left behind after the grace period, and does not hold up exit
    third = run_in_thread(router, LOOPBACK)
    stuck = wsclient.create_connection(f"ws://127.0.0.1:{third.port}/stuck", timeout=10)
    seen["stuck"] = stuck.recv()
    reader = threading.Thread(target=lambda: close_frame(stuck))
    reader.start()
    seen["third_stopped_cleanly"] = third.stop(grace_period=0.2)
    reader.join(10)
    stuck.close()

    # left running: the atexit hook stops it with the reactor
    fourth = run_in_thread(router, LOOPBACK)
    seen["fourth_port"] = fourth.port

    # stopped with the reactor while a WebSocket and an HTTP handler never return: stopping it afterwards
    # waits for the threads of both pools one grace period in all, not one each: the one stop is given
    fifth = run_in_thread(stuck_in_both_pools(), LOOPBACK, grace_period=2.0)
    websocket = wsclient.create_connection(f"ws://127.0.0.1:{fifth.port}/stuck", timeout=10)
    seen["fifth_stuck"] = websocket.recv()
    request = socket.create_connection(("127.0.0.1", fifth.port), timeout=10)
    request.sendall(b"GET /stuck-http HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    http_started.wait(10)
    reactor_thread = next(thread for thread in threading.enumerate() if thread.name == "rolo-reactor")
    reactor.callFromThread(reactor.stop)
    reactor_thread.join(30)
    started = time.monotonic()
    seen["fifth_stopped_cleanly"] = fifth.stop(grace_period=0.6)
    seen["fifth_stop_seconds"] = time.monotonic() - started
    websocket.close()
    request.close()
    print("RESULT " + json.dumps(seen), flush=True)


http_started = threading.Event()


def stuck_in_both_pools() -> Router:
    """``/stuck``, a WebSocket handler that never returns (:func:`tests.serving.apps.stuck`), and
    ``/stuck-http``, an HTTP handler that never returns once it has set :data:`http_started`."""

    @route("/stuck-http")
    def stuck_http(request):
        http_started.set()
        threading.Event().wait()

    stuck_router = Router()
    stuck_router.add([stuck, stuck_http])
    return stuck_router


if __name__ == "__main__":
    main()
