"""The WebSocket host's admission check, which both servers make before an upgrade reaches a handler."""

import threading
from http import HTTPStatus

import pytest

from rolo.settings import ServerSettings
from rolo.websocket.host import WebSocketHost


def host(running: int, accepting: bool = True, allowed_origins=("https://good.example",)) -> WebSocketHost:
    """A host with ``running`` handlers counted, of at most 10."""
    settings = ServerSettings(max_connections=10, allowed_origins=allowed_origins)
    made = WebSocketHost(lambda environ: None, settings, print)
    made.handlers.running = running
    made.accepting = accepting
    return made


def test_a_forbidden_origin_is_403_whatever_the_load():
    for accepting, running in ((True, 0), (False, 0), (True, 10)):
        assert host(running, accepting).refusal("https://evil.example").status == HTTPStatus.FORBIDDEN


def test_shutting_down_or_full_is_503_and_otherwise_taken():
    shutting_down = host(0, accepting=False).refusal("https://good.example")
    assert (shutting_down.status, shutting_down.body) == (HTTPStatus.SERVICE_UNAVAILABLE, b"server shutting down\n")
    full = host(10, allowed_origins=None).refusal(None)
    assert (full.status, full.body) == (HTTPStatus.SERVICE_UNAVAILABLE, b"too many WebSocket connections\n")
    assert host(9).refusal(None) is None


class _NoIO:
    """A connection's I/O side that does nothing: these tests look at the host, not at the protocol."""

    def __getattr__(self, name):
        return lambda *args: None


def test_a_connection_admitted_as_a_handler_returns_gets_a_thread_though_that_one_is_not_back_yet():
    """The loop counts a handler out before its thread is back in the pool: a connection admitted in
    between still gets a thread."""
    opened = []
    done = threading.Event()

    def open_one() -> None:
        opened.append(made.open(_NoIO(), {}, on_finished=open_next))

    def open_next() -> None:
        # the loop learns that the handler returned, and at once takes the next connection
        if len(opened) < 3:
            open_one()
        else:
            done.set()

    made = WebSocketHost(lambda environ: None, ServerSettings(max_connections=1), lambda call: call())
    open_one()
    assert done.wait(10)
    made.stop()
    assert made.pool.join(10)


def test_open_needs_a_call_in_loop_from_the_host_or_its_caller():
    made = WebSocketHost(lambda environ: None, ServerSettings(max_connections=1))
    try:
        with pytest.raises(TypeError):
            made.open(_NoIO(), {})
        assert made.handlers.running == 0
        done = threading.Event()
        made.open(_NoIO(), {}, on_finished=done.set, call_in_loop=lambda call: call())
        assert done.wait(10)
    finally:
        made.stop()
    assert made.pool.join(10)


def test_a_stopped_host_started_again_runs_handlers_in_a_new_pool():
    made = WebSocketHost(lambda environ: None, ServerSettings(max_connections=1), lambda call: call())
    made.go_away()
    made.stop()
    stopped = made.pool
    made.start()
    assert made.accepting and made.pool is not stopped
    done = threading.Event()
    made.open(_NoIO(), {}, on_finished=done.set)
    assert done.wait(10)
    made.stop()
    assert made.pool.join(10) and stopped.join(10)
