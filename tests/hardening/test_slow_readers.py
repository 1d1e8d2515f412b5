"""Clients slow to read their responses: they hold no HTTP thread, and pipelined requests whose answers
they never read are not started while earlier answers wait unsent."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from .support import http_request, status_of

KiB = 1024
MiB = 1024 * KiB
READ_RATE = 8 * KiB  # bytes per second, per slow reader
TICK = 0.125  # seconds between two reads of a slow reader


def read_slowly(address: tuple[str, int], readers: int, started: threading.Event, stop: threading.Event) -> int:
    """Open ``readers`` connections that each GET /stream and read READ_RATE bytes a second until
    ``stop``; ``started`` is set once each has 16 KiB of its response. Returns the bytes they read."""
    per_tick = int(READ_RATE * TICK)
    received: dict[socket.socket, int] = {}
    try:
        for _ in range(readers):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server buffers
            sock.settimeout(10)
            sock.connect(address)
            sock.sendall(http_request("/stream"))
            sock.setblocking(False)
            received[sock] = 0
        while not stop.is_set():
            tick = time.monotonic() + TICK
            for sock in received:
                try:
                    received[sock] += len(sock.recv(per_tick))
                except BlockingIOError:
                    pass
            if all(count >= 16 * KiB for count in received.values()):
                started.set()
            stop.wait(max(0.0, tick - time.monotonic()))  # paces the reading
    finally:
        for sock in received:
            sock.close()
    return sum(received.values())


def test_slow_readers_of_streamed_responses_hold_no_http_thread(server_process, heavy):
    """As many clients as there are HTTP threads (32) read a streamed response at 8 KiB/s: another
    request is still answered at once."""
    readers = 256 if heavy else 32
    server = server_process()
    started, stop = threading.Event(), threading.Event()

    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read_slowly, server.address, readers, started, stop)
        try:
            assert started.wait(30), "the slow readers did not all get their responses started"
            stats = server.wait_for(lambda stats: stats["http_busy"] == 0, timeout=5)
            begun = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://{server.address[0]}:{server.address[1]}/fast", timeout=5) as r:
                    answer = r.read()
            except OSError as error:
                answer = repr(error).encode()
            probe_time = time.monotonic() - begun
        finally:
            stop.set()
        read = reading.result()

    print(
        f"{readers} readers of /stream at {READ_RATE // KiB} KiB/s: {stats['http_busy']} HTTP threads busy, "
        f"{stats['http_running']} responses under way; GET /fast took {probe_time:.3f}s "
        f"({read / MiB:.1f} MiB read in all)"
    )
    assert answer == b"ok"
    assert probe_time < 1.0
    assert stats["http_busy"] == 0
    assert stats["http_running"] >= readers


def test_pipelined_requests_wait_while_earlier_answers_are_unread(server_process, heavy):
    """``GET /blob`` (1 MiB) pipelined again and again, nothing read: the server starts no request while
    an earlier answer waits unsent, and answers them all once the client reads."""
    requests = 1500 if heavy else 100
    server = server_process()
    server.control()  # warm up: the control connection, the pool
    before = server.usage()

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        sock.settimeout(10)
        sock.connect(server.address)
        sock.sendall(http_request("/blob") * requests)  # 35 bytes each: the kernel takes them all
        stats = server.wait_for(lambda stats: stats["runs_blob"] >= requests, timeout=2)
        held = server.usage()
        answers = read_answers(sock, requests)

    grown = held["peak_rss"] - before["peak_rss"]
    print(
        f"GET /blob pipelined x{requests}, nothing read: {stats['runs_blob']} answered, "
        f"peak RSS +{grown / MiB:.1f} MiB; then read: {answers} complete answers"
    )
    # what the sockets' buffers took does not count as waiting: a few answers may go there
    assert stats["runs_blob"] < 8
    assert grown < 8 * MiB
    assert answers == requests


def read_answers(sock: socket.socket, expected: int) -> int:
    """Read ``expected`` 200 responses of 1 MiB bodies (with Content-Length); how many came whole."""
    buffered = bytearray()
    answers = 0
    while answers < expected:
        while b"\r\n\r\n" not in buffered or len(buffered) < buffered.index(b"\r\n\r\n") + 4 + MiB:
            try:
                chunk = sock.recv(MiB)
            except TimeoutError:
                return answers
            if not chunk:
                return answers
            buffered += chunk
        if status_of(bytes(buffered[:16])) != 200:
            return answers
        del buffered[: buffered.index(b"\r\n\r\n") + 4 + MiB]
        answers += 1
    return answers


def read_at(address: tuple[str, int], per_tick: int, seconds: float) -> float | None:
    """GET /stream and read ``per_tick`` bytes every TICK for ``seconds``: when (seconds after the
    request) the server cut the connection, or None if it did not."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, per_tick)
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(http_request("/stream"))
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            tick = time.monotonic() + TICK
            try:
                if not sock.recv(per_tick):
                    return time.monotonic() - started
            except ConnectionResetError:
                return time.monotonic() - started
            time.sleep(max(0.0, tick - time.monotonic()))  # paces the reading
    return None


def test_a_client_that_reads_too_slowly_is_cut_after_write_timeout(server_process):
    """write_timeout: a client must take 64 KiB of the bytes waiting for it every write_timeout seconds."""
    write_timeout = 0.5
    server = server_process(write_timeout=write_timeout)
    with ThreadPoolExecutor(2) as pool:
        # 8 KiB/s: 4 KiB a write_timeout; 640 KiB/s: 320 KiB, five times what it must take, so that a stall
        # of the client's or the server's on a busy machine does not cut it (at 320 KiB/s one CI run did)
        slow = pool.submit(read_at, server.address, 1 * KiB, 5.0)
        fast = pool.submit(read_at, server.address, 64 * KiB, 3.0)
        slow_cut, fast_cut = slow.result(), fast.result()
    print(f"write_timeout {write_timeout}s: a reader of 8 KiB/s cut after {slow_cut}s, one of 640 KiB/s: {fast_cut}")
    assert slow_cut is not None and write_timeout <= slow_cut < 4 * write_timeout
    assert fast_cut is None
