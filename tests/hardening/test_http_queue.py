"""Every HTTP thread busy: requests wait for one in a queue of ``http_queue``; beyond it they get 503 with
Retry-After at once, and a waiting request whose client left is dropped without running."""

from __future__ import annotations

import selectors
import socket
import time

from .support import http_request, reset, status_of

THREADS = 32  # the default http_threads
QUEUE = 128  # the default http_queue


class Answers:
    """Watches sockets for their answers: what each received (up to the end of a response head), and
    when (``time.monotonic()``) its first byte came."""

    def __init__(self) -> None:
        self.received: dict[socket.socket, bytes] = {}
        self.arrived: dict[socket.socket, float] = {}
        self._selector = selectors.DefaultSelector()

    def watch(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.received[sock] = b""
        self._selector.register(sock, selectors.EVENT_READ)

    def collect(self, timeout: float) -> None:
        """Read what has come, waiting at most ``timeout`` seconds for something to."""
        for key, _ in self._selector.select(timeout):
            sock = key.fileobj
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            self.received[sock] += chunk
            self.arrived.setdefault(sock, time.monotonic())
            if not chunk or b"\r\n\r\n" in self.received[sock]:
                self._selector.unregister(sock)

    def collect_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._selector.get_map() and time.monotonic() < deadline:
            self.collect(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._selector.close()


def test_past_the_queue_requests_get_503_at_once_and_gone_clients_are_dropped(server_process, heavy):
    clients = 10_000 if heavy else 1000
    server = server_process()
    holders = [socket.create_connection(server.address, timeout=10) for _ in range(THREADS)]
    queued: list[socket.socket] = []
    try:
        for sock in holders:
            sock.sendall(http_request("/hold"))
        busy = server.wait_for(lambda stats: stats["http_busy"] == THREADS)
        before = server.usage()

        sent_at = {}
        answers = Answers()
        for _ in range(clients):
            sock = socket.create_connection(server.address, timeout=10)
            sock.sendall(http_request("/fast"))
            sent_at[sock] = time.monotonic()
            queued.append(sock)
            answers.watch(sock)
            answers.collect(0)  # answers are timed as they come, not once every request is out
        answers.collect_for(2.0)
        answers.close()
        answered, arrived = answers.received, answers.arrived
        latencies = sorted(arrived[sock] - sent_at[sock] for sock in arrived) or [0.0]
        median, slowest = latencies[len(latencies) // 2], latencies[-1]
        stats = server.control()
        refused = [head for head in answered.values() if status_of(head) == 503]
        held = server.usage()

        # the clients still waiting leave; then the handlers are released
        waiting = [sock for sock, head in answered.items() if not head]
        for sock in waiting:
            reset(sock)
        server.wait_for(lambda stats: stats["fds"] <= held["fds"] - len(waiting) + 1)  # +1: /control
        server.control("release")
        done = server.wait_for(lambda stats: stats["http_running"] == 0)
    finally:
        for sock in holders + queued:
            sock.close()

    print(
        f"{busy['http_busy']} HTTP threads busy, {clients} more requests: {len(refused)} refused with 503 "
        f"(answered in {median:.3f}s, the slowest in {slowest:.3f}s), {stats['http_waiting']} waiting, RSS "
        f"+{(held['rss'] - before['rss']) / 2**20:.1f} MiB; of the {len(waiting)} waiting whose clients left, "
        f"{done.get('runs_fast', 0)} ran"
    )
    assert stats["http_waiting"] == QUEUE
    assert len(refused) == clients - QUEUE  # within 2 s of the last request, the threads still held
    assert all(b"\r\nRetry-After: " in head for head in refused)
    # every refusal came while all the threads were still busy: none waited for one (how soon each came
    # is the reactor's throughput: with 10,000 connections at once, about a second)
    assert done.get("runs_fast", 0) == 0
