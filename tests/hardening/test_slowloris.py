"""Slowloris: clients that trickle their opening handshake are cut off and do not keep others out."""

from __future__ import annotations

import http.client
import select
import selectors
import socket
import threading
import time

import pytest_twisted

from rolo import Response, route
from rolo.websocket import WebSocketRequest
from tests.helpers import Signal, in_thread

from .support import upgrade_request
from .test_handshake import echo_once

HEADER_TIMEOUT = 2.0  # longer than opening 500 connections takes, so that all are open at once
BYTE_INTERVAL = 0.1  # the ~130-byte request would take 13 s
CONNECT_BATCH = 50


@route("/ws", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest):
    with request.accept() as ws:
        for message in ws:
            ws.send(message)


@route("/hello")
def hello(request):
    return Response("hello")


def slowloris(address: tuple[str, int], clients: int, connected: Signal) -> list[tuple[float, bytes]]:
    """Open ``clients`` connections, CONNECT_BATCH per tick, and send each one's handshake a byte a tick
    (BYTE_INTERVAL); return, for each, the seconds until the server cut it off and what it answered."""
    request = upgrade_request()
    opened_at: dict[socket.socket, float] = {}
    sent: dict[socket.socket, int] = {}
    outcome: dict[socket.socket, tuple[float, bytes]] = {}
    deadline = time.monotonic() + HEADER_TIMEOUT + 10
    with selectors.DefaultSelector() as selector:
        try:
            while len(outcome) < clients and time.monotonic() < deadline:
                # waiting for the server to answer anyone paces the trickle
                for key, _ in selector.select(BYTE_INTERVAL):
                    try:
                        answer = key.fileobj.recv(4096)
                    except OSError:
                        answer = b""
                    outcome[key.fileobj] = (time.monotonic() - opened_at[key.fileobj], answer)
                    selector.unregister(key.fileobj)
                # ramp up: a burst of connects beyond the listen backlog would stall in SYN retries
                for _ in range(min(CONNECT_BATCH, clients - len(opened_at))):
                    sock = socket.create_connection(address, timeout=10)
                    sock.setblocking(False)
                    opened_at[sock], sent[sock] = time.monotonic(), 0
                    selector.register(sock, selectors.EVENT_READ)
                if len(opened_at) == clients:
                    connected.set()
                for sock in sent.keys() - outcome.keys():
                    try:
                        sent[sock] += sock.send(request[sent[sock] : sent[sock] + 1])
                    except OSError:
                        # the server closed after its 408, and our byte since drew a reset
                        outcome[sock] = (time.monotonic() - opened_at[sock], b"")
                        selector.unregister(sock)
        finally:
            for sock in opened_at:
                sock.close()
    assert all(count < len(request) for count in sent.values()), "a client got its whole request out"
    return list(outcome.values())


@pytest_twisted.ensureDeferred
async def test_slowloris_clients_are_dropped_without_keeping_others_out(serve, heavy):
    clients = 500 if heavy else 50
    server = serve(echo, header_timeout=HEADER_TIMEOUT)
    address = (server.host, server.port)
    connected = Signal()

    trickling = in_thread(slowloris, address, clients, connected)
    await in_thread(connected.wait)
    started = time.monotonic()
    assert await in_thread(echo_once, server.ws("/ws")) == "still serving"
    normal_client = time.monotonic() - started
    outcome = await trickling

    times = [elapsed for elapsed, _ in outcome]
    print(
        f"slowloris x{clients}: a normal client took {normal_client:.3f}s meanwhile; "
        f"dropped after {min(times):.2f}-{max(times):.2f}s, "
        f"{sum(answer.startswith(b'HTTP/1.1 408 ') for _, answer in outcome)} of them with a 408"
    )
    assert len(outcome) == clients, "some slow clients were never dropped"
    # a client still sending when the 408 came may see the reset its next byte drew instead
    assert all(answer.startswith(b"HTTP/1.1 408 ") or answer == b"" for _, answer in outcome)
    assert min(times) > HEADER_TIMEOUT * 0.9  # (timers may fire a millisecond early)


@pytest_twisted.ensureDeferred
async def test_silent_connection_is_dropped_after_the_header_timeout(serve):
    server = serve(echo, header_timeout=0.5)

    def silent():
        address = (server.host, server.port)
        with socket.create_connection(address, timeout=10) as sock:
            started = time.monotonic()
            answer = sock.recv(4096)
            return time.monotonic() - started, answer

    elapsed, answer = await in_thread(silent)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.5 <= elapsed < 5


@pytest_twisted.ensureDeferred
async def test_keep_alive_connection_is_not_cut_while_idle_between_requests(serve):
    """The header deadline starts with a request's first byte, not when the connection goes idle."""
    server = serve(echo, hello, header_timeout=0.3)

    def keep_alive():
        connection = http.client.HTTPConnection(server.address, timeout=10)
        connection.request("GET", "/hello")
        first = connection.getresponse().read()
        # idle three header timeouts long: the server must neither answer nor close
        readable, _, _ = select.select([connection.sock], [], [], 1.0)
        connection.request("GET", "/hello")
        second = connection.getresponse().read()
        connection.close()
        return first, readable, second

    assert await in_thread(keep_alive) == (b"hello", [], b"hello")


@pytest_twisted.ensureDeferred
async def test_a_later_request_that_trickles_its_head_gets_a_408_a_header_timeout_after_its_first_byte(serve):
    """The header deadline of each request on a kept-alive connection, the first one answered at once."""
    server = serve(echo, hello, header_timeout=0.3)

    def trickle_the_second():
        connection = http.client.HTTPConnection(server.address, timeout=10)
        connection.request("GET", "/hello")
        first = connection.getresponse().read()
        started = time.monotonic()
        connection.sock.sendall(b"GET /hello HTTP/1.1\r\n")  # and no more
        answer = connection.sock.recv(4096)
        elapsed = time.monotonic() - started
        connection.close()
        return first, answer, elapsed

    first, answer, elapsed = await in_thread(trickle_the_second)
    print(f"a second request's head unfinished: 408 after {elapsed:.2f}s")
    assert first == b"hello"
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.3 * 0.9 < elapsed < 3  # (timers may fire a millisecond early)


@pytest_twisted.ensureDeferred
async def test_a_connection_idle_between_requests_is_closed_after_keep_alive_timeout(serve):
    server = serve(echo, hello, keep_alive_timeout=0.3)

    def idle():
        connection = http.client.HTTPConnection(server.address, timeout=10)
        connection.request("GET", "/hello")
        assert connection.getresponse().read() == b"hello"
        started = time.monotonic()
        closed = connection.sock.recv(1) == b""
        return closed, time.monotonic() - started

    closed, elapsed = await in_thread(idle)
    print(f"a keep-alive connection idle after a request: closed {closed} after {elapsed:.2f}s")
    assert closed and 0.25 < elapsed < 3


@pytest_twisted.ensureDeferred
async def test_a_handler_slower_than_keep_alive_timeout_answers_and_the_idle_timeout_resumes_after(serve):
    # the idle timeout is off while a request is handled: its call may come meanwhile, and is ignored
    never = threading.Event()

    @route("/slow")
    def slow(request):
        never.wait(0.6)  # the handler's work: twice the keep-alive timeout
        return Response("slow")

    server = serve(slow, keep_alive_timeout=0.3)

    def slow_then_idle():
        connection = http.client.HTTPConnection(server.address, timeout=10)
        started = time.monotonic()
        connection.request("GET", "/slow")
        body = connection.getresponse().read()
        answered = time.monotonic() - started
        started = time.monotonic()
        closed = connection.sock.recv(1) == b""
        return body, answered, closed, time.monotonic() - started

    body, answered, closed, idle = await in_thread(slow_then_idle)
    print(f"a 0.6 s handler under a 0.3 s keep-alive timeout: answered after {answered:.2f}s, closed {closed} "
          f"after {idle:.2f}s idle")
    assert body == b"slow" and answered > 0.55
    assert closed and 0.25 < idle < 3
