"""Peers that vanish without a closing handshake are detected, and their handler threads come back."""

from __future__ import annotations

import queue
import socket
import time

import pytest_twisted
import websocket as wsclient
from twisted.internet import reactor

from rolo import route
from rolo.serving.twisted.threads import idle_within
from rolo.websocket import WebSocketDisconnectedError, WebSocketRequest
from tests.helpers import in_thread

from .support import reset

outcomes: queue.Queue = queue.Queue()


@route("/echo", methods=["WEBSOCKET"])
def echo_until_disconnected(request: WebSocketRequest):
    try:
        with request.accept() as ws:
            while True:
                ws.send(ws.receive())
    except WebSocketDisconnectedError as error:
        outcomes.put((time.monotonic(), error.code))


@route("/push", methods=["WEBSOCKET"])
def push_until_disconnected(request: WebSocketRequest):
    try:
        with request.accept() as ws:
            while True:
                ws.send(b"x" * 65536)
    except WebSocketDisconnectedError as error:
        outcomes.put((time.monotonic(), error.code))


async def assert_handlers_returned(server) -> None:
    """Every handler returned, so its thread is free (a handler stuck on a dead peer would hold its
    slot and thread forever), and the server goes on serving."""
    host = server.app.websocket.host
    assert await idle_within(host.handlers, 10, reactor)
    assert host.handlers.running == 0

    def next_connection():
        ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
        ws.send("next")
        assert ws.recv() == "next"
        ws.close()

    await in_thread(next_connection)
    assert await idle_within(host.handlers, 10, reactor)
    assert host.pool.busy == 0


def drain() -> None:
    while not outcomes.empty():
        outcomes.get_nowait()


@pytest_twisted.ensureDeferred
async def test_peer_that_resets_is_detected_at_once(serve):
    drain()
    server = serve(echo_until_disconnected)

    def vanish():
        ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
        ws.send("hello")
        assert ws.recv() == "hello"
        vanished = time.monotonic()
        reset(ws.sock)
        detected, code = outcomes.get(timeout=10)
        return detected - vanished, code

    delay, code = await in_thread(vanish)
    print(f"reset detected after {delay * 1000:.1f} ms")
    assert code == 1006
    await assert_handlers_returned(server)


@pytest_twisted.ensureDeferred
async def test_peer_that_leaves_in_the_middle_of_a_large_frame_is_detected_at_once(serve):
    # the server reads the rest of a large frame straight into its buffer: cut after the header alone,
    # within the first read (the end of the stream met as the server reads on at once), and later on
    drain()
    server = serve(echo_until_disconnected)
    frame = wsclient.ABNF.create_frame(b"x" * 1024 * 1024, wsclient.ABNF.OPCODE_BINARY).format()

    def leave(cut: int, how: str) -> int:
        ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
        ws.sock.sendall(frame[:cut])
        if how == "reset":
            reset(ws.sock)
        else:
            ws.sock.close()  # a FIN
        _, code = outcomes.get(timeout=10)
        return code

    for cut in (14, 2000, 200_000):
        for how in ("reset", "close"):
            assert await in_thread(leave, cut, how) == 1006, (cut, how)
    await assert_handlers_returned(server)


@pytest_twisted.ensureDeferred
async def test_silent_peer_is_dropped_after_the_ping_timeout(serve):
    drain()
    server = serve(echo_until_disconnected, ping_interval=0.5, ping_timeout=0.5)

    def go_silent():
        # a client that completes the handshake and then never reads or answers anything
        ws = wsclient.create_connection(server.ws("/echo"), timeout=10)
        silent_from = time.monotonic()
        try:
            detected, code = outcomes.get(timeout=10)
        finally:
            ws.sock.close()
        return detected - silent_from, code

    delay, code = await in_thread(go_silent)
    print(f"silent peer dropped after {delay:.2f}s")
    assert code == 1006
    assert 0.5 + 0.5 <= delay < 5  # a ping after 0.5 s, unanswered for 0.5 s
    await assert_handlers_returned(server)


@pytest_twisted.ensureDeferred
async def test_handler_blocked_sending_to_a_dead_peer_is_released(serve):
    drain()
    server = serve(push_until_disconnected, echo_until_disconnected, ping_interval=0.5, ping_timeout=0.5)

    def stop_reading():
        sock = socket.create_connection((server.host, server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws = wsclient.WebSocket()
        ws.connect(server.ws("/push"), socket=sock, timeout=10)
        silent_from = time.monotonic()
        try:
            detected, code = outcomes.get(timeout=10)
        finally:
            sock.close()
        return detected - silent_from, code

    delay, code = await in_thread(stop_reading)
    print(f"send to a peer that stopped reading released after {delay:.2f}s")
    assert code == 1006
    assert 0.5 + 0.5 <= delay < 5
    await assert_handlers_returned(server)
