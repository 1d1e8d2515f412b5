"""Over capacity under churn: past max_connections every upgrade gets 503 at once, no handler runs
beyond the limit, and capacity comes back as connections close, however they close."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest_twisted
import websocket as wsclient
from twisted.internet import reactor

from rolo import route
from rolo.serving.twisted.threads import idle_within
from rolo.websocket import WebSocketRequest
from tests.helpers import in_thread

from .support import reset

LIMIT = 4


class Concurrency:
    """How many handlers run now, and the most that ever ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = self.most = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


running = Concurrency()


@route("/echo", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest):
    with running, request.accept() as ws:
        for message in ws:
            ws.send(message)


def attempt(url: str) -> tuple[int, float, wsclient.WebSocket | None]:
    """One upgrade: its status, how long the answer took, and the connection if it opened."""
    started = time.monotonic()
    try:
        ws = wsclient.create_connection(url, timeout=10)
    except wsclient.WebSocketBadStatusException as refused:
        return refused.status_code, time.monotonic() - started, None
    return 101, time.monotonic() - started, ws


@pytest_twisted.ensureDeferred
async def test_over_capacity_under_churn(serve):
    running.most = 0
    server = serve(echo, max_connections=LIMIT)
    url = server.ws("/echo")

    def hammer_while_full():
        holders = [wsclient.create_connection(url, timeout=10) for _ in range(LIMIT)]
        with ThreadPoolExecutor(4) as clients:
            refused = list(clients.map(lambda _: attempt(url), range(200)))
        # capacity comes back as the holders leave, however they leave
        for i, ws in enumerate(holders):
            ws.close() if i % 2 else reset(ws.sock)
        return refused

    refused = await in_thread(hammer_while_full)
    assert {status for status, _, _ in refused} == {503}
    slowest_refusal = max(elapsed for _, elapsed, _ in refused)

    def churn(cycles: int) -> tuple[int, int]:
        """Connect, echo and leave ``cycles`` times, retrying on 503; return (connections, 503s)."""
        connected = busy = 0
        deadline = time.monotonic() + 60  # a way out: capacity that never comes back fails the test
        while connected < cycles:
            status, _, ws = attempt(url)
            if status == 503:
                busy += 1
                assert time.monotonic() < deadline, f"{connected} of {cycles} connections in 60 s"
                continue
            ws.send("hi")
            assert ws.recv() == "hi"
            ws.close() if connected % 2 else reset(ws.sock)
            connected += 1
        return connected, busy

    def churn_from_8_clients():
        with ThreadPoolExecutor(8) as clients:
            return list(clients.map(churn, [50] * 8))

    results = await in_thread(churn_from_8_clients)
    assert await idle_within(server.app.websocket.host.handlers, 10, reactor)
    busy = sum(b for _, b in results)
    print(
        f"capacity {LIMIT}: 200 refusals while full, slowest {slowest_refusal * 1000:.1f} ms; "
        f"8 clients x 50 connections under churn: {busy} refusals (503), at most {running.most} handlers at once"
    )
    assert sum(c for c, _ in results) == 400
    assert running.most <= LIMIT
    assert server.app.websocket.host.handlers.running == 0
