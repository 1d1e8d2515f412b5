"""Random handshakes and random frames never crash the server or leak a thread."""

from __future__ import annotations

import socket
import threading

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor

from rolo import route
from rolo.serving.twisted.threads import idle_within
from rolo.websocket import WebSocketRequest
from rolo.websocket.host import SPARE_THREADS
from tests.helpers import in_thread

from .support import status_of, upgrade_request
from .test_handshake import echo_once

VALID = upgrade_request()


def fuzz_settings(examples: int) -> settings:
    # a fixed seed and no example database: the same examples on every run
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@route("/ws", methods=["WEBSOCKET"])
def echo(request: WebSocketRequest):
    with request.accept() as ws:
        for message in ws:
            ws.send(message)


def exchange(address: tuple[str, int], first: bytes, then: bytes = b"") -> tuple[int | None, bool]:
    """Send ``first``, then (if the server answered 101) ``then``; return the response's status and
    whether the server closed the connection before going quiet for half a second."""
    received = b""
    with socket.create_connection(address, timeout=10) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendall(first)
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    return status_of(received), True
                received += chunk
            if then and status_of(received) == 101:
                sock.sendall(then)
            while sock.recv(65536):
                pass
            return status_of(received), True
        except (TimeoutError, ConnectionError):
            return status_of(received), False


def mutate(data: bytes, edits: list[tuple[int, bytes, int]]) -> bytes:
    """Apply (position, inserted bytes, deleted length) edits, each at a position modulo the length."""
    for position, inserted, deleted in edits:
        position %= len(data) + 1
        data = data[:position] + inserted + data[position + deleted :]
    return data


edits = st.lists(
    st.tuples(st.integers(0, 10_000), st.binary(max_size=8), st.integers(0, 8)), min_size=1, max_size=6
)
random_heads = st.binary(max_size=2048).map(lambda head: head + b"\r\n\r\n")
frame_headers = st.builds(
    lambda first, second, length, mask: bytes([first, second]) + length + mask,
    st.integers(0, 255),
    st.integers(0, 255),
    st.sampled_from([b"", b"\x00\x10", b"\xff\xff", b"\x7f\xff\xff\xff\xff\xff\xff\xff"]),
    st.binary(min_size=4, max_size=4),
)
frames = st.lists(st.tuples(frame_headers, st.binary(max_size=64)).map(b"".join), max_size=8).map(b"".join)


def threads_outside_pools() -> int:
    """Live threads that are not handler threads. (Handler threads are counted through their server:
    earlier tests' servers may still have some finishing.)"""
    return sum(not thread.name.startswith(("PoolThread-", "rolo-websocket")) for thread in threading.enumerate())


@pytest.mark.slow
@pytest.mark.parametrize("target", ["handshake", "frames"])
@pytest_twisted.ensureDeferred
async def test_fuzz(serve, failures, heavy, target):
    fuzz = fuzz_settings(1000 if heavy else 100)
    server = serve(echo, header_timeout=0.2, close_timeout=0.3)
    address = (server.host, server.port)
    assert await in_thread(echo_once, server.ws("/ws")) == "still serving"
    threads_before = threads_outside_pools()
    outcomes: list[tuple[int | None, bool]] = []

    if target == "handshake":

        @fuzz
        @given(st.one_of(random_heads, edits.map(lambda e: mutate(VALID, e))))
        def run(request: bytes) -> None:
            outcomes.append(exchange(address, request))

    else:

        @fuzz
        @given(st.one_of(st.binary(min_size=1, max_size=4096), frames))
        def run(garbage: bytes) -> None:
            outcomes.append(exchange(address, VALID, garbage))

    await in_thread(run)
    assert await in_thread(echo_once, server.ws("/ws")) == "still serving"
    assert await idle_within(server.app.websocket.host.handlers, 10, reactor)

    statuses = [status for status, _ in outcomes]
    print(
        f"fuzz {target}: {len(outcomes)} examples, statuses "
        f"{ {status: statuses.count(status) for status in set(statuses)} }, "
        f"{sum(closed for _, closed in outcomes)} closed by the server, "
        f"handler threads {len(server.app.websocket.host.pool.threads)}"
    )
    assert failures == []
    assert not any(status and status >= 500 for status in statuses)
    assert server.app.websocket.host.handlers.running == 0
    assert threads_outside_pools() == threads_before
    # examples ran one at a time: never more than a few handler threads beside the spares
    assert server.app.websocket.host.pool.busy == 0
    assert len(server.app.websocket.host.pool.threads) <= SPARE_THREADS + 4
