"""Request bodies: one over ``max_body_size`` is refused with 413 before the server reads it, and one that
trickles in is cut with 408 at ``body_timeout``."""

from __future__ import annotations

import selectors
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from .support import http_request, status_of

MiB = 1024 * 1024
GiB = 1024 * MiB
CHUNK = MiB


def send_until_answered(
    address: tuple[str, int], head: bytes, body: Iterator[bytes], quiet: float = 10.0
) -> tuple[int | None, int, float]:
    """Send ``head``, then the chunks of ``body`` as fast as the server takes them, until it answers.

    Returns the answer's status (None if there was none), the body bytes the client got out before the
    answer came (into the server or the sockets' buffers), and the seconds from the head to the answer.
    Gives up once the server has neither taken a byte nor answered for ``quiet`` seconds, or ``body``
    is spent and ``quiet`` seconds have passed: a way out only, the tests wait for an answer (a server
    process that a loaded machine holds up for a second or two has not stopped answering).
    """
    sent = 0
    pending = b""
    received = b""
    with socket.create_connection(address, timeout=10) as sock, selectors.DefaultSelector() as selector:
        sock.sendall(head)
        started = time.monotonic()
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while True:
            events = selector.select(quiet)
            if not events:
                return None, sent, time.monotonic() - started
            mask = events[0][1]
            if mask & selectors.EVENT_READ:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                received += chunk
                if not chunk or b"\r\n\r\n" in received:
                    return status_of(received), sent, time.monotonic() - started
            elif mask & selectors.EVENT_WRITE:
                if not pending:
                    pending = next(body, b"")
                    if not pending:
                        selector.modify(sock, selectors.EVENT_READ)
                        continue
                try:
                    written = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    selector.modify(sock, selectors.EVENT_READ)  # refused: its answer may be readable
                    continue
                sent += written
                pending = pending[written:]


def identity_body(total: int) -> Iterator[bytes]:
    chunk = bytes(CHUNK)
    for _ in range(total // CHUNK):
        yield chunk


def chunked_body(total: int) -> Iterator[bytes]:
    chunk = b"%x\r\n%s\r\n" % (CHUNK, bytes(CHUNK))
    for _ in range(total // CHUNK):
        yield chunk
    yield b"0\r\n\r\n"


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(server_process, heavy):
    """A 2 GiB POST to a route that never reads its body: 413 at once, nothing stored."""
    server = server_process()
    sending = 2 * GiB if heavy else 64 * MiB  # of the 2 GiB declared
    head = http_request("/ignore", "POST", [("Content-Length", str(2 * GiB))])

    status, sent, elapsed = send_until_answered(server.address, head, identity_body(sending))

    stored = server.usage()["stored"]
    print(
        f"POST declaring 2 GiB, {sending // MiB} MiB sent at most: answered {status} after {elapsed:.2f}s, "
        f"{sent / MiB:.1f} MiB out of the client; the server stored {stored / MiB:.1f} MiB"
    )
    assert status == 413
    assert elapsed < 1.0
    assert stored == 0


def test_100_continue_is_not_sent_for_a_body_over_the_limit(server_process):
    server = server_process()
    head = http_request("/ignore", "POST", [("Content-Length", str(2 * GiB)), ("Expect", "100-continue")])
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(head)
        answer = sock.recv(65536)
    assert status_of(answer) == 413


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(server_process, heavy):
    limit = 16 * MiB  # the default max_body_size
    server = server_process()
    sending = 2 * GiB if heavy else 64 * MiB
    head = http_request("/ignore", "POST", [("Transfer-Encoding", "chunked")])

    status, sent, elapsed = send_until_answered(server.address, head, chunked_body(sending))

    stored = server.usage()["stored"]
    print(
        f"chunked POST of {sending // MiB} MiB: answered {status} after {sent / MiB:.1f} MiB out of the client "
        f"({elapsed:.2f}s); the server stored {stored / MiB:.1f} MiB"
    )
    assert status == 413
    # what the client got out: what the server read (the limit and one read more) and the sockets' buffers
    assert sent < limit + 16 * MiB
    assert stored == 0


def trickle(address: tuple[str, int], clients: int, interval: float, give_up: float) -> list[tuple[float, bytes]]:
    """Open ``clients`` connections that each declare a 99,999-byte body and send it one byte every
    ``interval`` seconds; for each, the seconds from its head until the server closed it and what it
    answered (``give_up`` seconds at most)."""
    head = http_request("/ignore", "POST", [("Content-Length", "99999")])
    opened: dict[socket.socket, float] = {}
    outcome: dict[socket.socket, tuple[float, bytes]] = {}
    try:
        for _ in range(clients):
            sock = socket.create_connection(address, timeout=10)
            sock.sendall(head)
            sock.setblocking(False)
            opened[sock] = time.monotonic()
        deadline = time.monotonic() + give_up
        with selectors.DefaultSelector() as selector:
            for sock in opened:
                selector.register(sock, selectors.EVENT_READ)
            while len(outcome) < clients and time.monotonic() < deadline:
                # waiting for an answer paces the trickle: a byte from each client every interval
                for key, _ in selector.select(interval):
                    try:
                        answer = key.fileobj.recv(4096)
                    except OSError:
                        answer = b""
                    outcome[key.fileobj] = (time.monotonic() - opened[key.fileobj], answer)
                    selector.unregister(key.fileobj)
                for sock in opened.keys() - outcome.keys():
                    try:
                        sock.send(b"x")
                    except OSError:
                        pass  # cut: the selector reports it
    finally:
        for sock in opened:
            sock.close()
    return list(outcome.values())


def test_a_body_that_trickles_in_is_cut_at_body_timeout(server_process, heavy):
    """Bodies sent a byte at a time hold their connections no longer than body_timeout, and others are
    served meanwhile."""
    body_timeout = 1.0
    clients = 245 if heavy else 40
    server = server_process(body_timeout=body_timeout)
    baseline = server.usage()["fds"]

    with ThreadPoolExecutor(1) as pool:
        trickling = pool.submit(trickle, server.address, clients, 0.2, body_timeout + 9)
        connected = server.wait_for(lambda stats: stats["fds"] >= baseline + clients)
        started = time.monotonic()
        with urllib.request.urlopen(f"http://{server.address[0]}:{server.address[1]}/fast", timeout=10) as probe:
            answer = probe.read()
        probe_time = time.monotonic() - started
        outcome = trickling.result()

    times = [elapsed for elapsed, _ in outcome]
    print(
        f"{clients} bodies trickled a byte every 0.2s: {len(outcome)} cut after "
        f"{min(times, default=0):.2f}-{max(times, default=0):.2f}s, "
        f"{sum(status_of(answer) == 408 for _, answer in outcome)} of them with a 408; "
        f"a GET meanwhile took {probe_time:.3f}s"
    )
    assert connected["fds"] >= baseline + clients
    assert answer == b"ok"
    assert len(outcome) == clients, "some bodies were never cut"
    assert all(status_of(answer) == 408 for _, answer in outcome)
    assert body_timeout * 0.9 < min(times) and max(times) < body_timeout + 3
