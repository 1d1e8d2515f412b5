"""Serving a gateway from a reactor in a background thread, for applications that are not Twisted-based."""

from __future__ import annotations

import atexit
import functools
import threading
import time
from types import TracebackType
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import blockingCallFromThread
from twisted.python import threadable

from rolo.gateway import App
from rolo.threads import HandlerPool

from .embed import listen
from .service import Endpoint, GatewayService

__all__ = ["ServerHandle", "run_in_thread"]

# the reactor thread run_in_thread started, shared by every server it starts
_reactor_thread: threading.Thread | None = None
_reactor_thread_lock = threading.Lock()


class ServerHandle:
    """A gateway served by :func:`run_in_thread`; stop it with :meth:`stop` or a ``with`` block.

    :ivar service: the running :class:`~rolo.serving.twisted.service.GatewayService` (touch it only on the
        reactor thread)
    :ivar address: where the first endpoint listens: ``(host, port)`` for TCP and SSL, the socket's path
        for UNIX
    :ivar port: the TCP port of the first endpoint (``None`` for a UNIX socket)
    """

    def __init__(self, service: GatewayService, reactor: Any) -> None:
        self.service = service
        self.reactor = reactor
        bound = service.ports[0].getHost()
        self.address: tuple[str, int] | str
        self.port: int | None = None
        if isinstance(bound, (IPv4Address, IPv6Address)):
            self.address, self.port = (bound.host, bound.port), bound.port
        elif isinstance(bound, UNIXAddress) and bound.name is not None:
            self.address = bound.name.decode()
        else:
            self.address = str(bound)

    def stop(self, grace_period: float | None = None) -> bool:
        """Stop serving and wait until done: stop listening, close every open WebSocket with 1001, wait up
        to ``grace_period`` seconds (the ``grace_period`` setting if ``None``) for the handlers
        still running, stop the thread pools and wait for their threads to exit.

        The reactor thread keeps running, for other servers (see :func:`run_in_thread`). Stopping again,
        or after the reactor stopped (which stopped the server), only waits for the threads, up to the
        grace period in all. Do not call it on the reactor thread.

        :returns: whether every handler returned in time, and their threads exited; the threads of handlers
            still running after the grace period are left behind as daemon threads, which do not keep the
            process alive
        """
        service = self.service
        if not self.reactor.running:  # it stopped, stopping the server: give the threads the grace period
            limit = service.grace_period if grace_period is None else grace_period
            deadline = time.monotonic() + limit  # one for every pool, not one each
            joined = [pool.join(max(0.0, deadline - time.monotonic())) for pool in self._pools()]
            return all(joined)  # every pool was joined, not up to a False

        async def stop_service() -> bool:
            if grace_period is not None:
                service.grace_period = grace_period
            await service.stopService()
            site = service.site
            return site.websocket.host.handlers.running == 0 and site.http.handlers.running == 0

        # mypy cannot solve Twisted's Callable[P, R] | Callable[P, Deferred[R]] for a function returning a
        # Deferred
        stopped: bool = blockingCallFromThread(
            self.reactor, lambda: ensureDeferred(stop_service())  # type: ignore[arg-type]
        )
        if stopped:
            # every handler returned: their threads are on their way out
            joined = [pool.join() for pool in self._pools()]  # every pool, not up to a False
            return all(joined)
        return False

    def _pools(self) -> list[HandlerPool]:
        return [self.service.site.websocket.host.pool, self.service.site.http.pool]

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def run_in_thread(app: App, *endpoints: Endpoint, **settings: Any) -> ServerHandle:
    """Serve ``app`` on ``endpoints`` (``"tcp:8000:interface=127.0.0.1"`` if none are given: this machine
    only) from Twisted's reactor running in a background thread, and return once every endpoint listens::

        with run_in_thread(gateway, "tcp:0:interface=127.0.0.1") as server:
            port = server.port  # the port "tcp:0" bound
            ...  # the application goes on in this thread; the server stops when the block ends

    The reactor runs once per process. The first call starts it in a daemon thread named
    ``rolo-reactor`` (without signal handlers: the application keeps its own); later calls, while it runs,
    serve from that same thread, as do calls made while a reactor started elsewhere runs in another
    thread. The reactor thread outlives the servers, so that further servers can start; when the process
    exits, an :mod:`atexit` hook stops the reactor, which stops any servers still running gracefully.

    :param app: a :class:`~rolo.gateway.Gateway` or a :class:`~rolo.Router`
    :param endpoints: Twisted endpoint strings or endpoint objects, as for
        :func:`~rolo.serving.twisted.listen`
    :param settings: the fields of :class:`~rolo.serving.twisted.TwistedSettings` (``grace_period``: how
        long :meth:`ServerHandle.stop` waits for running handlers …)
    :raises RuntimeError: when called on the reactor thread (use :func:`~rolo.serving.twisted.listen`
        there), or when the reactor has run and stopped already (it cannot run again)
    :raises ValueError: for an endpoint string that does not parse or a bad setting
    :raises twisted.internet.error.CannotListenError: if an endpoint cannot listen
    """
    from twisted.internet import reactor

    _ensure_reactor_thread(reactor)
    start = functools.partial(listen, app, *endpoints, reactor=reactor, **settings)
    # the global reactor's type (Twisted's make-believe one) lacks IReactorFromThreads, which every reactor
    # provides; and mypy cannot solve the callable's type (see ServerHandle.stop)
    service: GatewayService = blockingCallFromThread(reactor, start)  # type: ignore[arg-type]
    return ServerHandle(service, reactor)


def _ensure_reactor_thread(reactor: Any) -> None:
    """Make sure the reactor runs in a thread other than this one, starting it if it never ran."""
    global _reactor_thread
    with _reactor_thread_lock:
        if reactor.running:
            if threadable.isInIOThread():
                raise RuntimeError("run_in_thread waits for the reactor: on the reactor thread, use listen()")
            return
        if _reactor_thread is not None or getattr(reactor, "_startedBefore", False):
            raise RuntimeError("the reactor has stopped, and it cannot run again in this process")
        started = threading.Event()
        failed: list[BaseException] = []

        def run_reactor() -> None:
            try:
                reactor.run(installSignalHandlers=False)
            except BaseException as error:  # it cannot run: tell the caller rather than the thread's hook
                failed.append(error)
            finally:
                started.set()

        reactor.callWhenRunning(started.set)
        _reactor_thread = threading.Thread(target=run_reactor, name="rolo-reactor", daemon=True)
        _reactor_thread.start()
        started.wait()
        if failed:
            raise RuntimeError(f"the reactor could not start: {failed[0]!r}")
        atexit.register(_stop_reactor, reactor, _reactor_thread)


def _stop_reactor(reactor: Any, thread: threading.Thread) -> None:
    """At exit: stop the reactor (its shutdown stops the servers still running) and wait for its thread."""
    if thread.is_alive():
        reactor.callFromThread(reactor.stop)
        thread.join()
