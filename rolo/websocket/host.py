"""The WebSocket host: what every server does with its connections' handlers, whatever its event loop.

A server (on Twisted, or under an ASGI server) speaks the protocol and owns the sockets; for everything
between an upgrade request and its handler it relies on one :class:`WebSocketHost`:

1. :meth:`~WebSocketHost.refusal` says whether to take an upgrade request at all: a forbidden origin,
   a server shutting down, or every handler slot taken is refused before any handler sees the request
   (as is a malformed handshake, by :func:`~rolo.websocket.handshake.check_request`).
2. :meth:`~WebSocketHost.open` makes the connection's :class:`~rolo.websocket.threaded.ThreadedWebSocketAdapter`
   over the server's :class:`~rolo.websocket.threaded.ServerConnection`, and runs the listener (the
   gateway) with it in a handler thread.
3. :meth:`~WebSocketHost.go_away` closes every open connection with 1001 when the server shuts down,
   :meth:`~WebSocketHost.drop_open` ends those whose peer has not answered within
   :meth:`~WebSocketHost.closing_time`, and :attr:`~WebSocketHost.handlers` tells when the last handler
   has returned; :meth:`~WebSocketHost.stop` lets the handler threads go, and
   :meth:`~WebSocketHost.start` takes connections again (a server that starts anew, on the same or
   another event loop).

Every method runs on the server's event-loop thread unless it says otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

from rolo.counters import WebSocketCounters
from rolo.heap import set_young_threshold
from rolo.settings import ServerSettings
from rolo.threads import HandlerCount, HandlerPool, use_global_futex_hash

from .adapter import WEBSOCKET_KEY, WebSocketEnvironment, WebSocketListener
from .handshake import Refusal
from .origins import OriginPolicy
from .threaded import ServerConnection, ThreadedWebSocketAdapter, WakeUps

__all__ = ["NO_THREAD", "WebSocketHost"]

LOG = logging.getLogger("rolo.websocket")

_TRY_AGAIN = (("Retry-After", "1"),)

NO_THREAD = Refusal(HTTPStatus.SERVICE_UNAVAILABLE, "no thread for a handler", _TRY_AGAIN)
"""What a server answers when :meth:`WebSocketHost.open` raises ``RuntimeError``: no thread could be started
for the handler (the host has counted it); and an HTTP request for which no handler thread could be started."""

SPARE_THREADS = 64
"""Idle handler threads a host keeps ready for connections to come."""


class WebSocketHost:
    """Runs the handlers of one server's WebSocket connections.

    :param listener: called in a handler thread with each upgrade request's environment (usually the
        gateway's :meth:`~rolo.gateway.Gateway.accept` through
        :meth:`~rolo.websocket.WebSocketRequest.listener`)
    :param settings: the server's settings (``max_connections``, ``max_queue``, ``allowed_origins`` …)
    :param call_in_loop: runs a callable on the loop thread, from any thread: for a server whose loop is
        known from the start (Twisted's reactor); without it, each :meth:`open` says which loop
    :param wake_ups: what wakes handlers for new messages, for a loop that has one (see
        :class:`~rolo.websocket.threaded.WakeUps`); with ``call_in_loop``

    :ivar accepting: whether upgrade requests are taken; :meth:`go_away` clears it
    :ivar handlers: the handlers running, counted on the loop thread
    :ivar connections: the adapters of the connections not yet closed
    :ivar pool: the threads the handlers run in
    :ivar counters: what the connections did, for metrics (:mod:`rolo.metrics`): the upgrades answered,
        messages and bytes, close codes
    """

    def __init__(
        self,
        listener: WebSocketListener,
        settings: ServerSettings,
        call_in_loop: Callable[[Callable[[], None]], None] | None = None,
        wake_ups: WakeUps | None = None,
    ) -> None:
        self.listener = listener
        self.settings = settings
        self.accepting = True
        self.handlers = HandlerCount()
        self.connections: set[ThreadedWebSocketAdapter] = set()
        self.counters = WebSocketCounters()
        if settings.global_futex_hash:
            use_global_futex_hash()
        if settings.gc_threshold is not None:
            set_young_threshold(settings.gc_threshold)
        self.pool = self._new_pool()
        self._call_in_loop = call_in_loop
        self._wake_ups = wake_ups
        # the settings are frozen: one float for every connection's adapter rather than one each
        self._close_timeout = settings.close_timeout + 1
        origins = settings.allowed_origins
        self._origins = OriginPolicy(origins) if origins is not None else None

    def _new_pool(self) -> HandlerPool:
        # a handler runs as long as its connection: its thread then serves the next connection, or exits
        # when idle; a few are kept ready, so that opening a connection does not wait for a thread to start
        settings = self.settings
        return HandlerPool(
            "rolo-websocket",
            settings.max_connections,
            stack_size=settings.thread_stack_size,
            idle_timeout=settings.thread_idle_timeout,
            spares=min(SPARE_THREADS, settings.max_connections),
        )

    def refusal(self, origin: str | None) -> Refusal | None:
        """Why an upgrade request whose ``Origin`` header is ``origin`` is refused, or ``None`` to take it.

        A forbidden origin is refused first, whatever the load: ``403``. Then a server that is shutting
        down, or already runs ``max_connections`` handlers, answers ``503`` at once, with ``Retry-After``.
        """
        if self._origins is not None and not self._origins.allows(origin):
            return Refusal(HTTPStatus.FORBIDDEN, "origin not allowed")
        if not self.accepting:
            return Refusal(HTTPStatus.SERVICE_UNAVAILABLE, "server shutting down", _TRY_AGAIN)
        if self.handlers.running >= self.settings.max_connections:
            return Refusal(HTTPStatus.SERVICE_UNAVAILABLE, "too many WebSocket connections", _TRY_AGAIN)
        return None

    def open(
        self,
        connection: ServerConnection,
        environ: WebSocketEnvironment,
        on_finished: Callable[[], None] | None = None,
        *,
        call_in_loop: Callable[[Callable[[], None]], None] | None = None,
        wake_ups: WakeUps | None = None,
    ) -> ThreadedWebSocketAdapter:
        """Make the adapter of a connection whose handshake request arrived, put it into ``environ``
        (under :data:`~rolo.websocket.adapter.WEBSOCKET_KEY`), and run the listener with ``environ`` in a
        handler thread.

        :param connection: the connection's I/O side
        :param environ: the upgrade request's WSGI environment
        :param on_finished: called on the loop thread once the handler has returned
        :param call_in_loop: runs a callable on the thread of the loop that serves this connection, from
            any thread; the host's own (given when it was made) without it
        :param wake_ups: what wakes the handler for new messages on that loop, with ``call_in_loop`` (see
            :class:`~rolo.websocket.threaded.WakeUps`)
        :raises RuntimeError: if no thread could run the handler (the process is out of threads); then
            the connection holds no handler slot
        :raises TypeError: if neither this call nor the host has a ``call_in_loop``
        """
        if call_in_loop is None:
            if self._call_in_loop is None:
                raise TypeError("no call_in_loop: the host was made without one, and open() was given none")
            call_in_loop, wake_ups = self._call_in_loop, self._wake_ups
        settings = self.settings
        adapter = ThreadedWebSocketAdapter(
            connection,
            call_in_loop,
            max_queue=settings.max_queue,
            max_queue_bytes=settings.max_queue_bytes,
            write_high_water=settings.write_high_water,
            close_timeout=self._close_timeout,
            wake_ups=wake_ups,
            counters=self.counters,
        )
        environ[WEBSOCKET_KEY] = adapter
        handler = _Handler(self, adapter, environ, call_in_loop, on_finished)
        # counted out once its thread is back in the pool: a connection admitted by the count gets a thread
        try:
            self.pool.submit(handler.run, then=handler.returned)
        except RuntimeError:
            self.counters.upgrades.add(HTTPStatus.SERVICE_UNAVAILABLE)  # the server answers 503
            raise
        self.handlers.started()
        self.connections.add(adapter)
        adapter.add_close_listener(handler.closed)
        return adapter

    def go_away(self) -> None:
        """Refuse upgrade requests from now on, and close every open connection with 1001 (going away),
        after the messages its handler sent so far."""
        self.accepting = False
        for adapter in list(self.connections):
            adapter.go_away()

    def closing_time(self, grace_period: float) -> float:
        """How long the peers of a shutdown have to answer :meth:`go_away`'s close, in seconds, before
        :meth:`drop_open` ends their connections: the ``close_timeout`` setting, or half of
        ``grace_period`` (the seconds the shutdown waits for handlers) if shorter. A handler waiting on its
        connection then has the rest of the grace period, at least half, to return once its ``receive``
        ends; one that does not is stuck, and the server says so."""
        return min(self.settings.close_timeout, grace_period / 2)

    def drop_open(self) -> None:
        """End every connection not closed yet at once (see
        :meth:`~rolo.websocket.threaded.ThreadedWebSocketAdapter.drop`): at shutdown, :meth:`closing_time`
        after :meth:`go_away`, those whose peer has not answered."""
        for adapter in list(self.connections):
            adapter.drop()

    def stop(self) -> None:
        """Let the handler threads exit once their handlers return (see :meth:`HandlerPool.stop`)."""
        self.pool.stop()

    def start(self) -> None:
        """Take upgrade requests again, after :meth:`go_away` and :meth:`stop`: a server that starts anew
        (an ASGI lifespan's startup). Handlers then run in a new pool, and :attr:`handlers` counts them
        anew: those still running in the stopped pool (past the server's grace period) finish there,
        counted apart, for the loop that ran them may be gone and never count them out."""
        self.accepting = True
        if self.pool.stopped:
            self.pool = self._new_pool()
            self.handlers = HandlerCount()


class _Handler:
    """The handler of one connection, as its host runs it: what its thread runs, and what the loop does
    once it returned and once the connection closed.

    One small object where closures would take ten (functions, their cells and tuples), for as long as the
    connection is open: less memory per connection, and less for the garbage collector to go through.
    """

    __slots__ = ("adapter", "call_in_loop", "count", "environ", "host", "on_finished")

    def __init__(
        self,
        host: WebSocketHost,
        adapter: ThreadedWebSocketAdapter,
        environ: WebSocketEnvironment,
        call_in_loop: Callable[[Callable[[], None]], None],
        on_finished: Callable[[], None] | None,
    ) -> None:
        self.host = host
        self.adapter = adapter
        self.environ = environ
        self.call_in_loop = call_in_loop
        self.count = host.handlers  # the count it started in (a later start() counts anew)
        self.on_finished = on_finished

    def run(self) -> None:
        """Run the listener with the connection's environment (the handler thread)."""
        try:
            self.host.listener(self.environ)
        except Exception:
            LOG.exception("WebSocket listener failed for %s", self.environ.get("PATH_INFO"))

    def returned(self) -> None:
        """The handler returned and its thread is back in the pool (that thread)."""
        self.call_in_loop(self.finished)

    def finished(self) -> None:
        """Count the handler out (the loop thread)."""
        self.count.finished()
        if self.on_finished is not None:
            self.on_finished()

    def closed(self) -> None:
        """The connection closed: it is no longer one of the host's (the loop thread)."""
        self.host.connections.discard(self.adapter)
