"""Connect, echo, disconnect, many times over: the server's threads, descriptors and memory stay level."""

from __future__ import annotations

import time

import pytest
import websocket as wsclient

from rolo.websocket.host import SPARE_THREADS

from .support import reset

MiB = 1024 * 1024


def churn(url: str, cycles: int) -> None:
    """Echo one message per connection; end a third of them cleanly, a third with a reset and a third
    with a bare FIN (no closing handshake)."""
    for cycle in range(cycles):
        ws = wsclient.create_connection(url, timeout=10)
        ws.send(str(cycle))
        assert ws.recv() == str(cycle)
        if cycle % 3 == 0:
            ws.close()
        elif cycle % 3 == 1:
            reset(ws.sock)
        else:
            ws.sock.close()


def within_10_percent(value: int, baseline: int) -> bool:
    return abs(value - baseline) <= baseline / 10


@pytest.mark.slow
def test_churn_leaves_threads_descriptors_and_memory_at_baseline(server_process, heavy):
    cycles = 100_000 if heavy else 2_000
    server = server_process()
    churn(server.ws("/echo"), 300)  # warm up: the pool's threads, the allocator's arenas
    before = server.stats(wait_idle=True)

    started = time.monotonic()
    churn(server.ws("/echo"), cycles)
    elapsed = time.monotonic() - started
    after = server.stats(wait_idle=True)

    print(f"churn {cycles} cycles in {elapsed:.1f}s: before {before}, after {after}")
    assert after["active_handlers"] == after["busy_threads"] == 0
    # the pool keeps its spares idle and ready, and threads for the most handlers that ran at once, which
    # for one client at a time is a few, whatever the number of cycles; the other threads must not change
    assert after["pool_threads"] <= SPARE_THREADS + 4
    others_before, others_after = before["threads"] - before["pool_threads"], after["threads"] - after["pool_threads"]
    assert within_10_percent(others_after, others_before)
    assert within_10_percent(after["fds"], before["fds"])
    assert within_10_percent(after["rss"], before["rss"])


@pytest.mark.slow
def test_a_burst_of_connections_leaves_no_threads_behind(server_process, heavy):
    """A connection's thread serves the next connection once its handler returns, or exits after the
    idle timeout: after a burst, the thread count is back, but for the spares."""
    burst = 1000 if heavy else 300
    server = server_process(thread_idle_timeout=0.5)
    before = server.stats(wait_idle=True)

    def connect_all() -> list[wsclient.WebSocket]:
        return [wsclient.create_connection(server.ws("/echo"), timeout=10) for _ in range(burst)]

    sockets = connect_all()
    during = server.stats()
    for i, ws in enumerate(sockets):
        ws.close() if i % 2 else reset(ws.sock)
    after = server.stats(wait_idle=True)

    print(f"burst of {burst}: before {before}, during {during}, after {after}")
    assert during["busy_threads"] == burst
    assert after["busy_threads"] == 0
    retired = retired_threads(server)
    assert retired["pool_threads"] <= SPARE_THREADS
    assert retired["threads"] <= before["threads"] - before["pool_threads"] + SPARE_THREADS + 1  # and their starter
    assert after["fds"] == before["fds"]


def retired_threads(server) -> dict:
    """The server's stats once its idle handler threads are down to the spares (within 10 s)."""
    deadline = time.monotonic() + 10
    while (stats := server.stats())["pool_threads"] > SPARE_THREADS and time.monotonic() < deadline:
        time.sleep(0.1)  # polled: the threads retire on their own clock, with nothing to wait on
    return stats
